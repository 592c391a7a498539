"""Ingester: any source (DiffusionDB, a prompt table, a `datasets` folder or hf: dataset, a folder of images from
any tool, our outputs/) through the one pipeline into the store."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.config import Settings
from studio.errors import DiskFullError, StudioError, disk_full, disk_full_message, free_bytes
from studio.ingest.hfdatasets import is_dataset_folder
from studio.ingest.pipeline import IngestReport, ingest_rows
from studio.ingest.retry import RetryingStore
from studio.ingest.readers import choose_reader
from studio.ingest.sources import source_name, table_source
from studio.search.store import PromptStore
from studio.upkeep import journal

# The shipped sample, as ingested on first launch (the part-style JSON repeats the 99-row CSV).
SAMPLE_SOURCES = ("metadata-2m-every400th-image_name-prompt.csv", "metadata-fullparams-promptsdvis-first99.csv", "images")
Progress = Callable[[str, int, int], None]


class Ingester:
    """Reads a source and writes it with the CLIP from `embedder()` into `store(create=True)`."""

    def __init__(self, settings: Settings, store: Callable[[bool], PromptStore], embedder: Callable[[], Any]) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder

    def ingest(self, source: str, limit: int | None = None, source_tag: str | None = None,
               progress: Progress | None = None) -> IngestReport:
        """source_tag: the `source` stored on each record; by default diffusiondb, for a prompt library (a table
        or `datasets` folder without DiffusionDB's columns) its file's or folder's name, for hf:ORG/NAME its NAME;
        images in a folder are the user's (ours stay generated)."""
        report = self._ingest(source, limit, source_tag, progress)
        journal.ingested(self.settings, source, source_tag, limit)  # what a repair reads again if the db is lost
        return report

    def _ingest(self, source: str, limit: int | None, source_tag: str | None, progress: Progress | None) -> IngestReport:
        path = Path(source).expanduser()
        if source.startswith("hf:") or is_dataset_folder(path):
            return self._ingest_dataset(source, limit, source_tag, progress)
        explicit = source_tag is not None
        if source_tag is None:
            source_tag = table_source(path) or "diffusiondb"
        else:
            source_tag = source_name(source_tag)
        reader = choose_reader(source, self.settings.home / "cache" / "diffusiondb", self.settings.offline)
        if reader.images:
            # Our own PNGs (STUDIO_HOME/outputs), the user's from any tool: source generated / user, lineage kept.
            rows, keys, batch = (lambda: reader.read(False)), None, max(1, self.settings.batch_size // 4)
        else:
            rows, batch = (lambda: _tagged(reader.read(False), explicit)), self.settings.batch_size
            keys = lambda: _tagged(reader.read(True), explicit)  # noqa: E731 - count pass
        with self._disk_full_said(source):
            return ingest_rows(rows, self._store(), self.embedder(), source=source_tag, label=source,
                               batch_size=batch, limit=limit, progress=progress, keys=keys,
                               workers=self.settings.ingest_workers)

    def _ingest_dataset(self, source: str, limit: int | None, source_tag: str | None,
                        progress: Progress | None) -> IngestReport:
        """A `datasets` folder or hf:ORG/NAME: read once into a spool (images saved under STUDIO_HOME/datasets/
        NAME/ so the gallery can show them), then through the pipeline like any source."""
        from studio.ingest.hfdatasets import open_dataset, spooled

        opened = open_dataset(source, self.settings.offline)
        tag = source_name(source_tag) if source_tag else opened.source
        images = self.settings.home / "datasets" / tag
        with self._disk_full_said(source), \
                spooled(opened, tag, images, self.settings.home / "cache" / "spool", limit, progress) as rows:
            return ingest_rows(rows, self._store(), self.embedder(), source=tag, label=source,
                               batch_size=self.settings.batch_size, progress=progress,
                               workers=self.settings.ingest_workers)

    def free_bytes(self) -> int | None:
        """Space left where the ingest writes (the store's disk); a seam tests can replace."""
        return free_bytes(self.settings.store_dir if not self.settings.chroma_url else self.settings.home)

    @contextmanager
    def _disk_full_said(self, source: str) -> Iterator[None]:
        """A full disk, however the store words it (Chroma's "Error in compaction: Failed to apply logs"),
        said as one: DiskFullError, with what to do."""
        try:
            yield
        except StudioError:
            raise
        except Exception as exc:
            if not disk_full(exc, self.free_bytes()):
                raise
            where = self.settings.store_dir if not self.settings.chroma_url else self.settings.chroma_url
            raise DiskFullError(disk_full_message(where, f"ingesting {source} ({type(exc).__name__}: {exc})",
                                                  "run the same ingest again: it resumes where it stopped")) from exc

    def _store(self) -> Any:
        store: Any = self.store(True)
        if self.settings.chroma_url:  # a server that drops for a moment is waited for, about a minute
            store = RetryingStore(store, self.settings.chroma_url)
        return store

    def ingest_sample(self, progress: Progress | None = None) -> list[IngestReport]:
        sample = Path(self.settings.sample_dir)
        return [self.ingest(str(sample / name), progress=progress) for name in SAMPLE_SOURCES
                if (sample / name).exists()]


def _tagged(rows: Iterator[Any], explicit: bool) -> Iterator[Any]:
    """The rows as read; with a source tag the user gave, without their own (a table's in a folder): theirs wins."""
    for row in rows:
        if explicit:
            row.source = None
        yield row
