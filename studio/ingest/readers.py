"""The one place that chooses a reader for a source: a hub range, a folder of images or a part folder, a zip, a table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from studio.errors import InputError
from studio.ingest.outputs import image_files, read_outputs
from studio.ingest.row import Row
from studio.ingest.sources import (
    TABLE_SUFFIXES, has_part_json, parse_hub, part_files, read_folder, read_hub, read_part_json, read_table, read_zip,
)

PART_MARKERS = {".zip", ".csv", ".parquet", ".jsonl", ".ndjson"}  # a DiffusionDB part or a table, not an image folder


@dataclass(frozen=True)
class Reader:
    """A source's rows, as chosen for it. images: a folder of images (ours, any tool's), which the ingest reads in
    smaller batches and with no count pass (each row is decoded and embedded)."""

    read: Callable[[bool], Iterator[Row]]  # light -> rows (light: the count pass's rows, where a table has them)
    images: bool = False


def choose_reader(source: str, cache: Path, offline: bool) -> Reader:
    """The reader for a source; what is wrong with it (no such file, an unknown form) is raised when it is read."""
    path = Path(source).expanduser()
    if is_image_folder(path):
        return Reader(lambda light=False: read_outputs(path), images=True)
    return Reader(lambda light=False: read_source(source, cache, offline, light))


def read_source(source: str, cache: Path, offline: bool, light: bool = False) -> Iterator[Row]:
    """Any supported source, by its form: hub spec, folder, .zip, .parquet or .csv. light: the count pass's
    rows (read_table's light; other forms are read whole)."""
    if source.startswith("hub:"):
        return read_hub(parse_hub(source), cache, offline, light)
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{source}: no such file or folder.")
    if path.is_dir():
        return _read_dir(path)
    if path.suffix == ".zip":
        return read_zip(path)
    if path.suffix in TABLE_SUFFIXES:
        return read_table(path, light)
    if path.suffix == ".json":
        return read_part_json(path)
    raise InputError(f"{source}: use a part folder, a part .zip, a table (.parquet, .csv, .jsonl with a prompt "
                     "column), or hub:2m:1-5.")


def _read_dir(folder: Path) -> Iterator[Row]:
    """A part folder (part JSON, zips, tables), else a folder of images; one with neither says what to point at."""
    if any(part_files(folder)):
        yield from read_folder(folder)
        return
    rows = read_outputs(folder)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{folder} has no images, part JSON, part zip or metadata table. Point at a folder of "
                         "images (PNG, JPEG, WebP), a DiffusionDB part, or STUDIO_HOME/outputs.")
    yield first
    yield from rows


def is_image_folder(folder: Path) -> bool:
    """A folder of images (ours, another tool's, any), not a DiffusionDB part: no part JSON, zip or table beside
    them, and at least one image."""
    if not folder.is_dir() or any(p.suffix.lower() in PART_MARKERS for p in folder.iterdir()) or has_part_json(folder):
        return False
    return next(image_files(folder), None) is not None
