"""The jobs each browser started (a generation, a comparison), as the page needs them after a reload: waiting,
progress, or finished and where."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass
class Job:
    """One browser's latest job. `shown`: its end reached the page that started it (nothing to say later).
    "queued": clicked, waiting for its turn at the GPU; a page that goes away takes a waiting job with it (Gradio
    drops the queued events of a closed page), so one still "queued" at a reload never ran."""

    state: str = "running"  # queued | running | done | cancelled | failed
    line: str = "⏳ Starting…"
    ref: str | None = None  # what to reopen once done (a comparison's id)
    stop: Any = None  # its cancel flag: Cancel on the page that comes back after a reload stops it too
    preview: Any = None
    pictures: list[tuple[Any, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    shown: bool = False


class Jobs:
    """Per browser id (remember.visitor_id), the last generation. Written from the worker thread, so a job goes on
    being recorded after its page went away (Gradio stops iterating a closed page's handler)."""

    def __init__(self, keep: int = 1_000) -> None:
        self._jobs: dict[str, Job] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def queue(self, visitor: str | None) -> None:
        """Clicked: the job waits for its turn (run as the click is sent, before the queued handler)."""
        self.start(visitor, "queued")

    @contextmanager
    def running(self, visitor: str | None) -> Iterator[Job | None]:
        """The handler has its turn: the job runs. A failure the page is told of (said_in) needs no word after a
        reload; a page that went away (GeneratorExit, not an Exception) leaves the job for the reload to show."""
        job = self.start(visitor)
        try:
            yield job
        except Exception:
            if job is not None:
                job.shown = True
            raise

    def start(self, visitor: str | None, state: str = "running") -> Job | None:
        if not visitor:
            return None
        job = Job(state)
        with self._lock:
            self._jobs.pop(visitor, None)
            self._jobs[visitor] = job
            while len(self._jobs) > self._keep:
                self._jobs.pop(next(iter(self._jobs)))
        return job

    def get(self, visitor: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(visitor or "")


def after_reload(job: Job | None, what: str = "generation", again: str = "Generate") -> tuple[str | None, bool]:
    """What a tab's status line says about its job found when the page (re)loads, and whether to keep watching."""
    if job is None or job.shown:
        return None, False
    if job.state == "running":
        return f"🔄 The {what} started before the reload is still running: {job.line.lstrip('⏳ ')}", True
    job.shown = True
    if job.state == "queued":
        return (f"⚠️ The {what} you started before the reload was still waiting for its turn (another job had the "
                f"GPU), and a waiting job goes with its page: press **{again}** again (what you typed is still "
                "here)."), False
    if job.state == "done":
        where = "in History" if what == "generation" else "below, and in History"
        return f"✅ The {what} started before the reload finished: {where}.  \n{job.line}", False
    if job.state == "cancelled":
        return f"⏹️ The {what} started before the reload was cancelled: {job.line}", False
    return f"⚠️ The {what} started before the reload failed: {job.line}", False
