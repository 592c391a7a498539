"""First launch: load CLIP and, into an empty store, ingest the shipped sample (or copy a prebuilt
index of it, as a Hugging Face Space ships), in the background."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import ModelMissingError, StudioError
from studio.config import PROJECT_ROOT, Settings
from studio.studio import Studio
from studio.upkeep import journal
from studio.upkeep.check import check
from studio.upkeep.resume import finish_write_backs

# Where scripts/build_space_index.py writes a store of the shipped sample embedded with the real CLIP.
PREBUILT_STORE = PROJECT_ROOT / "data" / "space-index" / "store"
SAID_FOR_S = 120.0  # how long the page says that the sample went in


def use_prebuilt_store(settings: Settings, prebuilt: Path = PREBUILT_STORE) -> bool:
    """Copy a prebuilt store into an empty STUDIO_HOME (before the Studio opens it), so a Space starts
    searchable without embedding the sample first. False: none shipped, a store exists, or a server is used."""
    if settings.chroma_url or settings.store_dir.exists() or not (prebuilt / "chroma.sqlite3").is_file():
        return False
    shutil.copytree(prebuilt, settings.store_dir)
    return True


@dataclass
class Progress:
    """What the background job is doing, for the page's status line."""

    phase: str = "starting"  # starting | loading | ingesting | ready | failed
    detail: str = ""
    done: int = 0
    total: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    added: tuple[int, int] | None = None  # (prompts, images) the sample added, when this launch added it
    finished: float | None = None
    damage: list[str] = field(default_factory=list)  # what the launch check found wrong with the store
    offer: str | None = None  # your PNGs in outputs/ that the store lacks
    finished_write_backs: str | None = None  # what finishing interrupted write-backs stored
    pictures: bool = False  # the library has no more DiffusionDB images than the sample's few: offer real ones

    @property
    def busy(self) -> bool:
        return self.phase in ("starting", "loading", "ingesting")


class FirstRun:
    """Runs once per launch: warms CLIP, opens the store, fills an empty one with the sample."""

    def __init__(self, studio: Studio, ingest_sample: bool = True) -> None:
        self.studio = studio
        self.ingest_sample = ingest_sample
        self.progress = Progress()
        self.thread = threading.Thread(target=self._run, daemon=True, name="first-run")

    def start(self) -> "FirstRun":
        self.thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Progress:
        self.thread.join(timeout)
        return self.progress

    def _tick(self, what: str, done: int, total: int) -> None:
        self.progress.detail, self.progress.done, self.progress.total = what, done, total

    def _run(self) -> None:
        p = self.progress
        try:
            p.phase = "loading"
            p.detail = "CLIP model"
            self.studio.embedder  # noqa: B018 - loads the model now, not on the first search
            settings = self.studio.settings
            # A sample load stopped part-way (the studio closed while it loaded) resumes: ingest converges.
            if self.ingest_sample and (self.studio.is_empty() or journal.sample_unfinished(settings)):
                p.phase = "ingesting"
                journal.sample_started(settings)
                reports = self.studio.ingest_sample(progress=self._tick)
                journal.sample_done(settings)
                p.detail = " ".join(r.summary() for r in reports)
                p.added = (sum(r.prompts_new for r in reports), sum(r.images_new for r in reports))
            mismatch = self.studio.check_store()
            if mismatch:
                raise StudioError(mismatch)
            if journal.pending_write_backs(settings.outputs_dir):  # a crash cut a write-back off: finish it
                p.phase, p.detail = "loading", "your generations (finishing what a stop cut off)"
                p.finished_write_backs = finish_write_backs(self.studio)
            p.phase, p.detail = "loading", "search index"
            report = check(self.studio, full=False)  # cheap: probes and counters, no page of the whole store
            p.damage = [f.text for f in report.of("vectors")]
            p.offer = next((f.text for f in report.of("outputs")), None)
            if not p.damage:
                self.studio.warm()  # Chroma loads an HNSW index on its first query: seconds at a million records
            try:  # Explore's "Images of this style" shows the sample's 3 for every idea: the page offers more
                p.pictures = self.ingest_sample and self.studio.wants_pictures()
            except StudioError:
                p.pictures = False
            p.phase, p.finished = "ready", time.monotonic()
        except ModelMissingError as exc:  # the page's banner says which model and how to get it: not said twice
            p.phase, p.error = "failed", self._clip_error(exc)
        except StudioError as exc:
            p.phase, p.error = "failed", str(exc)
        except Exception as exc:  # shown on the page instead of dying silently in a thread
            p.phase, p.error = "failed", f"{type(exc).__name__}: {exc}"

    def _clip_error(self, exc: ModelMissingError) -> str:
        """In the banner's words (studio.ui.text.missing_banner): "missing" when there is no CLIP, "unreadable"
        when one is there and cannot be loaded; the reason said here when the banner cannot know it (every file
        there, its weights broken)."""
        from studio.weights import locate

        loc = locate("clip", self.studio.settings)
        if not loc.found:
            return "the CLIP model is missing; the note below says how to get it."
        if loc.problem:
            return "the CLIP model is unreadable; the note below says what it lacks and how to get it."
        return f"the CLIP model is unreadable: {exc}"

    def loading(self) -> str | None:
        """What a search should say while the sample is still going in ("the sample is still loading
        (1,216/4,935)"); None once it is in (or when nothing is being added)."""
        p = self.progress
        if p.phase == "ingesting":
            return "the sample is still loading" + (f" ({p.done:,}/{p.total:,} {p.detail})" if p.total else "")
        if p.phase in ("starting", "loading") and self.ingest_sample:
            return "the studio is still starting (loading CLIP)"
        return None

    def status_markdown(self, now: float | None = None) -> str:
        p = self.progress
        if p.phase == "failed":
            return f"⚠️ **Not ready:** {p.error}"
        if p.phase == "ingesting":
            pct = f" {p.done:,}/{p.total:,}" if p.total else ""
            return f"⏳ First launch: adding the DiffusionDB sample to your library ({p.detail}{pct})…"
        if p.busy:
            return f"⏳ Loading the {p.detail or 'models'}…"
        if p.damage:  # never served as healthy: said for as long as the studio runs
            return ("⚠️ **This store is damaged**: " + "; ".join(p.damage) + ". Searches miss what cannot be read. "
                    "Stop the studio and run `python -m studio check --repair`, then start it again.")
        if p.offer:
            folder = self.studio.settings.outputs_dir
            return (f"ℹ️ {p.offer}. To restore them, ingest `{folder}` in the **Library** tab (your generations keep "
                    "their settings and lineage).")
        recent = p.finished is not None and (now or time.monotonic()) - p.finished < SAID_FOR_S
        if p.added and recent:
            return (f"✅ The DiffusionDB sample is in your library: {p.added[0]:,} prompts and {p.added[1]:,} images "
                    "added. Try a search in **Explore**.")
        return ""
