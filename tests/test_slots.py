"""One owner of the GPU: a slow model load holds only its own slot, so searches never wait for it."""

from __future__ import annotations

import statistics
import threading
import time

from studio.gpu import Slot
from studio.rewrite.rewriter import Rewriter
from studio.studio import Studio
from tests.fakes import RecordingBackend

IDEA = "a lighthouse in a storm"


def _median_search_s(studio: Studio, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        studio.search(IDEA, k=5)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_a_slow_llm_load_does_not_block_searches(sample_studio: Studio):
    release = threading.Event()
    loading = threading.Event()

    def slow_llm(plan: object) -> Rewriter:
        loading.set()
        release.wait(10)  # a 7B GGUF from a slow disk
        return Rewriter(RecordingBackend(["a lighthouse in a storm, oil painting, dramatic sky"]), "slow.gguf")

    studio = Studio(sample_studio.settings, embedder=sample_studio.embedder, client=sample_studio.client,
                    loaders={"llm": slow_llm})
    studio.search(IDEA, k=5)  # warm: the store is open, the index loaded
    baseline = _median_search_s(studio, 15)
    rewrite = threading.Thread(target=lambda: studio.rewrite(IDEA, k=2, seed=1))
    rewrite.start()
    assert loading.wait(5)
    try:
        during = _median_search_s(studio, 15)
        assert not studio.llm_loaded  # still loading all along
    finally:
        release.set()
        rewrite.join(10)
    assert studio.llm_loaded
    assert during <= 2 * baseline + 0.02, (during, baseline)


def test_a_slot_loads_once_for_many_threads_and_unload_never_waits_for_a_load():
    calls = []
    gate = threading.Event()

    def load() -> object:
        calls.append(1)
        gate.wait(5)
        return object()

    slot: Slot[object] = Slot("x", load)
    threads = [threading.Thread(target=slot.get) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    assert slot.unload() is None  # nothing loaded yet, and it does not wait for the load in progress
    assert time.perf_counter() - t0 < 0.5
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and slot.loaded
