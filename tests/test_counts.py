"""Counts by source are kept by the writers (no scan in stats): exact through ingest, re-ingest, a killed
ingest (recounted once) and the rerun that completes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from studio.search import counts
from studio.studio import Studio
from tests.conftest import ROOT, SAMPLE, SAMPLE_IMAGES


def scanned(studio: Studio) -> dict[str, dict[str, int]]:
    """The ground truth: every record's source, read back."""
    out = {}
    for col in studio.client.list_collections():
        out[col.name] = dict(Counter(m.get("source", "?") for m in col.get(include=["metadatas"])["metadatas"]))
    return out


def from_stats(studio: Studio) -> dict[str, dict[str, int]]:
    return {ix["collection"]: ix["by_source"] for ix in studio.stats().to_dict()["indexes"] if ix["exact"]}


def test_counters_follow_ingest_and_reingest(studio: Studio):
    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    studio.ingest(str(SAMPLE_IMAGES), source_tag="user")
    assert from_stats(studio) == scanned(studio)
    col = studio.store.collections["prompts"]
    assert json.loads(studio.client.get_collection(col.name).metadata[counts.KEY]) == scanned(studio)[col.name]
    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))  # nothing new: nothing added
    studio.ingest(str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"), limit=300)
    assert from_stats(studio) == scanned(studio)
    assert sum(from_stats(studio)[col.name].values()) == studio.store.count("prompts")


def test_a_store_without_counters_is_recounted_once(studio: Studio):
    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    col = studio.client.get_collection(studio.store.names["prompts"])
    meta = dict(col.metadata)
    meta.pop(counts.KEY)
    col.modify(metadata=meta)  # as a store from before counters
    index = next(ix for ix in studio.stats(wait=True).to_dict()["indexes"] if ix["collection"] == col.name)
    assert index["exact"] and index["by_source"] == scanned(studio)[col.name]
    assert counts.KEY in studio.client.get_collection(col.name).metadata


def test_a_killed_ingest_is_recounted_and_its_rerun_is_exact(tmp_path: Path, tiny_clip_dir: Path, embedder):
    home = tmp_path / "home"
    env = os.environ | {"STUDIO_HOME": str(home), "STUDIO_CLIP_MODEL": str(tiny_clip_dir)}
    cmd = [sys.executable, "-m", "studio", "ingest", str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if "prompts:" in (proc.stderr.readline() or ""):  # tqdm's bar: writing has begun
            time.sleep(1.0)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    from studio.config import Settings

    studio = Studio(Settings(home=home, clip_model=str(tiny_clip_dir), offline=True, device="cpu"), embedder=embedder)
    truth = scanned(studio)
    assert 0 < sum(truth[studio.store.names["prompts"]].values()) < 4900  # killed part-way
    assert {ix["collection"]: ix["by_source"] for ix in studio.stats(wait=True).to_dict()["indexes"]} == truth
    studio.close()  # one process at a time on an embedded store: the rerun is refused while this one holds it
    assert subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300).returncode == 0
    assert from_stats(studio) == scanned(studio)


def test_stats_does_not_ask_chroma_to_count_on_every_visit(studio: Studio, monkeypatch):
    """count() counts rows (173 ms a stats() call at 1.5M prompts, bench/scale.py): counters that matched it
    are trusted for counts.VERIFY_S; a wait=True read and a stale check still ask."""
    from chromadb.api.models.Collection import Collection

    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    asked: list[str] = []
    real = Collection.count
    monkeypatch.setattr(Collection, "count", lambda self: asked.append(self.name) or real(self))
    first = from_stats(studio)
    n = len(asked)
    assert n >= 1 and first == scanned(studio)
    for _ in range(5):
        assert from_stats(studio) == first
    assert len(asked) == n  # the Library's visits: no count()
    studio.ingest(str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"), limit=50)  # the writers count
    assert from_stats(studio) == scanned(studio) and len(asked) == n
    studio.stats(wait=True)
    assert len(asked) > n  # asked to be sure: counted
    monkeypatch.setattr(counts, "VERIFY_S", 0.0)  # stale: asked again
    m = len(asked)
    from_stats(studio)
    assert len(asked) > m


def lagging_store(home: Path, tiny_clip_dir: Path, embedder, n: int = 8000) -> dict[str, int]:
    """A store of n prompts whose counters lag by 1,024 (a process killed between an upsert and its counts,
    as the report's 7,002 against 8,026); returns the true counts by source."""
    import numpy as np

    from studio.config import Settings

    studio = Studio(Settings(home=home, clip_model=str(tiny_clip_dir), offline=True, device="cpu"), embedder=embedder)
    sources = ["user" if i % 4 == 0 else "diffusiondb" for i in range(n)]
    vectors = np.random.default_rng(0).normal(size=(n, embedder.dim)).astype(np.float32)
    studio.store.add("prompts", [f"p{i}" for i in range(n)], vectors, [{"source": s} for s in sources],
                     [f"prompt number {i}" for i in range(n)])
    studio.store.flush_counts()
    truth = dict(Counter(sources))
    col = studio.client.get_collection(studio.store.names["prompts"])
    meta = dict(col.metadata)
    meta[counts.KEY] = json.dumps({"diffusiondb": truth["diffusiondb"] - 1024, "user": truth["user"]})
    col.modify(metadata=meta)
    studio.close()  # one process at a time on an embedded store: the CLI run next must be able to open it
    return truth


def test_stats_on_counters_that_lag_exits_cleanly_exact_and_says_so(tmp_path: Path, tiny_clip_dir: Path, embedder,
                                                                     capsys):
    """`stats` segfaulted (rc 139, 3 of 3) when counters lagged: its background recount was inside Chroma when
    the interpreter tore down, so the counters were never set. The CLI recounts before it answers; any process
    that exits with a recount running stops it cleanly; counts not verified say so."""
    home = tmp_path / "home"
    truth = lagging_store(home, tiny_clip_dir, embedder)
    env = os.environ | {"STUDIO_HOME": str(home), "STUDIO_CLIP_MODEL": str(tiny_clip_dir)}
    for _ in range(3):
        out = subprocess.run([sys.executable, "-m", "studio", "stats", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (out.returncode, out.stderr[-800:])
        prompts = next(ix for ix in json.loads(out.stdout)["indexes"] if ix["kind"] == "prompts")
        assert prompts["exact"] and prompts["by_source"] == truth and prompts["count"] == 8000
    lagging_store(tmp_path / "home2", tiny_clip_dir, embedder)  # the background recount, read and left at once
    code = ("import json; from pathlib import Path; from studio.config import Settings; from studio.studio import "
            f"Studio; s = Studio(Settings(home=Path({str(tmp_path / 'home2')!r}), clip_model={str(tiny_clip_dir)!r}, "
            "offline=True, device='cpu')); print(json.dumps(s.stats().to_dict()['indexes']))")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, (out.returncode, out.stderr[-800:])
        prompts = next(ix for ix in json.loads(out.stdout) if ix["kind"] == "prompts")
        assert prompts["exact"] is False or prompts["by_source"] == truth  # never wrong and called exact
    from studio.cli_show import show as _show
    from studio.search.stats import IndexStats, StoreStats

    _show("stats", StoreStats("s", (IndexStats("prompts__x", "prompts", None, None, 8026, {"diffusiondb": 7002},
                                               False),)), False)
    assert "not exact" in capsys.readouterr().out


def test_store_stats_name_their_sources_without_the_unknown_marker():
    from studio.search.counts import UNKNOWN_SOURCE
    from studio.search.stats import IndexStats, StoreStats

    stats = StoreStats("s", (IndexStats("prompts__a", "prompts", "a", 512, 5, {"diffusiondb": 3, UNKNOWN_SOURCE: 2}),
                             IndexStats("prompts__b", "prompts", "b", 768, 1, {"user": 1}),
                             IndexStats("images__a", "images", "a", 512, 4, {"generated": 4})))
    assert stats.sources() == {"diffusiondb", "user", "generated"} and stats.sources("images") == {"generated"}
    assert stats.by_source("prompts") == {"diffusiondb": 3, "user": 1}
    assert StoreStats.from_dict(stats.to_dict()) == stats and stats.to_dict()["indexes"][0]["by_source"][UNKNOWN_SOURCE] == 2
