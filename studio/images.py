"""Opening images safely: any mode, any size, corrupt files turned into a clear InputError."""

from __future__ import annotations

import io
import re
import threading
import warnings
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageSource = Union[str, Path, bytes, IO[bytes], Image.Image]

# CLIP looks at 224 px (336 for ViT-L/14-336): anything past this is only memory and time.
MAX_SIDE = 1024
MAX_PIXELS = 150_000_000  # refused before decoding: past a 12,000 x 12,000 scan it is a mistake or a bomb
HUGE_PIXELS = 16_000_000  # images past this decode one at a time, so that four at once cannot add up
BAND_ROWS = 1024  # rows of a huge image converted at a time while it is shrunk
_huge = threading.BoundedSemaphore(1)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # MAX_PIXELS is our own check
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _range_top(img: Image.Image) -> float:
    """What white is in a 16-bit, 32-bit int or float image: by its mode, or its own range."""
    if img.mode.startswith("I;16"):
        return 65535.0
    top = img.getextrema()[1]
    if img.mode == "F":
        return 1.0 if top is not None and top <= 1.0 else 255.0
    return 65535.0 if top is not None and top > 255 else 255.0


def _to_8bit(img: Image.Image, top: float | None = None) -> Image.Image:
    """16-bit, 32-bit int and float images scaled to 0..255 (white at `top`)."""
    arr = np.asarray(img, dtype=np.float32)
    top = _range_top(img) if top is None else top
    arr = np.nan_to_num(arr / top * 255.0).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr)  # uint8 2-D -> mode L


def _work_mode(mode: str) -> str:
    if mode in _ALPHA_MODES or mode in ("P", "PA"):
        return "RGBA"
    return "L" if mode in _HIGH_BIT_MODES or mode in ("1", "L") else "RGB"


def shrink(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """A big image made small before anything widens it: band by band, each band of the original is put in
    an 8-bit working mode and reduced by an integer factor, so a 1-bit 12,000 x 12,000 scan never exists
    as a 432 MB RGB copy. Smaller images come back as they are."""
    factor = max(img.size) // max_side
    if factor < 2:
        return img
    work, (w, h) = _work_mode(img.mode), img.size
    top = _range_top(img) if img.mode in _HIGH_BIT_MODES else None
    out = Image.new(work, (-(-w // factor), -(-h // factor)))
    step = factor * max(1, BAND_ROWS // factor)
    for y in range(0, h, step):
        band = img.crop((0, y, w, min(h, y + step)))
        band = _to_8bit(band, top) if top is not None else band.convert(work) if band.mode != work else band
        out.paste(band.reduce(factor), (0, y // factor))
    return out


def to_rgb(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """An 8-bit RGB copy, at most max_side pixels on a side; transparency goes onto white."""
    img = shrink(img, max_side)
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
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(_too_big(label, w * h, f"{w:,} x {h:,} pixels, "))
            img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale, much faster
            with _huge if w * h > HUGE_PIXELS else nullcontext():
                img.load()
                return to_rgb(img)
    except FileNotFoundError as exc:
        raise InputError(f"No such image: {label}. Check the path.") from exc
    except Image.DecompressionBombError as exc:  # Pillow refuses at open past 2 x its own limit
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise InputError(_too_big(label, int(found.group(1)) if found else 0)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why = ("its bytes are not in an image format Pillow knows" if isinstance(exc, UnidentifiedImageError)
               else re.sub(r"<_io\.\w+ object at 0x[0-9a-fA-F]+>", "it", str(exc)))  # never a Python repr
        raise InputError(
            f"Could not read {label} as an image ({why}). Use a PNG, JPEG or WebP file that opens in an image viewer."
        ) from exc


def _too_big(label: str, pixels: int, dims: str = "") -> str:
    size = f" is {dims}{pixels / 1e6:,.0f} MP" if pixels else " is too large"
    return (f"{label}{size}; the studio reads images up to {MAX_PIXELS / 1e6:.0f} MP. Save a smaller copy "
            "(CLIP looks at 224 pixels) and use that.")


def read_location(location: str) -> bytes:
    """The bytes of an image stored at a path or inside a zip ("ZIP::MEMBER")."""
    if "::" in location:
        archive, member = location.split("::", 1)
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    return Path(location).read_bytes()
