"""A folder of images as a source: our own PNGs (STUDIO_HOME/outputs: our chunk, source=generated, lineage) and the
user's images from any tool (sd-parsers reads AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI, NovelAI: source=user),
every image a Row, one without metadata too (embedded, findable by image), one that cannot be read named."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, UnidentifiedImageError

from studio.ingest.cells import typed_settings
from studio.ingest.row import Row
from studio.ingest.toolmeta import ToolMeta, ToolReader
from studio.library.lineage import APP, chunk_metadata, is_ours
from studio.search.results import SETTING_KEYS

OUTPUTS_PART = "outputs"  # the `counts` key of generated (and the user's) images on a prompt record
# What Pillow opens; anything else in the folder (the .txt A1111 can write beside an image, notes) is not an image.
IMAGE_FILES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def row_of(chunk: dict[str, Any], location: str, pixels: Any = None, vector: Any = None) -> Row:
    settings = typed_settings({k: chunk.get(k) for k in SETTING_KEYS})
    return Row(str(chunk["image_id"]), str(chunk["prompt"]), OUTPUTS_PART, settings, location,
               source="generated" if is_ours(chunk) else "user", extra=chunk_metadata(chunk), pixels=pixels, vector=vector)


def image_files(folder: Path) -> Iterator[Path]:
    """Every image under folder (subfolders too: A1111 files by date), in a stable order; hidden files and
    writes cut short (.partial-*, pngmeta writes atomically) left out."""
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).parts
        if path.suffix.lower() in IMAGE_FILES and not any(p.startswith(".") for p in rel) and path.is_file():
            yield path


def our_chunk(img: Any) -> dict[str, Any] | None:
    """The studio's own JSON chunk, when this PNG is one of ours (a damaged chunk counts as none)."""
    text = img.info.get(APP) or (getattr(img, "text", {}) or {}).get(APP)
    try:
        chunk = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if not isinstance(chunk, dict) or not chunk.get("image_id") or not str(chunk.get("prompt") or "").strip():
        return None
    return chunk


def tool_row(meta: ToolMeta, image_id: str, path: Path, location: str) -> Row:
    notes: list[str] = []
    settings = typed_settings(meta.settings, notes, f" in {path.name}")
    extra = {"tool": meta.tool, "negative_prompt": meta.negative_prompt, **meta.extra,
             "created": path.stat().st_mtime}
    return Row(image_id, meta.prompt, OUTPUTS_PART, settings, location, source="user", extra=extra,
               notes=notes or None)


def read_image(path: Path, reader: ToolReader) -> Row:
    """One file -> its Row: ours first (our chunk keeps our lineage), then any tool's metadata, else an image
    with no prompt; a file Pillow cannot open comes back with `error` set, a tool's metadata that sd-parsers
    stumbles on leaves the image without a prompt, with a note."""
    location, notes = str(path.resolve()), []
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            chunk = our_chunk(img) if img.format == "PNG" else None
            if chunk is not None:
                return row_of(chunk, location)
            try:
                meta = reader.read(img)
            except (OSError, SyntaxError, ValueError):
                raise  # the file itself is damaged (a truncated PNG's text chunks): unreadable below
            except Exception as exc:  # noqa: BLE001 - odd metadata of a good image: kept without a prompt
                meta = None
                notes.append(f"metadata of {path.name} not readable ({type(exc).__name__}); stored without a prompt")
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for files it cannot open (Unidentified...)
        why = "not an image Pillow can open" if isinstance(exc, UnidentifiedImageError) else str(exc) or type(exc).__name__
        return Row(path.name, "", OUTPUTS_PART, source="user", error=why)
    # The same bytes give the same id, so ingesting the folder again adds nothing.
    image_id = f"{'png' if path.suffix.lower() == '.png' else 'img'}-{hashlib.sha1(data).hexdigest()[:24]}"
    if meta is None:
        return Row(image_id, "", OUTPUTS_PART, location=location, source="user", notes=notes or None)
    return tool_row(meta, image_id, path, location)


def read_outputs(folder: Path) -> Iterator[Row]:
    """Every image in the folder -> a Row (generated, the user's with its metadata, or without any)."""
    reader = ToolReader()
    for path in image_files(folder):
        yield read_image(path, reader)
