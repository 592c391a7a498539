"""TAESDXL: the real tiny SDXL autoencoder, for live step previews (and a fast draft decode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio.config import PROJECT_ROOT, Settings
from studio.errors import ModelMissingError

TAESD_FOLDER = "taesd"  # under models/: the MIT-licensed weights shipped with the project (models/taesd/README.md)


def taesd_dir(settings: Settings | None = None) -> Path:
    """models/taesd of the user's models folder when it has the files, else the project's own copy."""
    if settings is not None and (settings.models_dir / TAESD_FOLDER / "taesdxl_decoder.safetensors").is_file():
        return settings.models_dir / TAESD_FOLDER
    return PROJECT_ROOT / "models" / TAESD_FOLDER


def load_taesd(folder: Path | None = None, kind: str = "taesdxl", encoder: bool = False,
               device: str = "cpu", dtype: Any = None) -> Any:
    """A diffusers AutoencoderTiny holding the trained TAESD(XL) decoder (and encoder, if asked).

    The files keep madebyollin's nn.Sequential layout; the decoder's first layer there is a
    weightless clamp that diffusers does in forward(), so decoder indices shift down by one."""
    import torch
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else taesd_dir()
    parts = ["decoder"] + (["encoder"] if encoder else [])
    state: dict[str, Any] = {}
    for part in parts:
        path = folder / f"{kind}_{part}.safetensors"
        if not path.is_file():
            raise ModelMissingError(f"{path} is missing: the TAESD previews need it. Restore models/taesd/ from the "
                                    "project (git checkout models/taesd) or copy it from madebyollin/taesd.")
        for key, value in load_file(str(path)).items():
            index, _, rest = key.partition(".")
            shifted = int(index) - 1 if part == "decoder" else int(index)
            state[f"{part}.layers.{shifted}.{rest}"] = value.float()
    model = AutoencoderTiny()
    if not encoder:
        model.encoder = None  # type: ignore[assignment]  # previews only decode: skip half the memory
    model.load_state_dict(state, strict=True)
    model = model.to(device=device).eval()
    # Only cast when asked: the weights were made float32 above, and to(dtype) warns needlessly.
    return model.to(dtype=dtype) if dtype is not None and dtype != torch.float32 else model


def to_pil(images: Any) -> list[Image.Image]:
    """A [-1, 1] NCHW tensor -> 8-bit RGB PIL images."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return [Image.fromarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy()]


def decode(taesd: Any, latents: Any) -> list[Image.Image]:
    """SDXL's scaled latents (as the UNet sees them) -> preview images, 8x the latent size."""
    import torch

    param = next(taesd.decoder.parameters())
    with torch.inference_mode():
        out = taesd.decode(latents.to(device=param.device, dtype=param.dtype)).sample
    return to_pil(out)


def encode(taesd: Any, image: Image.Image) -> Any:
    """An RGB image -> TAESDXL latents (1, 4, h/8, w/8); the sides must be multiples of 8."""
    import torch

    param = next(taesd.encoder.parameters())
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        return taesd.encode(x.to(device=param.device, dtype=param.dtype)).latents
