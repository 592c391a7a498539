"""Keeping the store whole: one writer per store (a second process refused, in one line), the check and its
repair (a deleted and a truncated index segment, a 0-byte database), and what a stop cut off finished at the
next start (write-backs killed with SIGKILL, the first run's sample load)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.config import Settings
from studio.firstrun import FirstRun
from studio.search import health
from studio.studio import Studio
from studio.upkeep import journal
from studio.upkeep.check import check, our_pngs
from studio.upkeep.repair import repair
from tests.conftest import ROOT, SAMPLE, SAMPLE_IMAGES

EVERY400 = SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"
FIRST99 = SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"
ENV = os.environ | {"PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


def cli(*args: str, home: Path, clip: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "studio", *args, "--home", str(home), "--clip-model", clip]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)


def records(studio: Studio) -> dict[str, set[str]]:
    return {kind: set(col.get(include=[])["ids"]) for kind, col in studio.store.collections.items()}


def all_readable(studio: Studio) -> bool:
    return all(not health.scan(col)[1] for col in studio.store.collections.values())


# -- one writer per store ----------------------------------------------------------------
def test_a_second_process_is_refused_in_one_line_and_nothing_is_lost(settings: Settings, embedder) -> None:
    """Two processes on one embedded store lost thousands of vectors (issue 22): the one holding it keeps it, the
    other says so in one line (rc 2) and touches nothing; once the first lets go, the second's ingest goes in."""
    holder = Studio(settings, embedder=embedder)
    holder.ingest(str(FIRST99))
    before = records(holder)
    out = cli("ingest", str(EVERY400), "--limit", "300", home=settings.home, clip=settings.clip_model)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "nothing was done" in lines[0]
    assert "STUDIO_CHROMA_URL" in lines[0]
    out = cli("search", "a castle", home=settings.home, clip=settings.clip_model)  # reads are refused too: never stale
    assert out.returncode == 2 and "nothing was done" in out.stderr
    assert records(holder) == before

    holder.close()  # the first process lets go: the second may write
    out = cli("ingest", str(EVERY400), "--limit", "300", home=settings.home, clip=settings.clip_model)
    assert out.returncode == 0, out.stderr
    out = cli("check", home=settings.home, clip=settings.clip_model)
    assert out.returncode == 0 and "the store is whole" in out.stdout, out.stdout + out.stderr
    after = records(holder)  # opened afresh: what the other process wrote is here
    assert before["prompts"] < after["prompts"] and all_readable(holder)


