"""Record counts by source, kept by the writers in each collection's metadata, so the Library's statistics
never scan: a read is one metadata fetch, and Chroma's count() at most every VERIFY_S per collection (count()
itself counts rows: 75-114 ms at 925k records, and the Library asks on every visit).

Exact by construction: writers add a batch's sources right after upserting records that were not stored
before (under one lock per process). The one way counters can lag, a process killed between the two, or
another process writing at the same moment, shows as a total that differs from Chroma's own count();
then the collection is recounted once, in pages, in the background, and the counters set from that. Until then
the counts read say exact=False. A recount still running when the process exits is stopped between two pages
and joined (atexit): a thread inside Chroma while the interpreter tears down crashes it (SIGSEGV)."""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections import Counter
from typing import Any, Iterable

KEY = "counts_by_source"
PAGE = 20_000
UNKNOWN_SOURCE = "?"  # records stored without a source are counted under this
FLUSH_S = 2.0  # counters are written at most this often while an ingest adds (and when it ends)
LOCK = threading.RLock()  # held across "upsert + add", and across "count() + read" in stats
# Process state is keyed by collection id, never by name: two stores opened with the same CLIP (a test run, the
# CLI beside a server) have collections of the same names, and one store's unwritten counts are not the other's.
_recounting: dict[str, threading.Thread] = {}  # collection id -> its background recount
_stopping = threading.Event()  # set at exit: a background recount stops at its next page, unwritten
_pending: dict[str, Counter] = {}  # collection id -> added in this process, not yet written (read() includes them)
_flushed: dict[str, float] = {}  # collection id -> when its counts were last written
VERIFY_S = 30.0  # counters that matched count() this recently are trusted without asking again
_verified: dict[str, float] = {}  # collection id -> when its counters last matched count()


def _stored(meta: dict[str, Any] | None) -> dict[str, int] | None:
    raw = (meta or {}).get(KEY)
    try:
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else None
    except (TypeError, ValueError):
        return None


def _write(col: Any, counts: dict[str, int]) -> None:
    meta = dict(col.metadata or {})
    meta[KEY] = json.dumps({k: v for k, v in sorted(counts.items()) if v}, separators=(",", ":"))
    col.modify(metadata=meta)


def add(client: Any, col: Any, sources: Iterable[str]) -> None:
    """Count newly stored records (call under LOCK, right after their upsert). They are written with the
    collection's metadata every FLUSH_S (a metadata write per batch costs a bulk load ~10%)."""
    key = str(col.id)
    _pending.setdefault(key, Counter()).update(str(s or UNKNOWN_SOURCE) for s in sources)
    if time.monotonic() - _flushed.get(key, 0.0) >= FLUSH_S:
        flush(client, col)


def remove(client: Any, col: Any, sources: Iterable[str]) -> None:
    """Count records just deleted (call under LOCK, right after the delete); written at once (deletes are few)."""
    _pending.setdefault(str(col.id), Counter()).subtract(str(s or UNKNOWN_SOURCE) for s in sources)
    flush(client, col)


def flush(client: Any, col: Any) -> None:
    """Write this process's pending counts for `col` (its metadata read fresh: a recount or another process may
    have set it since). Call under LOCK; ingest calls it when it ends."""
    key = str(col.id)
    new = _pending.pop(key, None)
    _flushed[key] = time.monotonic()
    if not new:
        return
    col = client.get_collection(col.name, embedding_function=None)
    if str(col.id) != key:
        return  # the collection was replaced since (a rebuild): its records were counted when they went in
    counts = _stored(col.metadata)
    if counts is None:
        return  # never counted (a store from before counters): the first stats() recounts it
    for source, n in new.items():
        counts[source] = max(0, counts.get(source, 0) + n)
    _write(col, counts)


def start(col: Any) -> None:
    """A new, empty collection: counting starts at zero."""
    if _stored(col.metadata) is None and col.count() == 0:
        _write(col, {})


def recount(col: Any, stop: threading.Event | None = None) -> dict[str, int] | None:
    """Count every record's source, page by page (the one slow path), and set the counters. None (nothing
    written) when `stop` was set before the last page."""
    counts: Counter = Counter()
    with LOCK:
        _pending.pop(str(col.id), None)  # the scan sees those records
        offset = 0
        while True:
            if stop is not None and stop.is_set():
                return None
            page = col.get(include=["metadatas"], limit=PAGE, offset=offset)["metadatas"]
            counts.update(str((m or {}).get("source", UNKNOWN_SOURCE)) for m in page)
            offset += len(page)
            if len(page) < PAGE:
                break
        _write(col, dict(counts))
    return dict(counts)


def wait_for_recounts(timeout: float | None = None) -> None:
    """Wait for the background recounts this process started (a command that ends should let them finish)."""
    for thread in list(_recounting.values()):
        thread.join(timeout)


def _stop_recounts() -> None:
    """At exit, before the interpreter tears down: stop the background recounts and join them (at most one
    page each: ~1 s at 20k records); the next read starts again."""
    _stopping.set()
    wait_for_recounts()


# threading's exit hooks run first (before atexit's, so before chromadb's own, registered after this module).
getattr(threading, "_register_atexit", atexit.register)(_stop_recounts)


def read(client: Any, name: str, background: bool = True) -> tuple[int, dict[str, int], bool]:
    """(total, by source, exact). When the counters lag, a recount starts (in a thread unless
    background is False) and the counters as they stand come back with exact=False."""
    with LOCK:
        col = client.get_collection(name, embedding_function=None)  # fresh metadata: other processes write too
        key = str(col.id)
        counts = _stored(col.metadata)
        if counts is not None:
            for source, n in _pending.get(key, {}).items():
                counts[source] = counts.get(source, 0) + n
        trusted = background and counts is not None and time.monotonic() - _verified.get(key, -VERIFY_S) < VERIFY_S
        total = sum(counts.values()) if trusted and counts is not None else int(col.count())
    if counts is not None and sum(counts.values()) == total:
        if not trusted:
            _verified[key] = time.monotonic()
        return total, counts, True
    _verified.pop(key, None)
    if not background:
        return total, recount(col), True
    with LOCK:
        if key not in _recounting and not _stopping.is_set():

            def run() -> None:
                try:
                    recount(col, _stopping)
                finally:
                    _recounting.pop(key, None)

            # A daemon, so a server's exit never waits for a whole scan; _stop_recounts joins it at exit.
            thread = threading.Thread(target=run, daemon=True, name=f"recount-{name}")
            _recounting[key] = thread
            thread.start()
    return total, counts or {}, False
