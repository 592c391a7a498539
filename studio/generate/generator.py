"""Generator over diffusers SDXL: a checked request -> images, fixed seeds, A1111 prompt syntax and LoRAs,
TAESD step previews, cancel."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from studio.config import Settings
from studio.generate.request import (
    CPU_WARNING, SCHEDULERS, CancelFlag, GenerationRequest, GenerationResult, Preview, scheduler_name,
)

log = logging.getLogger("studio.generate")
PREVIEW_INTERVAL = 0.5  # seconds between TAESDXL pictures: live, without decoding every CPU step


class _Cancelled(Exception):
    """Raised from the step callback: leaves the denoising loop at once, skipping the VAE decode."""


class Generator:
    """One SDXL pipeline (passed in; `load` builds it) and how to run it; one generation at a time."""

    def __init__(self, pipe: Any, name: str = "sdxl", device: str = "cpu", placement: str | None = None,
                 taesd_dir: Path | None = None, taesd: Any = None, loras_dir: Path | None = None) -> None:
        from studio.generate.conditioning import PromptEncoder

        self.pipe = pipe
        self.loras_dir = loras_dir  # where <lora:NAME:WEIGHT> finds NAME.safetensors (Settings.loras_dir)
        self.encoder = PromptEncoder(pipe)
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
        from studio.generate.loading import load_pipeline

        pipe, device = load_pipeline(settings)
        from studio.generate.taesd import taesd_dir

        gen = cls(pipe, name=settings.sdxl_model, device=device, placement="cpu", taesd_dir=taesd_dir(settings),
                  loras_dir=settings.loras_dir)
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
        from studio.gpu import held_by_sdxl

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
            from studio.generate.taesd import load_taesd

            device = str(getattr(self.pipe, "_execution_device", self.device))
            self._taesd = load_taesd(self.taesd_dir, device=device)
        return self._taesd

    def generate(self, request: GenerationRequest, on_preview: Callable[[Preview], None] | None = None,
                 cancel: CancelFlag | None = None, preview_every: int | None = None,
                 preview_interval: float = PREVIEW_INTERVAL, loras: list[Any] | None = None) -> GenerationResult:
        """Run one request. on_preview hears of every step but the last (step n/N and an ETA); it gets a
        TAESDXL picture every `preview_every` steps when given, else when `preview_interval` seconds have
        passed since the last one (each step on a GPU, one every few on a CPU). A set `cancel` stops at the
        next step and returns a result with cancelled=True and no images.
        The prompt's `<lora:NAME:WEIGHT>` files (`loras`, as studio.generate.loras.loras_of finds them;
        default: looked up in self.loras_dir) are applied for this run only."""
        import torch

        from studio.generate.loras import applied, loras_of
        from studio.generate.prompt_syntax import split_loras

        req = request.validated()
        wanted = loras_of(req.prompt, self.loras_dir) if loras is None else list(loras)
        result = GenerationResult(req, [], self.name, self.device, notes=list(self.notes),
                                  loras=[lora.to_dict() for lora in wanted])
        if split_loras(req.negative_prompt)[1]:
            result.notes.append("The negative prompt's <lora:...> tags were left out: LoRAs apply from the prompt.")
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            return result
        stamps: list[float] = []
        last_picture: list[float | None] = [None]  # the first step always gets a picture

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            now = time.perf_counter()
            stamps.append(now)
            # Second-order schedulers (Heun, DPM2) loop about twice per step: progress is said in steps.
            timesteps = getattr(pipe.scheduler, "timesteps", None)
            loop = len(timesteps) if timesteps is not None and len(timesteps) else req.steps
            step = min(req.steps, max(1, round((i + 1) * req.steps / loop)))
            result.steps_done = step
            if cancel is not None and cancel.is_set():
                raise _Cancelled()
            if on_preview is not None and i + 1 < loop:
                due = ((i + 1) % preview_every == 0 if preview_every else
                       last_picture[0] is None or now - last_picture[0] >= preview_interval)
                images: list[Any] = []
                if due:
                    from studio.generate.taesd import decode

                    images = decode(self.taesd(), kwargs["latents"])
                    last_picture[0] = time.perf_counter()
                # The first step also pays for warm-up: the pace is that of the steps after it.
                pace = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
                on_preview(Preview(step, req.steps, images, None if pace is None else pace * (loop - i - 1)))
            return {}

        with self._lock, applied(self.pipe, wanted):
            self.pipe.scheduler = self.scheduler_for(req)
            # One CPU generator per image: image i is exactly what seed+i gives alone, on any device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in req.seeds]
            start = time.perf_counter()
            # The encoders read the prompt through compel (A1111 weights, 75-token chunks); LoRA tags left out.
            embeds = self.encoder.encode(req.prompt, req.negative_prompt, guidance=req.cfg > 1,
                                         state=tuple(lora.state for lora in wanted))
            result.chunks = embeds["prompt_embeds"].shape[1] // 77
            try:
                out = self.pipe(
                    **embeds, width=req.width, height=req.height, num_inference_steps=req.steps,
                    guidance_scale=req.cfg, num_images_per_prompt=req.n, generator=generators,
                    callback_on_step_end=on_step_end, output_type="pil",
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
