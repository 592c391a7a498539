"""Loading SDXL without surprises: a diffusers folder, one .safetensors (configs shipped here), or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.config import Settings, torch_dtype
from studio.errors import ModelMissingError

# SDXL base 1.0's diffusers configs (model_index, unet, vae, text encoders, scheduler), shipped so a
# single-file checkpoint loads with no network call. Checked by parameter counts in the tests.
SDXL_CONFIG = Path(__file__).resolve().parent / "sdxl_config"
TOKENIZERS_DIR = "sdxl-tokenizers"  # under models/: the two CLIP tokenizers a single file lacks
FP16_FIX_VAE_DIR = "sdxl-vae-fp16-fix"  # under models/: madebyollin's VAE, finite in fp16 (no upcast)


def _tokenizer_folders(settings: Settings) -> Path | None:
    """A folder holding tokenizer/ and tokenizer_2/ with their vocab: ours, or any local SDXL folder."""
    candidates = [settings.models_dir / TOKENIZERS_DIR]
    if settings.models_dir.is_dir():
        candidates += sorted(p for p in settings.models_dir.iterdir() if (p / "model_index.json").is_file())
    for folder in candidates:
        if all((folder / sub / "vocab.json").is_file() and (folder / sub / "merges.txt").is_file()
               for sub in ("tokenizer", "tokenizer_2")):
            return folder
    return None


def single_file_tokenizers(settings: Settings) -> tuple[Any, Any]:
    """SDXL's two CLIP tokenizers for a single-file checkpoint (which holds none): a local SDXL folder's,
    else built from the shipped CLIP vocabulary (studio/tokens.py): never a download."""
    from transformers import CLIPTokenizer

    from studio.tokens import clip_tokenizer

    folder = _tokenizer_folders(settings)
    if folder is None:
        return clip_tokenizer(), clip_tokenizer("!")  # tokenizer_2 pads with "!", as SDXL's does
    return (CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
            CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2")))


def _fp16_fix_vae(settings: Settings, dtype: Any) -> Any | None:
    import torch

    folder = settings.models_dir / FP16_FIX_VAE_DIR
    if dtype != torch.float16 or not (folder / "config.json").is_file():
        return None
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(folder), dtype=dtype, local_files_only=True)


def load_pipeline(settings: Settings) -> tuple[Any, str]:
    """(StableDiffusionXLPipeline, device), on the CPU; Generator.place() moves it. Never downloads
    when offline; a hub id is fetched once by studio.weights.ensure."""
    from diffusers import StableDiffusionXLPipeline

    from studio.search.embed import pick_device
    from studio.weights import ensure

    loc = ensure("sdxl", settings)
    device = pick_device(settings.device)
    dtype = torch_dtype(device, settings.precision)
    extra: dict[str, Any] = {"add_watermarker": False}  # the invisible watermark alters pixels; users opt in
    vae = _fp16_fix_vae(settings, dtype)
    if vae is not None:
        extra["vae"] = vae
    path = Path(loc.path)  # type: ignore[arg-type]
    try:
        if path.is_dir():
            # studio.weights downloads only the *.fp16.safetensors files: load that variant when present.
            variant = "fp16" if any(path.glob("unet/*.fp16.safetensors")) else None
            pipe = StableDiffusionXLPipeline.from_pretrained(str(path), dtype=dtype, variant=variant,
                                                             use_safetensors=True, local_files_only=True, **extra)
        else:
            tokenizer, tokenizer_2 = single_file_tokenizers(settings)
            pipe = StableDiffusionXLPipeline.from_single_file(
                str(path), config=str(SDXL_CONFIG), dtype=dtype, local_files_only=True,
                tokenizer=tokenizer, tokenizer_2=tokenizer_2, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelMissingError(f"Could not load SDXL from {path} ({type(exc).__name__}: {exc}). Point "
                                "STUDIO_SDXL_MODEL at a diffusers SDXL folder or an SDXL .safetensors checkpoint.") from exc
    if vae is None:
        # SDXL's own VAE overflows to NaN (black images) in fp16; force_upcast makes the pipeline decode in
        # float32. Set even where a folder's config says False: we cannot tell a fixed VAE from the stock one,
        # and a slower decode beats a black image. models/sdxl-vae-fp16-fix (no upcast) skips it.
        pipe.vae.register_to_config(force_upcast=True)
    return pipe, device


def prepare(pipe: Any) -> Any:
    """What every SDXL pipeline gets, wherever it came from: PyTorch's fused attention and a bounded decode."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    # SDPA: PyTorch's fused attention (flash / memory-efficient kernels on CUDA), set explicitly.
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    # Decode one image at a time: a batch of 8 at 1024x1024 costs one image's decode memory, not eight.
    pipe.vae.enable_slicing()
    return pipe


def speed_up(pipe: Any, compile: bool = False) -> list[str]:
    """The free speed-ups of a pipeline that stays on a GPU (diffusers' "speed up inference" guide):
    channels_last convolutions, fused QKV projections (undone while LoRAs apply: peft patches q, k and v
    apart), and with `compile` torch.compile of the UNet and the VAE decoder (minutes on the first image).
    Returns what was done, in words. Not done on the CPU by default: there it changes pixels for no gain."""
    import torch

    done = []
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    done.append("channels_last")
    pipe.fuse_qkv_projections(unet=True, vae=True)
    done.append("fused QKV")
    if compile:
        pipe.unet = torch.compile(pipe.unet, fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
        done.append("compiled UNet and VAE decoder")
    return done
