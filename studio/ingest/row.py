"""Row: one image (or metadata line) of any source, as every reader yields it and the pipeline takes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Row:
    """One image (or metadata line) of a source: its prompt, settings and, maybe, its pixels."""

    image_name: str
    prompt: str
    part: str  # the DiffusionDB part ("part-000001") or the file it came from
    settings: dict[str, Any] = field(default_factory=dict)
    location: str | None = None  # a file path, or "ZIP::MEMBER"; None for metadata-only rows
    source: str | None = None  # this row's `source` tag when it differs from the ingest's (our PNGs: generated)
    extra: dict[str, Any] = field(default_factory=dict)  # more record metadata (a generation's lineage)
    pixels: Any = None  # the decoded image when the caller has it (write-back), else read from `location`
    vector: Any = None  # its CLIP image vector when the caller has it (compare scores with it)
    notes: list[str] | None = None  # cells left out because they were not of their type (the report lists them)
    error: str | None = None  # why this file cannot be read as an image: counted and named in the report, not stored
