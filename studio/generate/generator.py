"""Generator over diffusers SDXL: a checked request -> images, fixed seeds, A1111 prompt syntax and LoRAs,
TAESD step previews, cancel; placed on the GPU as the memory plan says, and whole again after any failure."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from studio.config import Settings
from studio.errors import gpu_memory_error, is_out_of_memory
from studio.generate.request import (
    CPU_WARNING, SCHEDULERS, CancelFlag, GenerationRequest, GenerationResult, Preview, scheduler_name,
)

log = logging.getLogger("studio.generate")
PREVIEW_INTERVAL = 0.5  # seconds between TAESDXL pictures: live, without decoding every CPU step


class _Cancelled(Exception):
    """Raised from the step callback: leaves the denoising loop at once, skipping the VAE decode."""


class Generator:
    """One SDXL pipeline (passed in; `load` and `from_pipe` build one) and how to run it; one generation at a time."""

    def __init__(self, pipe: Any, name: str = "sdxl", device: str = "cpu", placement: str | None = None,
                 taesd_dir: Path | None = None, taesd: Any = None, loras_dir: Path | None = None,
                 gpu_noise: bool = False) -> None:
        from studio.generate.conditioning import PromptEncoder
        from studio.generate.loras import FusedLoras

        self.pipe = pipe
        self.loras_dir = loras_dir  # where <lora:NAME:WEIGHT> finds NAME.safetensors (Settings.loras_dir)
        self.encoder = PromptEncoder(pipe)
        self.loras = FusedLoras(pipe)  # the last job's LoRA set, fused; kept while jobs use the same set
        self.name = name
        self.device = device
        self.placement = placement or ("gpu" if device == "cuda" else "cpu")
        self.gpu_noise = gpu_noise  # seeds draw their noise on the GPU (reproducible there, not across devices)
        self.speedups: list[str] = []  # what speed_up() did (channels_last, fused QKV, compiled)
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
        return cls.from_pipe(pipe, settings, device, placement)

    @classmethod
    def from_pipe(cls, pipe: Any, settings: Settings, device: str | None = None, placement: str | None = None,
                  warm: bool = True) -> "Generator":
        """A pipeline built elsewhere, made ready as load() makes its own: attention, sliced decode, and on a GPU
        the free speed-ups (studio.generate.loading.speed_up), compiled with settings.compile, and a warm-up."""
        from studio.generate.loading import prepare, speed_up
        from studio.generate.taesd import taesd_dir
        from studio.search.embed import pick_device

        device = device or pick_device(settings.device)
        prepare(pipe)
        gen = cls(pipe, name=settings.sdxl_model, device=device, placement="cpu", taesd_dir=taesd_dir(settings),
                  loras_dir=settings.loras_dir, gpu_noise=settings.gpu_noise)
        gen.place(placement or ("gpu" if device == "cuda" else "cpu"))
        if device == "cuda":
            gen.speedups = speed_up(pipe, compile=settings.compile)
            if warm:
                gen.warm_up()
        return gen

    def warm_up(self) -> float:
        """One short run at 1024x1024, so the first image a user asks for does not pay for CUDA's kernel choice
        (or, compiled, for the compilation: a minute or more). Returns the seconds it took."""
        from studio.generate.request import GenerationRequest

        started = time.perf_counter()
        self.generate(GenerationRequest("warm-up", seed=0, steps=2, cfg=5.0))
        took = time.perf_counter() - started
        log.info("SDXL warm-up took %.1f s (%s)", took, ", ".join(self.speedups) or "eager")
        return took

    # -- placement ---------------------------------------------------------------------------
    def place(self, placement: str) -> None:
        """Move the pipeline: "gpu", "model_offload", "sequential_offload" or "cpu" (studio.gpu.MemoryPlan). Model
        offload comes back to the GPU (its hooks removed) when the plan has room again; sequential offload keeps
        its weights on the meta device, so it stays as it is (it is the plan of cards too small for more)."""
        if self.device != "cuda" or placement == self.placement:
            return
        if self.placement == "sequential_offload":
            return
        import torch

        if self.placement == "model_offload":
            self.pipe.remove_all_hooks()  # the weights are in RAM, whole: plain .to() works again
        if placement == "gpu":
            self.pipe.to("cuda")
        elif placement == "model_offload":
            self.pipe.to("cpu")
            self.pipe.enable_model_cpu_offload()
        elif placement == "sequential_offload":
            self.pipe.to("cpu")
            self.pipe.enable_sequential_cpu_offload()
        elif placement == "cpu":
            self.pipe.to("cpu")
            torch.cuda.empty_cache()
        else:
            raise ValueError(f"unknown placement {placement!r}")
        # Memory is short when SDXL is offloaded: decode in tiles too (a 1024x1024 float32 decode is ~3 GB).
        if placement.endswith("offload"):
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()
        self.placement = placement

    def _modules(self) -> list[Any]:
        return [m for m in (getattr(self.pipe, n, None) for n in ("unet", "vae", "text_encoder", "text_encoder_2"))
                if m is not None] + ([self._taesd] if self._taesd is not None else [])

    def weight_bytes(self) -> int:
        """The pipeline's weights and buffers wherever they are (what a full GPU placement holds)."""
        return sum(t.numel() * t.element_size() for m in self._modules() for t in (*m.parameters(), *m.buffers()))

    def vram_bytes(self) -> int:
        """What the pipeline holds on the GPU now, counted tensor by tensor (an offloaded model holds some)."""
        if self.device != "cuda":
            return 0
        return sum(t.numel() * t.element_size() for m in self._modules() for t in (*m.parameters(), *m.buffers())
                   if t.device.type == "cuda")

    # -- running -----------------------------------------------------------------------------
    def scheduler_for(self, request: GenerationRequest) -> Any:
        import diffusers

        cls_name, overrides = SCHEDULERS[scheduler_name(request.scheduler or "Euler")]
        if request.timestep_spacing:
            overrides = {**overrides, "timestep_spacing": request.timestep_spacing}
        return getattr(diffusers, cls_name).from_config(self._base_scheduler, **overrides)

    def taesd(self) -> Any:
        """The TAESDXL decoder on the pipeline's device and in its dtype, loaded on the first preview."""
        if self._taesd is None:
            from studio.generate.taesd import load_taesd

            device = str(getattr(self.pipe, "_execution_device", self.device))
            dtype = self.pipe.unet.dtype if device.startswith("cuda") else None  # fp16 previews cost ~nothing there
            self._taesd = load_taesd(self.taesd_dir, device=device, dtype=dtype)
        return self._taesd

    def _use_loras(self, wanted: list[Any]) -> None:
        """The job's LoRA set fused (kept from the last job when it is the same); fused QKV projections are
        undone while LoRAs apply (peft patches q, k and v apart) and come back after."""
        fused_qkv = "fused QKV" in self.speedups
        if wanted and fused_qkv and getattr(self.pipe, "fusing_unet", False):
            self.pipe.unfuse_qkv_projections()
        self.loras.use(wanted)
        if not wanted and fused_qkv and not getattr(self.pipe, "fusing_unet", False):
            self.pipe.fuse_qkv_projections()

    def _noise(self, seeds: list[int]) -> list[Any]:
        import torch

        device = str(self.pipe._execution_device) if self.gpu_noise and self.device == "cuda" else "cpu"
        # One generator per image: image i is exactly what seed+i gives alone (on any device, with CPU noise).
        return [torch.Generator(device).manual_seed(s) for s in seeds]

    def generate(self, request: GenerationRequest, on_preview: Callable[[Preview], None] | None = None,
                 cancel: CancelFlag | None = None, preview_every: int | None = None,
                 preview_interval: float = PREVIEW_INTERVAL, loras: list[Any] | None = None) -> GenerationResult:
        """Run one request. on_preview hears of every step but the last (step n/N and an ETA); it gets a
        TAESDXL picture every `preview_every` steps when given, else when `preview_interval` seconds have
        passed since the last one (each step on a GPU, one every few on a CPU). A set `cancel` stops at the
        next step and returns a result with cancelled=True and no images.
        The prompt's `<lora:NAME:WEIGHT>` files (`loras`, as studio.generate.loras.loras_of finds them;
        default: looked up in self.loras_dir) are fused for this job and kept for the next with the same set.
        Out of GPU memory anywhere: GpuMemoryError that says what to try, and the pipeline as it was."""
        from studio.generate.loras import loras_of
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
        with self._lock:
            vae_dtype = self.pipe.vae.dtype
            try:
                return self._run(req, result, wanted, on_preview, cancel, preview_every, preview_interval)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                raise gpu_memory_error(f"generating {req.n} image(s) at {req.width}x{req.height}", exc) from None
            finally:
                self._recover(vae_dtype)

    def _recover(self, vae_dtype: Any) -> None:
        """Whatever happened: the VAE back in its own dtype (diffusers upcasts it to float32 for the decode and
        casts back only when the decode returns), offloaded parts back in RAM, the CUDA cache emptied."""
        if self.pipe.vae.dtype != vae_dtype:
            self.pipe.vae.to(dtype=vae_dtype)
        if self.placement.endswith("offload"):
            self.pipe.maybe_free_model_hooks()
        if self.device == "cuda":
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _run(self, req: GenerationRequest, result: GenerationResult, wanted: list[Any],
             on_preview: Callable[[Preview], None] | None, cancel: CancelFlag | None, preview_every: int | None,
             preview_interval: float) -> GenerationResult:
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

        self._use_loras(wanted)
        self.pipe.scheduler = self.scheduler_for(req)
        generators = self._noise(req.seeds)
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