def test_the_app_refuses_to_start_on_a_store_another_process_holds(settings: Settings, embedder) -> None:
    holder = Studio(settings, embedder=embedder)
    holder.claim_store()
    env = ENV | {"STUDIO_HOME": str(settings.home), "STUDIO_CLIP_MODEL": settings.clip_model}
    out = subprocess.run([sys.executable, "launch.py", "--port", "0", "--no-sample"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Another studio command is using this store" in out.stderr
    holder.close()


# -- check and repair --------------------------------------------------------------------
BUILD = """
import json, sys
from pathlib import Path
from studio.config import Settings
from studio.studio import Studio
s = Settings(home=Path(sys.argv[1]), clip_model=sys.argv[2], offline=True, device="cpu")
studio = Studio(s)
studio.ingest(sys.argv[3], limit=2500)
studio.ingest(sys.argv[4])
print(json.dumps({k: sorted(c.get(include=[])["ids"]) for k, c in studio.store.collections.items()}))
"""


@pytest.fixture
def built(settings: Settings, embedder) -> tuple[Studio, dict[str, set[str]]]:
    """A store big enough that Chroma writes its index folders (past its sync threshold of 1,000), with images,
    and its record ids. Built in another process, as a user's store is: this one has never mapped its index
    files, which a test then truncates (a process that has them mapped would fault on the missing pages)."""
    import json

    out = subprocess.run([sys.executable, "-c", BUILD, str(settings.home), settings.clip_model, str(EVERY400),
                          str(SAMPLE_IMAGES)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ids = {k: set(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    return Studio(settings, embedder=embedder), ids


def largest_segment(store_dir: Path) -> Path:
    return max(health.index_folders(store_dir), key=lambda d: sum(f.stat().st_size for f in d.iterdir()))


@pytest.mark.parametrize("damage", ["delete segment", "truncate data_level0.bin"])
def test_a_damaged_index_is_found_and_repaired(built: tuple[Studio, dict], damage: str) -> None:
    built, before = built
    segment = largest_segment(built.settings.store_dir)
    if damage == "delete segment":
        shutil.rmtree(segment)
    else:
        data = segment / "data_level0.bin"
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size // 2)

    said = "no readable vector" if damage == "delete segment" else "cut short"
    out = cli("check", home=built.settings.home, clip=built.settings.clip_model)
    assert out.returncode == 1 and said in out.stdout and "--repair" in out.stdout, out.stdout + out.stderr
    report = check(built)
    assert report.of("vectors" if damage == "delete segment" else "index") and not report.ok
    first_run = FirstRun(built, ingest_sample=False).start()  # the launch: never served as healthy
    # A deleted folder leaves records without vectors (said, searches work on the rest); a cut-short one is not
    # opened at all (hnswlib would read past its end and crash the process).
    assert first_run.wait(120).phase == ("ready" if damage == "delete segment" else "failed")
    assert "check --repair" in first_run.status_markdown()

    fixed = repair(built, report)
    assert fixed.ok, fixed.summary()
    assert records(built) == before and all_readable(built)
    text = built.store.get("prompts", limit=1)[0].document
    assert built.search(text, k=1).results[0].prompt == text


def test_a_zero_byte_database_is_refused_then_rebuilt_with_every_record(built: tuple[Studio, dict],
                                                                      gen_studio: Studio) -> None:
    """A 0-byte chroma.sqlite3 was read as a new store (the sample ingested again, History empty): now the launch
    says so and touches nothing, and --repair rebuilds it from the sources it recorded and outputs/."""
    from tests.conftest import SMALL

    built, _ = built
    made = Studio(built.settings, embedder=built.embedder, generator=gen_studio.generator).generate(
        "a windmill at dusk", seed=3, **SMALL)
    assert made.saved[0].stored
    before = records(built)
    built.close()
    db = built.settings.store_dir / "chroma.sqlite3"
    db.write_bytes(b"")

    first_run = FirstRun(Studio(built.settings, embedder=built.embedder)).start()
    assert first_run.wait(60).phase == "failed" and "check --repair" in first_run.status_markdown()
    assert db.stat().st_size == 0  # nothing was ingested over it
    reopened = Studio(built.settings, embedder=built.embedder)
    report = check(reopened)
    assert [f.kind for f in report.findings] == ["files"] and "0 bytes" in report.findings[0].text
    fixed = repair(reopened, report)
    assert fixed.ok, fixed.summary()
    assert records(reopened) == before and all_readable(reopened)
    assert list(built.settings.home.glob("store.damaged-*"))  # the damaged store kept, never deleted
    assert reopened.history().results[0].prompt == "a windmill at dusk"


def test_an_empty_store_beside_your_outputs_offers_to_restore_them(studio: Studio, gen_studio: Studio,
                                                                   tmp_path: Path) -> None:
    from tests.conftest import SMALL

    built = studio

    Studio(built.settings, embedder=built.embedder, generator=gen_studio.generator).generate("a red kite", seed=4,
                                                                                          **SMALL)
    fresh = built.settings.with_(home=tmp_path / "fresh")
    shutil.copytree(built.settings.outputs_dir, fresh.outputs_dir)
    first_run = FirstRun(Studio(fresh, embedder=built.embedder), ingest_sample=False).start()
    assert first_run.wait(60).phase == "ready"
    said = first_run.status_markdown()
    assert "1 of your 1 PNGs" in said and "Library" in said and str(fresh.outputs_dir) in said


# -- finishing what was cut off --------------------------------------------------------------
WRITE_BACKS = """
import sys
from PIL import Image
from studio.config import Settings
from studio.generate.request import GenerationRequest, GenerationResult
from studio.studio import Studio
s = Settings(home=__import__("pathlib").Path(sys.argv[1]), clip_model=sys.argv[2], offline=True, device="cpu")
studio = Studio(s)
studio.store_for(create=True)
print("ready", flush=True)
for i in range(10_000):
    req = GenerationRequest(prompt=f"a lighthouse, study {i % 3}", seed=i, width=64, height=64, steps=2).validated()
    images = [Image.new("RGB", (64, 64), (i * 7 % 255, 40 * j, 90)) for j in range(2)]
    studio._write_back(GenerationResult(req, images, "tiny-sdxl", "cpu"), None, None)
"""


def test_write_backs_killed_at_random_points_are_completed_at_the_next_start(settings: Settings, embedder) -> None:
    """8 SIGKILLs left 9 PNGs out of the store and 2 prompts counting images not stored (issue 22): the next
    start stores every PNG and sets each count from the records."""
    rng = random.Random(22)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITE_BACKS, str(settings.home), settings.clip_model],
                                cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.5, 3.0))  # somewhere inside a write-back: saving, embedding, adding, counting
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    pngs = our_pngs(settings.outputs_dir)
    assert pngs

    studio = Studio(settings, embedder=embedder)
    first_run = FirstRun(studio, ingest_sample=False).start()
    assert first_run.wait(300).phase == "ready", first_run.progress.error
    assert not journal.pending_write_backs(settings.outputs_dir)
    report = check(studio)
    assert report.ok, report.summary()
    images = studio.store.get("images")
    assert len(images) == len(pngs) and {Path(r.metadata["file"]).name for r in images} == {p.name for p in pngs}
    by_prompt: dict[str, int] = {}
    for r in images:
        by_prompt[r.metadata["prompt_id"]] = by_prompt.get(r.metadata["prompt_id"], 0) + 1
    assert {r.id: r.metadata["image_count"] for r in studio.store.get("prompts")} == by_prompt
    assert {ix["kind"]: ix["count"] for ix in studio.stats(wait=True).to_dict()["indexes"]} == {
        "prompts": len(by_prompt), "images": len(pngs)}


FIRST_RUN = """
import sys
from pathlib import Path
from studio.config import Settings
from studio.firstrun import FirstRun
from studio.studio import Studio
s = Settings(home=Path(sys.argv[1]), clip_model=sys.argv[2], offline=True, device="cpu", sample_dir=Path(sys.argv[3]),
             batch_size=16)
run = FirstRun(Studio(s)).start()
while run.progress.done < 400:
    pass
print("loading", run.progress.done, flush=True)
run.wait()
"""


def test_a_first_run_stopped_while_the_sample_loads_resumes_at_the_next_launch(settings: Settings, embedder,
                                                                                sample_studio: Studio) -> None:
    proc = subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(settings.home), settings.clip_model, str(SAMPLE)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().startswith("loading")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert journal.sample_unfinished(settings)

    studio = Studio(settings, embedder=embedder)
    first_run = FirstRun(studio).start()
    assert first_run.wait(300).phase == "ready", first_run.progress.error
    assert not journal.sample_unfinished(settings)
    want = {ix["kind"]: ix["count"] for ix in sample_studio.stats(wait=True).to_dict()["indexes"]}
    assert {ix["kind"]: ix["count"] for ix in studio.stats(wait=True).to_dict()["indexes"]} == want
