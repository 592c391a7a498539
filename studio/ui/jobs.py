"""The generations each browser started, as the page needs them after a reload: progress, or finished and where."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """One browser's latest generation. `shown`: its end reached the page that started it (nothing to say later)."""

    state: str = "running"  # running | done | cancelled | failed
    line: str = "⏳ Starting…"
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

    def start(self, visitor: str | None) -> Job | None:
        if not visitor:
            return None
        job = Job()
        with self._lock:
            self._jobs.pop(visitor, None)
            self._jobs[visitor] = job
            while len(self._jobs) > self._keep:
                self._jobs.pop(next(iter(self._jobs)))
        return job

    def get(self, visitor: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(visitor or "")


def after_reload(job: Job | None) -> tuple[str | None, bool]:
    """What Create's status line says about a job found when the page (re)loads, and whether to keep watching."""
    if job is None or job.shown:
        return None, False
    if job.state == "running":
        return f"🔄 A generation started before the reload is still running: {job.line.lstrip('⏳ ')}", True
    job.shown = True
    if job.state == "done":
        return f"✅ The generation started before the reload finished: in History (and below).  \n{job.line}", False
    if job.state == "cancelled":
        return f"⏹️ The generation started before the reload was cancelled: {job.line}", False
    return f"⚠️ The generation started before the reload failed: {job.line}", False
