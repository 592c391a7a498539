"""What the studio began and has not finished, kept beside the store so the next start can finish it: the first
run's sample load, the sources ingested into the store (what a repair reads again), write-backs in flight."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from studio.config import Settings

SAMPLE = "studio-sample.json"  # {"state": "loading" | "done"}
INGESTED = "studio-ingested.jsonl"  # one line per finished ingest: {"source", "tag", "limit", "at"}
PENDING = ".pending"  # under outputs/: one file per write-back whose records may not all be stored yet


def state_dir(settings: Settings) -> Path:
    """Where the journal lives: in the embedded store's folder (it moves with the store), or for a Chroma
    server under STUDIO_HOME."""
    return settings.home / "server-state" if settings.chroma_url else settings.store_dir


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # whole or not at all: a kill never leaves half a file


def sample_started(settings: Settings) -> None:
    _write(state_dir(settings) / SAMPLE, {"state": "loading", "at": time.time()})


def sample_done(settings: Settings) -> None:
    _write(state_dir(settings) / SAMPLE, {"state": "done", "at": time.time()})


def sample_unfinished(settings: Settings) -> bool:
    """The first run's sample load began and never ended (the studio was stopped while it loaded)."""
    try:
        return json.loads((state_dir(settings) / SAMPLE).read_text(encoding="utf-8")).get("state") == "loading"
    except (OSError, ValueError):
        return False


def ingested(settings: Settings, source: str, tag: str | None, limit: int | None) -> None:
    """Remember a finished ingest (a repair of a store whose database was lost reads its sources again)."""
    path = state_dir(settings) / INGESTED
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"source": source, "tag": tag, "limit": limit, "at": time.time()}) + "\n")


def sources(folder: Path) -> list[dict[str, Any]]:
    """The ingests recorded in a store folder, each source once (its last run), oldest first."""
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = (Path(folder) / INGESTED).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        out.pop(entry.get("source"), None)
        out[entry.get("source")] = entry
    return list(out.values())


def write_back_started(outputs_dir: Path) -> Path | None:
    """A marker written before a write-back saves its PNGs; removed once their records are stored. None when it
    cannot be written (a full disk): the write-back goes on and says per image what was saved."""
    path = Path(outputs_dir) / PENDING / f"{uuid.uuid4().hex}.json"
    try:
        _write(path, {"pid": os.getpid(), "at": time.time()})
    except OSError:
        return None
    return path


def write_back_done(marker: Path | None) -> None:
    if marker is not None:
        marker.unlink(missing_ok=True)


def pending_write_backs(outputs_dir: Path) -> list[Path]:
    folder = Path(outputs_dir) / PENDING
    return sorted(folder.glob("*.json")) if folder.is_dir() else []
