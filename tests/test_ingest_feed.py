"""Ingest's image feed: decoding in a bounded thread pool stores exactly what the serial path stores."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from studio.ingest.feed import LOOKAHEAD, pooled, serial
from studio.ingest.pipeline import ingest_rows
from studio.ingest.sources import Row
from studio.search.store import PromptStore, open_client
from studio.studio import Studio
from tests.conftest import SAMPLE_IMAGES
from tests.test_ingest import dump, make_part, make_zip
from tests.toolimages import make_tool_folder


def _part_zip(tmp_path: Path) -> str:
    return str(make_zip(make_part(tmp_path / "part", corrupt=True), tmp_path / "part-000002.zip"))


def _tool_folder(tmp_path: Path) -> str:
    make_tool_folder(tmp_path / "my images")
    return str(tmp_path / "my images")


SOURCES = {"part zip with a corrupt png": _part_zip, "sample images": lambda _: str(SAMPLE_IMAGES),
           "tool folder": _tool_folder}


@pytest.mark.parametrize("make", SOURCES.values(), ids=SOURCES.keys())
def test_the_pool_stores_what_the_serial_path_stores(settings, embedder, tmp_path: Path, make: Any) -> None:
    source = make(tmp_path / "src")
    reports, stores = [], []
    for workers in (0, 3):  # batch 4: images go 2 a batch, so several batches are decoded ahead
        studio = Studio(settings.with_(home=tmp_path / f"w{workers}", batch_size=4, ingest_workers=workers),
                        embedder=embedder)
        seen: list[tuple[str, int, int]] = []
        report = studio.ingest(source, progress=lambda *a: seen.append(a))
        reports.append((dataclasses.replace(report, seconds=0.0), seen))
        stores.append(dump(studio))
        assert report.images_new > 0
        again = studio.ingest(source)  # dedupe: nothing embedded twice
        assert (again.images_new, again.images_unchanged) == (0, report.images_new)
    assert reports[0] == reports[1]  # every count, the failures in order, and every progress call
    a, b = stores
    for kind in ("prompts", "images"):
        assert a[kind]["ids"] == b[kind]["ids"]
        assert a[kind]["documents"] == b[kind]["documents"]
        assert a[kind]["metadatas"] == b[kind]["metadatas"]
        np.testing.assert_array_equal(a[kind]["embeddings"], b[kind]["embeddings"])


def test_unreadable_images_are_reported_by_the_pool(settings, embedder, tmp_path: Path) -> None:
    studio = Studio(settings.with_(batch_size=4, ingest_workers=2), embedder=embedder)
    report = studio.ingest(_part_zip(tmp_path))
    assert [name for name, _ in report.failed] == ["deadbeef-0000-4000-8000-000000000000.png"]
    assert report.images_new == 3 and "unreadable" in report.summary()


def _batches(n: int, size: int, pulled: list[int]) -> Iterator[tuple[list[Row], set[str]]]:
    image = Image.new("RGB", (32, 24), (200, 40, 90))
    for b in range(n):
        pulled.append(b)
        yield [Row(f"{b}-{i}.png", "a red square", "part-000001", pixels=image) for i in range(size)], set()


def test_the_pool_decodes_a_bounded_number_of_batches_ahead_in_worker_threads() -> None:
    pulled: list[int] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def preprocess(images: list[Any]) -> list[str]:  # a recording stand-in for ClipEmbedder.preprocess_images
        with lock:
            threads.add(threading.current_thread().name)
        return [f"pixels of {im.size}" for im in images]

    feed = pooled(_batches(40, 3, pulled), workers=2, preprocess=preprocess)
    for handed, loaded in enumerate(feed, start=1):
        assert len(pulled) <= handed + LOOKAHEAD  # never more than LOOKAHEAD batches beyond the one handed out
        assert loaded.pixels == ["pixels of (32, 24)"] * 3 and len(loaded.todo) == 3
        if handed == 5:
            break
    feed.close()
    assert len(pulled) == 5 + LOOKAHEAD
    assert threads and all(name.startswith("ingest-decode") for name in threads)
    assert [len(b.todo) for b in serial(_batches(4, 3, []))] == [3] * 4


def test_ingest_reads_a_bounded_window_of_a_long_source(tmp_path: Path, embedder) -> None:
    """Through the whole pipeline: the images pass holds a few batches, never the source (DiffusionDB's 2M)."""
    sample = next(p for p in sorted(SAMPLE_IMAGES.iterdir()) if p.suffix == ".png")
    pulled, passes = [0], [0]

    def rows() -> Iterator[Row]:
        passes[0] += 1
        pulled[0] = 0
        for i in range(80):
            pulled[0] += 1
            yield Row(f"img-{i}.png", f"prompt {i % 5}", "part-000001", location=str(sample))

    worst = [0]

    def progress(what: str, done: int, total: int) -> None:
        if what == "images":
            worst[0] = max(worst[0], pulled[0] - done)

    store = PromptStore(open_client(tmp_path / "store"), embedder.name, embedder.dim)
    report = ingest_rows(rows, store, embedder, batch_size=4, progress=progress, bars=False, workers=2)
    assert report.images_new == 80 and passes[0] == 3
    # batch 2: the reader's batch, its queue (2) and blocked put, the pool's window, the batch being encoded
    assert 0 < worst[0] <= 2 * (1 + 2 + 1 + LOOKAHEAD + 1 + 1)


def test_the_worker_count_comes_from_the_environment_or_the_cores() -> None:
    from studio.config import Settings
    from studio.errors import InputError
    from studio.ingest.feed import default_workers

    assert Settings.from_env({"STUDIO_INGEST_WORKERS": "3"}).ingest_workers == 3
    assert Settings.from_env({"STUDIO_INGEST_WORKERS": "0"}).ingest_workers == 0
    assert Settings.from_env({}).ingest_workers is None
    with pytest.raises(InputError, match="STUDIO_INGEST_WORKERS='many'.*number of threads"):
        Settings.from_env({"STUDIO_INGEST_WORKERS": "many"})
    assert 1 <= default_workers("cpu") <= 2 and 1 <= default_workers("cuda") <= 16
