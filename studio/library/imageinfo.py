"""PNG Info: what an image file says about how it was made (ours, or AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI,
NovelAI through sd-parsers), as one typed value."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from studio.images import ImageSource
from studio.ingest.cells import typed_settings
from studio.ingest.outputs import our_chunk
from studio.library.lineage import is_ours
from studio.search.results import SETTING_KEYS

OURS = "Prompt Studio"  # the tool name of an image the studio made


@dataclass(frozen=True)
class ImageInfo:
    """An image's own prompt and settings. `settings`: seed (an int, exactly as written: ComfyUI's reach 2**64-1),
    steps, cfg, sampler, width, height; only those the file holds."""

    tool: str  # "Prompt Studio", or sd-parsers' generator name: AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI, NovelAI
    prompt: str
    negative_prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_info(source: ImageSource) -> ImageInfo | None:
    """The metadata an image file carries; None when it has none (a photo, a screenshot) or cannot be opened
    (opening it for its pixels says why)."""
    try:
        if isinstance(source, Image.Image):
            return _info_of(source)
        data = source if isinstance(source, (bytes, bytearray)) else None
        if data is None and isinstance(source, (str, Path)):
            data = Path(source).read_bytes()
        with Image.open(io.BytesIO(data) if data is not None else source) as img:
            return _info_of(img)
    except Exception:  # noqa: BLE001 - an unreadable file or odd metadata: no info, never a failed drop
        return None


def _info_of(img: Image.Image) -> ImageInfo | None:
    from studio.ingest.toolmeta import ToolReader

    chunk = our_chunk(img) if img.format == "PNG" else None
    if chunk is not None:
        settings = typed_settings({k: chunk.get(k) for k in SETTING_KEYS})
        return ImageInfo(OURS if is_ours(chunk) else str(chunk.get("tool") or "another tool"), str(chunk["prompt"]),
                         chunk.get("negative_prompt") or None, settings, chunk.get("model") or None)
    meta = ToolReader().read(img)
    if meta is None or not meta.prompt.strip():
        return None
    settings = typed_settings(meta.settings)
    return ImageInfo(meta.tool, meta.prompt, meta.negative_prompt, settings, meta.extra.get("model"))
