"""One writer per embedded store: an exclusive flock on `studio.lock` in the store folder, held by the process
that opened the store (the web app for its whole life, a CLI command while it runs). Chroma's embedded client
keeps the HNSW index in memory and writes it back whole, so two processes on one folder overwrite each other's
vectors; the OS drops the lock when its holder dies, so a SIGKILL never leaves a stale one."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from studio.errors import StoreBusyError

LOCK_FILE = "studio.lock"
_held: dict[Path, IO[str]] = {}  # store folder -> its open, locked file (flock is per open file: one per folder)
_guard = threading.Lock()


def _key(store_dir: Path) -> Path:
    return Path(store_dir).expanduser().resolve()


def held(store_dir: Path) -> bool:
    """True when this process holds the store."""
    return _key(store_dir) in _held


def claim(store_dir: Path, what: str | None = None) -> None:
    """Hold the store for this process (again: a no-op), or raise StoreBusyError saying who holds it."""
    import fcntl

    key = _key(store_dir)
    with _guard:
        if key in _held:
            return
        key.mkdir(parents=True, exist_ok=True)
        f = open(key / LOCK_FILE, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                info = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                info = {}
            f.close()
            raise StoreBusyError(busy_message(key, info), info) from None
        _held[key] = f
        _write(f, {"pid": os.getpid(), "what": what or _command(), "url": None, "since": time.time()})


def announce(store_dir: Path, url: str) -> None:
    """Say where the app holding the store serves it, so a CLI command can hand its ingest over."""
    f = _held.get(_key(store_dir))
    if f is not None:
        f.seek(0)
        try:
            info = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            info = {}
        _write(f, {**info, "url": url, "what": "the web app"})


def release(store_dir: Path) -> None:
    """Let go of the store (Studio.close); other processes may open it then."""
    import fcntl

    with _guard:
        f = _held.pop(_key(store_dir), None)
        if f is not None:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def busy_message(store_dir: Path, info: dict[str, Any]) -> str:
    pid = f"pid {info['pid']}" if info.get("pid") else "another process"
    share = (f"To share one store between processes, serve it with `chroma run --path {store_dir} --port 8000` and "
             "set STUDIO_CHROMA_URL=http://127.0.0.1:8000 in each.")
    if info.get("url"):
        return (f"The studio is running on this store ({pid}, {info['url']}), and a second process beside it would "
                f"lose vectors, so nothing was done. Use the page (the Library tab ingests), or stop the studio and "
                f"run this again. {share}")
    return (f"Another studio command is using this store ({pid}: {info.get('what') or 'unknown'}), and a second "
            f"process beside it would lose vectors, so nothing was done. Wait for it to end, then run this again. "
            f"{share}")


def _write(f: IO[str], info: dict[str, Any]) -> None:
    f.seek(0)
    f.truncate()
    f.write(json.dumps(info))
    f.flush()


def _command() -> str:
    args = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:4]]
    if args and args[0] == "__main__.py":
        args[0] = "python -m studio"
    return " ".join(args)
