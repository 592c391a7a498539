"""Opening images safely: any mode, any size, corrupt files turned into a clear InputError."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageSource = Union[str, Path, bytes, IO[bytes], Image.Image]

# CLIP looks at 224 px (336 for ViT-L/14-336): anything past this is only memory and time.
MAX_SIDE = 1024
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float images scaled to 0..255 by their own range type."""
    arr = np.asarray(img, dtype=np.float32)
    if img.mode == "F":
        top = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
    else:
        top = 65535.0 if img.mode.startswith("I;16") or (arr.size and arr.max() > 255) else 255.0
    arr = np.nan_to_num(arr / top * 255.0).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr)  # uint8 2-D -> mode L


def to_rgb(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """An 8-bit RGB copy, at most max_side pixels on a side; transparency goes onto white."""
    if img.mode in _HIGH_BIT_MODES:
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode not in _ALPHA_MODES | {"RGB", "L"}:
        img = img.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def open_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Open and fully decode an image, or raise InputError naming the file and what to do."""
    from studio.errors import InputError

    label = name or (str(source) if isinstance(source, (str, Path)) else "the image")
    if isinstance(source, Image.Image):
        return to_rgb(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        with Image.open(source) as img:
            img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale, much faster
            img.load()
            return to_rgb(img)
    except FileNotFoundError as exc:
        raise InputError(f"No such image: {label}. Check the path.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"Could not read {label} as an image ({exc}). Use a PNG, JPEG or WebP file that opens in an image viewer."
        ) from exc


def read_location(location: str) -> bytes:
    """The bytes of an image stored at a path or inside a zip ("ZIP::MEMBER")."""
    if "::" in location:
        archive, member = location.split("::", 1)
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    return Path(location).read_bytes()
