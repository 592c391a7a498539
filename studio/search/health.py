"""Is the store whole? Its files (a database beside its index folders), records whose vectors cannot be read,
and counters that disagree with the records; cheap probes for launch, full pages for `python -m studio check`."""

from __future__ import annotations

import re
import sqlite3
import struct
from pathlib import Path
from typing import Any, Callable, Iterator

REPAIR_HINT = ("Nothing was changed. Stop the studio and run `python -m studio check --repair` (it rebuilds what "
               "it can from the stored text, the image files and outputs/), then start it again.")
SEGMENT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # Chroma's index folders
PAGE = 5_000  # ids read per page (under Chroma's max batch, 5461)
PROBE = 64  # records probed per collection at launch, spread over the collection


def index_folders(store_dir: Path) -> list[Path]:
    """Chroma's HNSW segment folders that hold files."""
    if not Path(store_dir).is_dir():
        return []
    return [d for d in sorted(Path(store_dir).iterdir())
            if d.is_dir() and SEGMENT.fullmatch(d.name) and any(d.iterdir())]


def files_problem(store_dir: Path) -> str | None:
    """A store whose database is missing, empty or unreadable while its index folders are not (Chroma would
    read it as a new store): said in words; None when the files look whole. Reads the database read-only."""
    folders = index_folders(store_dir)
    if not folders:
        return None
    db = Path(store_dir) / "chroma.sqlite3"
    where = f"the store in {store_dir}"
    if not db.is_file() or db.stat().st_size == 0:
        state = "missing" if not db.is_file() else "empty (0 bytes)"
        return (f"The database of {where} (chroma.sqlite3) is {state}, but {len(folders)} index folders are still "
                f"there: the records (prompts, settings, your generations' lineage) are not readable.")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            n = con.execute("SELECT count(*) FROM collections").fetchone()[0]
    except sqlite3.Error as exc:
        return (f"The database of {where} (chroma.sqlite3) cannot be read ({exc}), but {len(folders)} index "
                f"folders are still there.")
    if n == 0:
        return (f"The database of {where} (chroma.sqlite3) holds no collections, but {len(folders)} index folders "
                f"are still there: it was replaced or emptied.")
    return None


def cut_short(store_dir: Path) -> list[tuple[Path, str]]:
    """Index folders whose files are shorter than their header says (hnswlib would read past their end and crash
    the process): (folder, why). The header: int32 version, then size_t offsetLevel0, max_elements, cur_count,
    size_data_per_element; data_level0.bin holds at least cur_count * size_data_per_element bytes (Chroma writes
    either that or max_elements' worth)."""
    bad = []
    for folder in index_folders(store_dir):
        header, data = folder / "header.bin", folder / "data_level0.bin"
        if not header.is_file():
            continue
        try:
            _, _, _, count, per = struct.unpack("<iQQQQ", header.read_bytes()[:36])
        except struct.error:
            bad.append((folder, "its header.bin is cut short"))
            continue
        want, have = count * per, data.stat().st_size if data.is_file() else 0
        if have < want:
            bad.append((folder, f"its data_level0.bin holds {have:,} of {want:,} bytes"))
    return bad


def damaged_files(store_dir: Path) -> str | None:
    """files_problem, or index folders cut short: what makes opening the store unsafe, in words."""
    problem = files_problem(store_dir)
    if problem:
        return problem
    short = cut_short(store_dir)
    if short:
        return (f"{len(short)} index folders of the store in {store_dir} are cut short ("
                + "; ".join(f"{folder.name}: {why}" for folder, why in short) + "): opened as they are, their "
                "vectors would be read past the end of the files.")
    return None


def _readable(col: Any, ids: list[str]) -> bool:
    try:
        got = col.get(ids=ids, include=["embeddings"])
    except Exception:  # Chroma: "Error finding id" when the index lacks a record's vector
        return False
    embeddings = got.get("embeddings")
    return len(got["ids"]) == len(ids) and embeddings is not None and len(embeddings) == len(ids)


def unreadable(col: Any, ids: list[str]) -> list[str]:
    """The ids among `ids` whose vectors cannot be read, found by halving: one call when all are readable."""
    if not ids or _readable(col, ids):
        return []
    if len(ids) == 1:
        return list(ids)
    mid = len(ids) // 2
    return unreadable(col, ids[:mid]) + unreadable(col, ids[mid:])


def id_pages(col: Any, page: int = PAGE) -> Iterator[list[str]]:
    """Every id of a collection, a page at a time."""
    offset = 0
    while True:
        ids = col.get(include=[], limit=page, offset=offset)["ids"]
        if ids:
            yield list(ids)
        offset += len(ids)
        if len(ids) < page:
            return


def scan(col: Any, tick: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
    """(records checked, ids whose vectors cannot be read), over the whole collection."""
    checked, bad = 0, []
    for ids in id_pages(col):
        bad += unreadable(col, ids)
        checked += len(ids)
        if tick:
            tick(len(ids))
    return checked, bad


def probe(col: Any, total: int, n: int = PROBE) -> tuple[int, int]:
    """(probed, unreadable) for about n records at a few offsets spread over the collection: cheap enough for
    every launch (a handful of reads, at 2M records too); a damaged index shows in it unless the damage is tiny."""
    if total <= 0:
        return 0, 0
    spots = 8
    step = max(1, total // spots)
    per = max(1, n // spots)
    probed, bad = 0, 0
    for offset in range(0, total, step):
        ids = col.get(include=[], limit=per, offset=offset)["ids"]
        bad += len(unreadable(col, list(ids)))
        probed += len(ids)
    return probed, bad
