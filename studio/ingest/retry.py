"""RetryingStore: an ingest through a Chroma server (STUDIO_CHROMA_URL) survives the server dropping for a
while: each store call is retried with a doubling wait for about a minute, then the ingest stops with
one line that says a rerun resumes (what was written is kept: ingest is idempotent)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from studio.errors import StoreUnavailableError

CALLS = frozenset({"get", "existing_ids", "add", "upsert", "update_metadata", "count", "query", "flush_counts"})
BUDGET_S = float(os.environ.get("STUDIO_CHROMA_RETRY_S", "60"))  # how long a dropped server is waited for
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 10.0


def transient(exc: BaseException) -> bool:
    """A dropped or refused connection (httpx's transport errors), not a bad request."""
    import httpx

    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return True
    text = str(exc).lower()
    return "could not connect" in text or "connection refused" in text or "server disconnected" in text


class RetryingStore:
    def __init__(self, store: Any, url: str, budget_s: float = BUDGET_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._url = url
        self._budget = budget_s
        self._sleep = sleep
        self.retries = 0  # calls that failed and were tried again (the ingest report can say so)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            started, wait = time.monotonic(), FIRST_WAIT_S
            while True:
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if not transient(exc):
                        raise
                    if time.monotonic() - started + wait > self._budget:
                        raise StoreUnavailableError(
                            f"The Chroma server at {self._url} stopped answering for about "
                            f"{time.monotonic() - started:.0f} s ({type(exc).__name__}). What was written is kept: "
                            "start the server again and run the same command to resume.") from exc
                    self.retries += 1
                    self._sleep(wait)
                    wait = min(wait * 2, MAX_WAIT_S)
        return call
