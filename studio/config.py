"""Settings: one frozen dataclass with commented defaults, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# The project folder: models/ and the shipped sample live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # 512-d; ViT-L/14 is selectable
DEFAULT_LLM = "llama-2-7b-chat.Q4_K_M.gguf"  # looked up in models/; the starter model stands in
DEFAULT_SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
# Suggested for ideas in other languages (512-d, in ViT-B/32's space); used only when configured.
DEFAULT_MULTILINGUAL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
MULTILINGUAL_QUERIES = ("auto", "all")
DEVICES = ("auto", "cuda", "cpu")
# Weights' dtype: auto = fp16 on CUDA, fp32 on the CPU. fp32 is A1111's --no-half (GTX 16xx cards give black
# images in fp16); bf16 has fp32's range on Ampere and newer.
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
# Where SDXL's weights live while it runs: auto plans by free VRAM; model = one component on the GPU at a time
# (A1111's --medvram), sequential = layer by layer (--lowvram), none = all on the GPU.
OFFLOADS = ("auto", "none", "model", "sequential")


def torch_dtype(device: str, precision: str = "auto") -> Any:
    """The torch dtype of STUDIO_PRECISION on `device`: auto is fp16 on CUDA (half the memory, tensor cores)
    and float32 on the CPU; fp16, bf16 and fp32 are honoured on any device (fp16 runs on a CPU, slowly)."""
    import torch

    if precision == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _workers(value: str | None) -> int | None:
    if not (value or "").strip():
        return None
    if not value.strip().isdigit():
        from studio.errors import InputError

        raise InputError(f"STUDIO_INGEST_WORKERS={value!r}: use a number of threads (0: no decode pool), or leave "
                         "it unset to derive it from the cores.")
    return int(value)


@dataclass(frozen=True)
class Settings:
    # Data root: the Chroma store (store/) and generated images (outputs/).
    home: Path = PROJECT_ROOT / "data"
    # Where users put weights; a hub id is looked up here before any download.
    models_dir: Path = PROJECT_ROOT / "models"
    # Model references: a local path, a folder name under models/, or a hub id.
    clip_model: str = DEFAULT_CLIP
    llm_model: str = DEFAULT_LLM
    sdxl_model: str = DEFAULT_SDXL
    # A text encoder distilled from the CLIP above, for queries in other languages (a sentence-transformers
    # folder, models/ name or hub id); empty: every query goes through CLIP's own text tower.
    multilingual_model: str = ""
    # Which queries it encodes: "auto" (those not in English; English ones keep CLIP's own) or "all".
    multilingual_queries: str = "auto"
    # The CLIP it was distilled from, when neither its clip_alignment.json nor a known name says.
    multilingual_clip: str = ""
    # Set: talk to a Chroma server (`chroma run`) over HTTP; unset: the embedded store.
    chroma_url: str | None = None
    # "auto" picks CUDA when torch sees a GPU, else CPU.
    device: str = "auto"
    # Model weights' precision (PRECISIONS), honoured on every device, the CPU included.
    precision: str = "auto"
    # SDXL's placement (OFFLOADS): auto follows the memory plan (studio/gpu.py).
    offload: str = "auto"
    # torch.compile the UNet and the VAE decoder (the first generation then takes a minute or more).
    compile: bool = False
    # Draw the initial noise on the GPU (seeded and reproducible on the same device; CPU noise, the default,
    # gives the same picture for a seed on any device).
    gpu_noise: bool = False
    # Never touch the network (also implied by HF_HUB_OFFLINE=1).
    offline: bool = False
    # Search defaults: hide NSFW scores at or above this (DiffusionDB's 0..1 scores).
    nsfw_threshold: float = 0.5
    # Items per CLIP forward pass while ingesting.
    batch_size: int = 64
    # Threads that decode and preprocess images ahead of CLIP while ingesting: unset derives it from the cores
    # and the device (studio/ingest/feed.py says why); 0 decodes in the reader thread, one image at a time.
    ingest_workers: int | None = None
    # The shipped DiffusionDB sample, ingested on first launch into an empty store.
    sample_dir: Path = field(default=PROJECT_ROOT / "data" / "diffusiondb-sample")

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def loras_dir(self) -> Path:
        """Where `<lora:NAME:WEIGHT>` finds NAME.safetensors (follows STUDIO_MODELS_DIR)."""
        return self.models_dir / "loras"

    @property
    def served_dirs(self) -> tuple[Path, Path]:
        """The only folders the web app serves files from: generated images and the sample's images."""
        return self.outputs_dir, Path(self.sample_dir) / "images"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> "Settings":
        """Read STUDIO_* variables; keyword overrides (CLI flags) win over the environment."""
        env = dict(os.environ if env is None else env)
        base = cls()
        values: dict[str, object] = {
            "home": env.get("STUDIO_HOME") or base.home,
            "models_dir": env.get("STUDIO_MODELS_DIR") or base.models_dir,
            "clip_model": env.get("STUDIO_CLIP_MODEL") or base.clip_model,
            "llm_model": env.get("STUDIO_LLM_MODEL") or base.llm_model,
            "sdxl_model": env.get("STUDIO_SDXL_MODEL") or base.sdxl_model,
            "multilingual_model": env.get("STUDIO_MULTILINGUAL_MODEL") or base.multilingual_model,
            "multilingual_queries": (env.get("STUDIO_MULTILINGUAL_QUERIES") or base.multilingual_queries).lower(),
            "multilingual_clip": env.get("STUDIO_MULTILINGUAL_CLIP") or base.multilingual_clip,
            "chroma_url": env.get("STUDIO_CHROMA_URL") or None,
            "device": (env.get("STUDIO_DEVICE") or base.device).lower(),
            "precision": (env.get("STUDIO_PRECISION") or base.precision).lower(),
            "offload": (env.get("STUDIO_OFFLOAD") or base.offload).lower(),
            "compile": _flag(env.get("STUDIO_COMPILE")),
            "gpu_noise": _flag(env.get("STUDIO_GPU_NOISE")),
            "offline": _flag(env.get("STUDIO_OFFLINE")) or _flag(env.get("HF_HUB_OFFLINE")),
            "ingest_workers": _workers(env.get("STUDIO_INGEST_WORKERS")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("home", "models_dir", "sample_dir"):
            if key in values:
                values[key] = Path(values[key]).expanduser()  # type: ignore[arg-type]
        settings = cls(**values)  # type: ignore[arg-type]
        for name, value, allowed in (("STUDIO_DEVICE", settings.device, DEVICES),
                                     ("STUDIO_PRECISION", settings.precision, PRECISIONS),
                                     ("STUDIO_OFFLOAD", settings.offload, OFFLOADS)):
            if value not in allowed:
                from studio.errors import InputError

                raise InputError(f"{name}={value!r}: use one of {', '.join(allowed)}.")
        if settings.multilingual_queries not in MULTILINGUAL_QUERIES:
            from studio.errors import InputError

            raise InputError(f"STUDIO_MULTILINGUAL_QUERIES={settings.multilingual_queries!r}: use auto (queries not "
                             "in English) or all.")
        return settings

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]
