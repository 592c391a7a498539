"""What to generate and what came back: GenerationRequest (checked before any model loads), profiles,
schedulers, previews, GenerationResult. No diffusers here."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from studio.errors import InputError
from studio.generate.prompt_syntax import split_loras

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
    # DiffusionDB's other samplers, so its settings come back as they were made.
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
}
# DiffusionDB's sampler names, so a retrieved prompt's settings can be reused as they are.
_ALIASES = {"k_euler": "Euler", "k_euler_ancestral": "Euler a", "ddim": "DDIM", "euler_a": "Euler a",
            "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "k_lms": "LMS", "k_heun": "Heun",
            "k_dpm_2": "DPM2", "k_dpm_2_ancestral": "DPM2 a", "plms": "PLMS"}
CPU_WARNING = ("SDXL is running on the CPU: expect minutes per 1024x1024 image. Use a CUDA GPU "
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
            raise InputError(f"Prompts over {MAX_PROMPT_CHARS:,} characters are refused; SDXL reads a long prompt "
                             "in chunks of 75 tokens (about 300 characters each), so shorten it to what matters.")
        for text in (prompt, self.negative_prompt or ""):
            split_loras(text)  # a <lora:...> tag that cannot be read is refused here, before any model loads
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
    """Step `step` of `total` is done. `images`: the current latents decoded by TAESDXL (one per requested
    image), on the steps a preview is due (about twice a second); empty on the others, which report
    progress only. `eta_s`: the steps left at the mean pace of those after the first (None until known)."""

    step: int
    total: int
    images: list[Image.Image]
    eta_s: float | None = None

    def describe(self) -> str:
        eta = "" if self.eta_s is None else f" · about {self.eta_s:.0f} s left" if self.eta_s >= 1 else " · almost done"
        return f"Step {self.step} of {self.total}{eta}"


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class GenerationResult:
    """Images with the settings that made them; `saved` is filled by the write-back (studio.library.writeback)."""

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
    loras: list[dict[str, Any]] = field(default_factory=list)  # applied: name, weight, file, hash (LoraFile.to_dict)
    chunks: int = 1  # 77-token windows the text encoders read (a long prompt, or BREAK, takes several)
    prompts: list[str] = field(default_factory=list)  # each image's own prompt, when they differ (a wildcard batch)

    @property
    def seeds(self) -> list[int]:
        return self.request.seeds[: len(self.images)] if self.images else []

    def to_dict(self) -> dict[str, Any]:
        return {"request": asdict(self.request), "model": self.model, "device": self.device, "seeds": self.seeds,
                "seconds": round(self.seconds, 3), "steps_done": self.steps_done, "its": round(self.its, 3),
                "cancelled": self.cancelled, "notes": self.notes, "loras": self.loras, "chunks": self.chunks,
                "prompts": self.prompts,
                "saved": [s.to_dict() if hasattr(s, "to_dict") else s for s in self.saved]}

    def describe(self) -> str:
        if self.cancelled:
            return f"cancelled after {self.steps_done} of {self.request.steps} steps; nothing saved."
        lines = [f"{len(self.images)} image(s), {self.request.width}x{self.request.height}, {self.steps_done} steps "
                 f"in {self.seconds:.1f} s ({self.its:.2f} it/s) on {self.device}"]
        if self.chunks > 1:
            lines.append(f"  prompt read in {self.chunks} chunks of 75 tokens")
        lines += [f"  LoRA {lo['name']} at {lo['weight']:g}" + (f" (UNet {lo['unet_weight']:g})" if "unet_weight" in lo else "")
                  for lo in self.loras]
        lines += [f"  seed {s.seed}: NOT SAVED: {s.error}" if s.path is None else
                  f"  seed {s.seed}: {s.path}" + ("" if s.stored else f"  (not in the store: {s.error})")
                  for s in self.saved]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def model_label(ref: str) -> str:
    """The short name A1111 shows under `Model:` (checkpoint file stem, or the folder/repo name)."""
    name = Path(ref.rstrip("/\\")).name or ref
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else name
