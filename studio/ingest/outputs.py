"""A source of our own images: PNGs in STUDIO_HOME/outputs (our chunk) or from AUTOMATIC1111 (its
`parameters` text) -> Rows for the one ingest pipeline, each with its settings and lineage."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from studio.errors import InputError
from studio.ingest.cells import typed_settings
from studio.ingest.sources import Row
from studio.search.results import SETTING_KEYS

OUTPUTS_PART = "outputs"  # the `counts` key of generated images on a prompt record


def _created(chunk: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(chunk["timestamp"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def chunk_fields(chunk: dict[str, Any]) -> dict[str, Any]:
    """The record metadata a generation's chunk adds beside its settings: lineage (flattened: Chroma
    keeps scalars only), models, negative prompt, profile and when it was made."""
    lineage = dict(chunk.get("lineage") or {})
    lineage["retrieved_ids"] = json.dumps(lineage.get("retrieved_ids") or [])
    if chunk.get("loras"):  # the LoRA files a generation applied (name, weight, hash), as JSON text
        lineage["loras"] = json.dumps(chunk["loras"], ensure_ascii=False)
    return {**lineage, "sdxl_model": chunk.get("model"), "negative_prompt": chunk.get("negative_prompt") or None,
            "profile": chunk.get("profile"), "timestamp": chunk.get("timestamp"), "created": _created(chunk)}


def chunk_source(chunk: dict[str, Any]) -> str:
    """generated: made by this studio; user: another tool's image (A1111 text only)."""
    return "generated" if chunk.get("app") == "prompt-studio" else "user"


def row_of(chunk: dict[str, Any], location: str, pixels: Any = None, vector: Any = None) -> Row:
    settings = typed_settings({k: chunk.get(k) for k in SETTING_KEYS})
    return Row(str(chunk["image_id"]), str(chunk["prompt"]), OUTPUTS_PART, settings, location,
               source=chunk_source(chunk), extra=chunk_fields(chunk), pixels=pixels, vector=vector)


def read_outputs(folder: Path) -> Iterator[Row]:
    """PNGs with our `prompt-studio` chunk or A1111 `parameters` text -> Rows."""
    from studio.library.pngmeta import chunk_from_parameters, read_png

    for path in sorted(Path(folder).glob("*.png")):
        if path.name.startswith(".partial-"):
            continue  # a write cut short (pngmeta writes atomically): not an image yet
        try:
            params, chunk = read_png(path)
        except InputError:
            continue
        if chunk is None and params is not None:
            chunk = chunk_from_parameters(params, path)
        if not chunk or not chunk.get("image_id") or not str(chunk.get("prompt") or "").strip():
            continue
        yield row_of(chunk, str(path.resolve()))


def is_outputs_folder(folder: Path) -> bool:
    """A folder of generated PNGs (ours, or A1111's), not a DiffusionDB part: no part JSON/zip/table,
    and a PNG that carries generation metadata."""
    from studio.library.pngmeta import read_png

    if not folder.is_dir() or any(p.suffix in {".json", ".zip", ".csv", ".parquet"} for p in folder.iterdir()):
        return False
    for path in folder.glob("*.png"):
        try:
            if any(read_png(path)):
                return True
        except InputError:
            continue
    return False
