"""Generator over diffusers SDXL: a checked request -> images, fixed seeds, TAESD step previews, cancel."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

from PIL import Image

from studio.config import Settings
from studio.errors import InputError

log = logging.getLogger("studio.generate")

# SDXL was trained on ~1 megapixel buckets; these are its usual sizes (width x height).
SDXL_SIZES = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
              (1536, 640), (640, 1536))
MIN_SIDE, MAX_SIDE, MAX_STEPS, MAX_CFG, MAX_IMAGES = 64, 2048, 150, 30.0, 8
MAX_PROMPT_CHARS = 10_000
SEED_RANGE = 2**32  # A1111's seeds are 32-bit; seeds of a batch are seed, seed+1, ... as there
# A1111 sampler names -> (diffusers scheduler class, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}
# DiffusionDB's sampler names, so a retrieved prompt's settings can be reused as they are.
_ALIASES = {"k_euler": "Euler", "k_euler_ancestral": "Euler a", "ddim": "DDIM", "euler_a": "Euler a",
            "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras"}
CPU_WARNING = ("SDXL is running on the CPU in float32: expect minutes per 1024x1024 image. Use a CUDA GPU "
               "(STUDIO_DEVICE=auto or cuda), a smaller size, or the fast profile with SDXL-Turbo/Lightning.")


@dataclass(frozen=True)
class Profile:
    """Defaults for a kind of model: full SDXL, or a distilled few-step one (SDXL-Turbo/Lightning)."""

    steps: int
    cfg: float
    scheduler: str
    timestep_spacing: str | None = None  # distilled models were trained on "trailing" timesteps


PROFILES = {"standard": Profile(30, 6.0, "DPM++ 2M Karras"), "fast": Profile(4, 0.0, "Euler a", "trailing")}


def scheduler_name(name: str) -> str:
    """The canonical A1111 name for a scheduler name or alias; InputError lists the choices."""
    wanted = " ".join(str(name).replace("_", " ").split()).lower()
    for canonical in SCHEDULERS:
        if canonical.lower() == wanted:
            return canonical
    if str(name).lower() in _ALIASES:
        return _ALIASES[str(name).lower()]
    raise InputError(f"Unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}.")


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. None fields come from the profile; `validated()` checks everything first."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None  # None: a random one, chosen (and recorded) by validated()
    steps: int | None = None
    cfg: float | None = None
    width: int = 1024
    height: int = 1024
    n: int = 1
    scheduler: str | None = None
    profile: str = "standard"

    @property
    def seeds(self) -> list[int]:
        base = 0 if self.seed is None else self.seed
        return [(base + i) % SEED_RANGE for i in range(self.n)]

    @property
    def timestep_spacing(self) -> str | None:
        return PROFILES[self.profile].timestep_spacing if self.profile in PROFILES else None

    def validated(self) -> "GenerationRequest":
        """A complete copy (seed, steps, cfg, scheduler filled in), or InputError saying what to fix."""
        if self.profile not in PROFILES:
            raise InputError(f"Unknown profile {self.profile!r}: use one of {', '.join(PROFILES)}.")
        prof = PROFILES[self.profile]
        prompt = (self.prompt or "").strip() if isinstance(self.prompt, str) else ""
        if not prompt:
            raise InputError("The prompt is empty: type what the image should show.")
        if len(prompt) > MAX_PROMPT_CHARS or len(self.negative_prompt or "") > MAX_PROMPT_CHARS:
            raise InputError(f"Prompts over {MAX_PROMPT_CHARS:,} characters are refused; SDXL reads only "
                             "the first 77 tokens (about 300 characters) of each.")
        for side, value in (("width", self.width), ("height", self.height)):
            if not _is_int(value) or not MIN_SIDE <= value <= MAX_SIDE or value % 8:
                raise InputError(f"{side}={value!r}: use a multiple of 8 from {MIN_SIDE} to {MAX_SIDE} "
                                 f"(SDXL's usual sizes: {', '.join(f'{w}x{h}' for w, h in SDXL_SIZES)}).")
        steps = prof.steps if self.steps is None else self.steps
        if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
            raise InputError(f"steps={steps!r}: use a whole number from 1 to {MAX_STEPS} "
                             f"(SDXL: 20-40; SDXL-Turbo/Lightning with the fast profile: 1-8).")
        cfg = prof.cfg if self.cfg is None else self.cfg
        if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0.0 <= float(cfg) <= MAX_CFG:
            raise InputError(f"cfg={cfg!r}: use a number from 0 to {MAX_CFG:g} (SDXL: 5-8; fast profile: 0).")
        if not _is_int(self.n) or not 1 <= self.n <= MAX_IMAGES:
            raise InputError(f"n={self.n!r}: generate 1 to {MAX_IMAGES} images at a time.")
        seed = secrets.randbelow(SEED_RANGE) if self.seed is None else self.seed
        if not _is_int(seed) or not 0 <= seed < SEED_RANGE:
            raise InputError(f"seed={seed!r}: use a whole number from 0 to {SEED_RANGE - 1}, or leave it empty.")
        return replace(self, prompt=prompt, negative_prompt=(self.negative_prompt or "").strip(), seed=seed,
                       steps=steps, cfg=float(cfg), scheduler=scheduler_name(self.scheduler or prof.scheduler))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Preview:
    """Step `step` of `total`: the current latents decoded by TAESDXL (one image per requested image)."""

    step: int
    total: int
    images: list[Image.Image]


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class GenerationResult:
    """Images with the settings that made them; `saved` is filled by the write-back (studio.writeback)."""

    request: GenerationRequest  # validated: the seed and defaults actually used
    images: list[Image.Image]
    model: str
    device: str
    seconds: float = 0.0
    steps_done: int = 0
    its: float = 0.0  # denoising steps per second
    cancelled: bool = False
    saved: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return self.request.seeds[: len(self.images)] if self.images else []

    def to_dict(self) -> dict[str, Any]:
        return {"request": asdict(self.request), "model": self.model, "device": self.device, "seeds": self.seeds,
                "seconds": round(self.seconds, 3), "steps_done": self.steps_done, "its": round(self.its, 3),
                "cancelled": self.cancelled, "notes": self.notes,
                "saved": [s.to_dict() if hasattr(s, "to_dict") else s for s in self.saved]}

    def describe(self) -> str:
        if self.cancelled:
            return f"cancelled after {self.steps_done} of {self.request.steps} steps; nothing saved."
        lines = [f"{len(self.images)} image(s), {self.request.width}x{self.request.height}, {self.steps_done} steps "
                 f"in {self.seconds:.1f} s ({self.its:.2f} it/s) on {self.device}"]
        lines += [f"  seed {s.seed}: {s.path}" + ("" if s.stored else f"  (not in the store: {s.error})")
                  for s in self.saved]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


class _Cancelled(Exception):
    """Raised from the step callback: leaves the denoising loop at once, skipping the VAE decode."""


def model_label(ref: str) -> str:
    """The short name A1111 shows under `Model:` (checkpoint file stem, or the folder/repo name)."""
    name = Path(ref.rstrip("/\\")).name or ref
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name


class Generator:
    """One SDXL pipeline (passed in; `load` builds it) and how to run it; one generation at a time."""

    def __init__(self, pipe: Any, name: str = "sdxl", device: str = "cpu", placement: str | None = None,
                 taesd_dir: Path | None = None, taesd: Any = None) -> None:
        self.pipe = pipe
        self.name = name
        self.device = device
        self.placement = placement or ("gpu" if device == "cuda" else "cpu")
        self.taesd_dir = taesd_dir
        self._taesd = taesd
        self._base_scheduler = dict(pipe.scheduler.config)  # each request builds a fresh scheduler from this
        self._lock = threading.Lock()  # the pipeline keeps per-call state: never run two calls at once
        self.notes = [CPU_WARNING] if device == "cpu" else []
        if device == "cpu":
            log.warning(CPU_WARNING)
        pipe.set_progress_bar_config(disable=True)

    @classmethod
    def load(cls, settings: Settings, placement: str | None = None) -> "Generator":
        """From a diffusers folder, a single .safetensors, or a hub id (downloaded once when online)."""
        from studio.sdxl_load import load_pipeline

        pipe, device = load_pipeline(settings)
        from studio.taesd import taesd_dir

        gen = cls(pipe, name=settings.sdxl_model, device=device, placement="cpu", taesd_dir=taesd_dir(settings))
        gen.place(placement or ("gpu" if device == "cuda" else "cpu"))
        return gen

    # -- placement ---------------------------------------------------------------------------
    def place(self, placement: str) -> None:
        """Move the pipeline: "gpu", "model_offload", "sequential_offload" or "cpu" (memory.MemoryPlan)."""
        if self.device != "cuda" or placement == self.placement:
            return
        if self.placement.endswith("offload"):
            return  # offloaded weights already leave the GPU after each run; hooks stay as they are
        import torch

        if placement == "gpu":
            self.pipe.to("cuda")
        elif placement == "model_offload":
            self.pipe.enable_model_cpu_offload()
        elif placement == "sequential_offload":
            self.pipe.enable_sequential_cpu_offload()
        elif placement == "cpu":
            self.pipe.to("cpu")
            torch.cuda.empty_cache()
        else:
            raise ValueError(f"unknown placement {placement!r}")
        self.placement = placement

    def vram_bytes(self) -> int:
        from studio.memory import held_by_sdxl

        return held_by_sdxl(self.placement) if self.device == "cuda" else 0

    # -- running -----------------------------------------------------------------------------
    def scheduler_for(self, request: GenerationRequest) -> Any:
        import diffusers

        cls_name, overrides = SCHEDULERS[scheduler_name(request.scheduler or "Euler")]
        if request.timestep_spacing:
            overrides = {**overrides, "timestep_spacing": request.timestep_spacing}
        return getattr(diffusers, cls_name).from_config(self._base_scheduler, **overrides)

    def taesd(self) -> Any:
        """The TAESDXL decoder on the pipeline's device, loaded on the first preview."""
        if self._taesd is None:
            from studio.taesd import load_taesd

            device = str(getattr(self.pipe, "_execution_device", self.device))
            self._taesd = load_taesd(self.taesd_dir, device=device)
        return self._taesd

    def generate(self, request: GenerationRequest, on_preview: Callable[[Preview], None] | None = None,
                 cancel: CancelFlag | None = None, preview_every: int | None = None) -> GenerationResult:
        """Run one request. Previews every `preview_every` steps (default: ~8 per run); a set
        `cancel` stops at the next step and returns a result with cancelled=True and no images."""
        import torch

        req = request.validated()
        result = GenerationResult(req, [], self.name, self.device, notes=list(self.notes))
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            return result
        every = preview_every or max(1, req.steps // 8)
        stamps: list[float] = []

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            stamps.append(time.perf_counter())
            result.steps_done = i + 1
            if cancel is not None and cancel.is_set():
                raise _Cancelled()
            if on_preview is not None and (i + 1) % every == 0 and i + 1 < req.steps:
                from studio.taesd import decode

                on_preview(Preview(i + 1, req.steps, decode(self.taesd(), kwargs["latents"])))
            return {}

        with self._lock:
            self.pipe.scheduler = self.scheduler_for(req)
            # One CPU generator per image: image i is exactly what seed+i gives alone, on any device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in req.seeds]
            start = time.perf_counter()
            try:
                out = self.pipe(
                    prompt=req.prompt, negative_prompt=req.negative_prompt or None, width=req.width,
                    height=req.height, num_inference_steps=req.steps, guidance_scale=req.cfg,
                    num_images_per_prompt=req.n, generator=generators, callback_on_step_end=on_step_end,
                    output_type="pil",
                )
            except _Cancelled:
                self.pipe.maybe_free_model_hooks()  # offloaded models go back to the CPU as after a full run
                result.cancelled = True
                result.seconds = time.perf_counter() - start
                return result
            result.seconds = time.perf_counter() - start
        result.images = list(out.images)
        if len(stamps) >= 2:  # steps after the first: the first one also pays for warm-up
            result.its = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
        elif stamps:
            result.its = 1 / max(stamps[0] - start, 1e-9)
        return result
