"""Files uploaded from the browser made into sources: images (kept under STUDIO_HOME/uploads, since the records
point at them), a zip of a folder (unpacked there, safely), tables and DiffusionDB parts as they are."""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from studio.errors import InputError
from studio.ingest.outputs import IMAGE_FILES
from studio.ingest.sources import TABLE_SUFFIXES

# What an upload may be; a zip's members outside these are left in it.
KEPT = IMAGE_FILES | TABLE_SUFFIXES | {".json"}
UPLOAD_TYPES = sorted(KEPT | {".zip"})
MAX_UNZIPPED = 8 << 30  # a zip that would unpack to more than this is refused (a zip bomb), before writing


@dataclass(frozen=True)
class Upload:
    """One source to ingest: `path` on this machine, `name` as the user called it (for messages)."""

    path: str
    name: str


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:80] or "upload"


def _is_part_zip(path: Path) -> bool:
    """A DiffusionDB part zip (part-XXXXXX.json and its images) is read in place; any other zip is a folder."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith(".json") and "part-" in PurePosixPath(n).name for n in zf.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable zip ({exc}).") from exc


def unzip(path: Path, into: Path, name: str) -> Path:
    """A zip of a folder (images from any tool, tables) unpacked into `into`: members with a kept suffix only,
    none outside the folder (no '..', no absolute paths), nothing hidden, at most MAX_UNZIPPED bytes."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{name} is not a readable zip ({exc}).") from exc
    with zf:
        members = []
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.is_dir() or not parts or parts[0] in ("/", "") or ".." in parts \
                    or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if PurePosixPath(parts[-1]).suffix.lower() in KEPT:
                members.append((info, parts))
        if not members:
            raise InputError(f"{name} holds no images or tables (PNG, JPEG, WebP; .csv, .parquet, .jsonl).")
        if sum(i.file_size for i, _ in members) > MAX_UNZIPPED:
            raise InputError(f"{name} would unpack to more than {MAX_UNZIPPED >> 30} GB: unpack it yourself and "
                             "ingest the folder by its path.")
        into.mkdir(parents=True, exist_ok=True)
        for info, parts in members:
            target = into.joinpath(*(_safe(p) for p in parts))
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return into


def stage(files: Sequence[tuple[str, str]], uploads_dir: Path) -> list[Upload]:
    """(temporary path, the user's file name) per uploaded file -> the sources to ingest, in order: images
    together as one folder under uploads_dir (kept: the records point at them), each zip of a folder unpacked
    there, each table or part zip as it is."""
    if not files:
        raise InputError("Drop files to upload first: images, a .zip of a folder, or a table (.csv, .parquet, .jsonl).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: list[Upload] = []
    images = [(p, n) for p, n in files if Path(n).suffix.lower() in IMAGE_FILES]
    for path, name in files:
        suffix = Path(name).suffix.lower()
        if suffix in IMAGE_FILES:
            continue
        if suffix not in UPLOAD_TYPES:
            raise InputError(f"{name}: upload images (PNG, JPEG, WebP), a .zip of a folder, a DiffusionDB part "
                             "(.zip, .json) or a table (.csv, .parquet, .jsonl).")
        if suffix == ".zip" and not _is_part_zip(Path(path)):
            folder = unzip(Path(path), uploads_dir / f"{stamp}-{_safe(Path(name).stem)}", name)
            out.append(Upload(str(folder), name))
            continue
        out.append(Upload(path, name))
    if images:
        folder = uploads_dir / f"{stamp}-images"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (path, name) in enumerate(images):
            target = folder / _safe(name)
            if target.exists():  # two files of one name: both kept
                target = folder / f"{target.stem}-{i}{target.suffix}"
            shutil.copyfile(path, target)
        label = images[0][1] if len(images) == 1 else f"{len(images)} images"
        out.insert(0, Upload(str(folder), label))
    return out
