"""Ingest: every DiffusionDB source kind, dedupe and counts, bad input, and resumability."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.errors import InputError
from studio.search.store import normalise, prompt_id
from studio.studio import Studio
from studio.ingest.readers import read_source
from studio.ingest.sources import parse_hub
from tests.conftest import ROOT, SAMPLE, SAMPLE_IMAGES

EVERY400 = SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"
FULLPARAMS = SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"
PART_JSON = json.loads((SAMPLE_IMAGES / "images.json").read_text())
UUIDS = ["f3501e05-aef7-4225-a9e9-f516527408ac", "0a0e2a43-1c6c-4b52-9d7e-0c4b1f9c2d11",
         "7b1d3f6e-5a2c-4e8d-b1f0-3c9a7e2d4b55"]


def make_part(folder: Path, corrupt: bool = False) -> Path:
    """A DiffusionDB-style part folder: the three real sample images under UUID names plus part-000001.json."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for uuid, (name, entry) in zip(UUIDS, PART_JSON.items()):
        shutil.copy(SAMPLE_IMAGES / name, folder / f"{uuid}.png")
        mapping[f"{uuid}.png"] = {"p": entry["p"], "se": entry.get("se", 1), "c": entry.get("c", 7.0),
                                  "st": entry.get("st", 50), "sa": entry.get("sa", "k_lms")}
    if corrupt:
        (folder / "deadbeef-0000-4000-8000-000000000000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 50)
        mapping["deadbeef-0000-4000-8000-000000000000.png"] = {"p": "a broken file", "se": 5, "c": 7.0, "st": 50,
                                                                "sa": "k_lms"}
    (folder / "part-000001.json").write_text(json.dumps(mapping))
    return folder


def make_zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return target


def dump(studio: Studio) -> dict:
    """The whole store (both collections), for comparing two runs."""
    out = {}
    for kind, col in studio.store.collections.items():
        got = col.get(include=["documents", "metadatas", "embeddings"])
        order = np.argsort(got["ids"])
        out[kind] = {
            "ids": [got["ids"][i] for i in order],
            "documents": [got["documents"][i] for i in order],
            "metadatas": [got["metadatas"][i] for i in order],
            "embeddings": np.asarray(got["embeddings"])[order] if len(order) else np.zeros((0,)),
        }
    return out


def test_csv_dedupes_prompts_and_counts_images(studio: Studio) -> None:
    report = studio.ingest(str(EVERY400))
    prompts = pd.read_csv(EVERY400)["prompt"].tolist()
    kept = [p for p in prompts if isinstance(p, str) and p.strip()]
    unique = {normalise(p) for p in kept}
    assert report.rows == 5000
    assert report.skipped_rows == 5000 - len(kept)
    assert report.prompts_new == len(unique) == studio.store.count("prompts")
    counts = [r.metadata["image_count"] for r in studio.store.get("prompts")]
    assert sum(counts) == len(kept)  # every non-empty row counted once, on its prompt
    assert studio.store.count("images") == 0  # a metadata table has no pixels


def test_hf_loader_export_keeps_every_setting(studio: Studio) -> None:
    studio.ingest(str(FULLPARAMS))
    row = pd.read_csv(FULLPARAMS).iloc[1]
    rec = studio.store.get("prompts", [prompt_id(row["prompt"])])[0]
    m = rec.metadata
    assert (m["seed"], m["steps"], m["cfg"], m["sampler"]) == (row["seed"], row["step"], row["cfg"], row["sampler"])
    assert (m["width"], m["height"]) == (row["width"], row["height"])
    assert m["prompt_nsfw"] == pytest.approx(row["prompt_nsfw"])
    assert m["image_id"] == row["image_filename"] and m["source"] == "diffusiondb"
    # "island town ..." appears twice in the file: one record, two images.
    assert m["image_count"] == int((pd.read_csv(FULLPARAMS)["prompt"] == row["prompt"]).sum()) == 2


def test_parquet_with_sampler_codes(studio: Studio, tmp_path: Path) -> None:
    frame = pd.read_csv(FULLPARAMS).rename(columns={"image_filename": "image_name"})
    codes = {"k_lms": 8, "k_euler_ancestral": 4}
    frame["sampler"] = frame["sampler"].map(codes).astype("uint8")
    frame["part_id"] = np.uint16(7)
    frame.to_parquet(tmp_path / "metadata.parquet")
    report = studio.ingest(str(tmp_path / "metadata.parquet"))
    assert report.rows == 99 and report.prompts_new == frame["prompt"].map(normalise).nunique()
    samplers = {r.metadata["sampler"] for r in studio.store.get("prompts")}
    assert samplers == {"k_lms", "k_euler_ancestral"}
    counts = json.loads(studio.store.get("prompts", [prompt_id(frame["prompt"][0])])[0].metadata["counts"])
    assert list(counts) == ["part-000007"]


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_part_folder_and_zip_embed_images(studio: Studio, tmp_path: Path, as_zip: bool) -> None:
    part = make_part(tmp_path / "part-000001")
    source = make_zip(part, tmp_path / "part-000001.zip") if as_zip else part
    report = studio.ingest(str(source))
    assert (report.images_new, report.prompts_new, report.failed) == (3, 3, [])
    images = {r.id: r for r in studio.store.get("images")}
    assert set(images) == {f"{u}.png" for u in UUIDS}
    first = images[f"{UUIDS[0]}.png"].metadata
    assert (first["seed"], first["cfg"], first["steps"], first["sampler"]) == (75054762, 14.0, 50, "k_lms")
    assert first["part"] == "part-000001" and first["prompt_id"] == prompt_id(images[f"{UUIDS[0]}.png"].document)
    assert ("::" in first["file"]) == as_zip


def test_corrupt_png_inside_a_part_is_skipped_and_reported(studio: Studio, tmp_path: Path) -> None:
    part = make_part(tmp_path / "part", corrupt=True)
    report = studio.ingest(str(make_zip(part, tmp_path / "part-000002.zip")))
    assert report.images_new == 3
    assert [name for name, _ in report.failed] == ["deadbeef-0000-4000-8000-000000000000.png"]
    assert "unreadable" in report.summary()
    assert report.prompts_new == 4  # the prompt of the broken image is still worth keeping


def test_bad_sources_say_what_to_do(studio: Studio, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        studio.ingest(str(tmp_path / "nope.parquet"))
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(InputError, match="not a readable zip"):
        studio.ingest(str(tmp_path / "bad.zip"))
    pd.DataFrame({"image_name": ["a.png"], "notes": ["x"]}).to_csv(tmp_path / "noprompt.csv", index=False)
    with pytest.raises(InputError, match="no prompt column.*image_name, notes"):
        studio.ingest(str(tmp_path / "noprompt.csv"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="part folder"):
        studio.ingest(str(tmp_path / "notes.txt"))


def test_limit_gives_a_quick_taste(studio: Studio) -> None:
    report = studio.ingest(str(EVERY400), limit=50)
    assert report.rows == 50 and studio.store.count("prompts") <= 50


def test_hub_specs() -> None:
    spec = parse_hub("hub:2m:1-3,7")
    assert spec.parts == (1, 2, 3, 7) and spec.zip_path(7) == "images/part-000007.zip"
    large = parse_hub("hub:large:10001")
    assert large.zip_path(10001) == "diffusiondb-large-part-2/part-010001.zip"
    assert large.metadata_path == "metadata-large.parquet"
    for bad in ("hub:2m:0", "hub:2m:2001", "hub:3m:1", "hub:2m:"):
        with pytest.raises(InputError, match="hub:2m:1-5|parts 1 to"):
            parse_hub(bad)
    with pytest.raises(InputError, match="OFFLINE"):
        list(read_source("hub:2m:1", Path("/nonexistent"), offline=True))
    assert parse_hub("hub:2m:metadata").parts == () and parse_hub("hub:large:metadata").subset == "large"


def test_hub_metadata_ingests_the_whole_table_without_images(studio: Studio, tmp_path: Path, monkeypatch) -> None:
    """hub:2m:metadata fetches metadata.parquet alone (huggingface_hub's download stands in for the hub)."""
    import huggingface_hub

    frame = pd.read_csv(FULLPARAMS).rename(columns={"image_filename": "image_name", "steps": "step"})
    frame["part_id"] = np.uint16(3)
    frame.to_parquet(tmp_path / "metadata.parquet")
    asked: list[tuple[str, str]] = []

    def download(repo: str, filename: str, **kwargs: object) -> str:
        asked.append((repo, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    studio = Studio(studio.settings.with_(offline=False), embedder=studio.embedder)
    report = studio.ingest("hub:2m:metadata")
    assert {a for a in asked} == {("poloclub/diffusiondb", "metadata.parquet")}
    assert report.rows == 99 and report.images_new == 0 and report.prompts_new == frame["prompt"].map(normalise).nunique()
    meta = studio.store.get("prompts", [prompt_id(frame["prompt"][0])])[0].metadata
    assert json.loads(meta["counts"]) == {"part-000003": 1} and meta["steps"] == int(frame["step"][0])


def test_same_part_from_two_sources_is_not_counted_twice(studio: Studio, tmp_path: Path) -> None:
    """Counts are kept per part and merged by setting, so re-reading a part never adds to them."""
    part = make_part(tmp_path / "part-000001")
    studio.ingest(str(part))
    studio.ingest(str(make_zip(part, tmp_path / "part-000001.zip")))
    counts = [r.metadata["image_count"] for r in studio.store.get("prompts")]
    assert counts == [1, 1, 1]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("phase", ["prompts", "images"])
def test_interrupted_ingest_resumes_to_the_same_store(settings, embedder, tmp_path: Path, phase: str) -> None:
    # One source with both prompts (99 + 3) and images: the sample's 99-row table and a part folder.
    part = make_part(tmp_path / "src" / "part-000001", corrupt=True)
    shutil.copy(FULLPARAMS, part / "metadata.csv")
    clean = Studio(settings.with_(home=tmp_path / "clean", batch_size=4), embedder=embedder)
    clean_report = clean.ingest(str(part))

    resumed = Studio(settings.with_(home=tmp_path / "resumed", batch_size=4), embedder=embedder)

    def stop(what: str, done: int, total: int) -> None:
        if what == phase and done >= (24 if phase == "prompts" else 2):
            raise Interrupt

    with pytest.raises(Interrupt):
        resumed.ingest(str(part), progress=stop)
    partial = resumed.store.count("prompts") + resumed.store.count("images")
    report = resumed.ingest(str(part))
    assert 0 < partial < clean.store.count("prompts") + clean.store.count("images")
    # What was stored before the interruption was not embedded again.
    assert report.prompts_new + report.images_new < clean_report.prompts_new + clean_report.images_new
    assert report.prompts_unchanged + report.prompts_updated > 0
    a, b = dump(clean), dump(resumed)
    for kind in ("prompts", "images"):
        assert a[kind]["ids"] == b[kind]["ids"]
        assert a[kind]["documents"] == b[kind]["documents"]
        assert a[kind]["metadatas"] == b[kind]["metadatas"]
        np.testing.assert_allclose(a[kind]["embeddings"], b[kind]["embeddings"], atol=1e-5)
    # And a third run changes nothing at all.
    again = resumed.ingest(str(part))
    assert (again.prompts_new, again.prompts_updated, again.images_new) == (0, 0, 0)


def test_progress_counts_even_with_bars_disabled(settings, tmp_path: Path) -> None:
    """The UI's progress comes from the callback, not from tqdm, which TQDM_DISABLE=1 (read when tqdm
    is imported, hence a fresh process) turns into a bar that counts nothing."""
    part = make_part(tmp_path / "part-000001")
    code = (
        "import sys; from studio.config import Settings; from studio.studio import Studio\n"
        f"s = Settings(home=Path({str(tmp_path / 'home')!r}), clip_model={settings.clip_model!r}, offline=True,"
        " device='cpu', batch_size=2)\n"
        "seen = {}\n"
        f"Studio(s).ingest({str(part)!r}, progress=lambda w, d, t: seen.__setitem__(w, (d, t)))\n"
        "print(seen)"
    )
    env = os.environ | {"TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from pathlib import Path\n" + code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own dict of ints
    assert seen["prompts"][0] == seen["prompts"][1] > 0
    assert seen["images"][0] == seen["images"][1] > 0


def test_streamed_tables_give_the_same_store_as_a_whole_table_read(settings, embedder, tmp_path: Path) -> None:
    """pyarrow record batches, three passes, compact counts: the store is the one a pandas read of the whole
    table into Rows (the reader before streaming) gives, record for record and vector for vector."""
    from studio.ingest.cells import typed_settings
    from studio.ingest.pipeline import ingest_rows
    from studio.ingest.sources import _COLUMNS, Row

    streamed = Studio(settings.with_(home=tmp_path / "streamed"), embedder=embedder)
    whole = Studio(settings.with_(home=tmp_path / "whole"), embedder=embedder)
    for path in (EVERY400, FULLPARAMS):
        streamed.ingest(str(path))
        frame = pd.read_csv(path)
        rows = []
        for i, rec in enumerate(frame[[c for c in frame.columns if c in _COLUMNS]].rename(columns=_COLUMNS)
                                .to_dict("records")):
            prompt = rec.pop("prompt")
            name = rec.pop("image_name", None)
            s = typed_settings(rec)
            rows.append(Row(str(name) if isinstance(name, str) else f"{path.stem}-row{i:07d}",
                            prompt if isinstance(prompt, str) else "",
                            f"part-{s['part_id']:06d}" if "part_id" in s else path.stem, s))
        ingest_rows(rows, whole.store_for(create=True), embedder, label=str(path), bars=False)
    a, b = dump(streamed), dump(whole)
    assert a["prompts"]["ids"] == b["prompts"]["ids"] and len(a["prompts"]["ids"]) > 4000
    assert a["prompts"]["metadatas"] == b["prompts"]["metadatas"]
    assert a["prompts"]["documents"] == b["prompts"]["documents"]
    assert np.array_equal(a["prompts"]["embeddings"], b["prompts"]["embeddings"])


def test_dedupe_state_is_compact(tmp_path: Path) -> None:
    """100k unique prompts over 3 parts: the counts take a few hundred bytes each, not a Row each."""
    import tracemalloc

    from studio.ingest.dedupe import PromptCounts

    tracemalloc.start()
    counts = PromptCounts()
    for i in range(100_000):
        counts.add(prompt_id(f"prompt number {i}"), f"part-{i % 3:06d}")
    counts.add(prompt_id("prompt number 1"), "part-000002")
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size / 100_000 < 200, size
    assert counts.pop(prompt_id("prompt number 1")) == {"part-000001": 1, "part-000002": 1}
    assert counts.pop(prompt_id("prompt number 1")) is None and len(counts) == 99_999


KAGGLE = [("a castle in the clouds, matte painting", "https://example.invalid/1.png", 512, "lexica.art"),
          ("a fox in the snow, watercolor", "https://example.invalid/2.png", 768, "civitai.com"),
          ("portrait of a robot, 3d render, octane", "https://example.invalid/3.png", 640, "lexica.art")]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_any_prompt_library_ingests_under_its_own_name_with_its_columns(studio: Studio, tmp_path: Path,
                                                                        suffix: str) -> None:
    """The Kaggle "Diffusion Prompts" shape (id, prompt, url, width, height, source_site) is not DiffusionDB:
    it is stored as source=<file stem>, its url kept as text (never fetched), its other columns kept."""
    frame = pd.DataFrame({"id": ["k1", "k2", "k3"], "prompt": [p for p, *_ in KAGGLE], "url": [u for _, u, *_ in KAGGLE],
                          "width": [w for *_, w, _ in KAGGLE], "height": [w for *_, w, _ in KAGGLE],
                          "source_site": [s for *_, s in KAGGLE]})
    path = tmp_path / f"diffusion-prompts{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    report = studio.ingest(str(path))
    assert report.prompts_new == 3, report.summary()
    meta = studio.store.get("prompts", [prompt_id(KAGGLE[1][0])])[0].metadata
    assert meta["source"] == "diffusion-prompts" and meta["url"] == KAGGLE[1][1]
    assert meta["source_site"] == "civitai.com" and meta["width"] == 768 and str(meta["id"]) == "k2"
    from studio.search.results import Filters

    found = studio.search("a fox in the snow", k=3, filters=Filters(source="diffusion-prompts")).results
    assert found and all(h.metadata["source"] == "diffusion-prompts" for h in found)
    named = studio.ingest(str(path), source_tag="my library")  # --source NAME
    assert named.prompts_unchanged == 3  # the same prompts: one record each, the first source kept


def test_a_text_column_is_a_prompt_column(studio: Studio, tmp_path: Path) -> None:
    pd.DataFrame({"text": ["a lighthouse in a storm, oil painting"], "rating": [5]}).to_csv(tmp_path / "mine.csv",
                                                                                          index=False)
    studio.ingest(str(tmp_path / "mine.csv"))
    meta = studio.store.get("prompts", [prompt_id("a lighthouse in a storm, oil painting")])[0].metadata
    assert meta["source"] == "mine" and str(meta["rating"]) == "5"


def test_the_light_count_pass_counts_what_the_full_rows_count(tmp_path: Path) -> None:
    """The count pass reads light rows (no settings built per row): same prompts, parts and cell notes."""
    from studio.ingest.pipeline import IngestReport, count_prompts
    from studio.ingest.sources import read_table
    from studio.search.store import prompt_id

    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,seed,cfg,part_id,timestamp\na fox,1,7,1,2022-08-01\na fox,x,7,2,2022-08-01\n"
                   "a cat,3,high,x,nope\n")
    for table in (SAMPLE / "metadata-fullparams-promptsdvis-first99.csv", bad):
        got = []
        for light in (False, True):
            report = IngestReport("t")
            counts = count_prompts(read_table(table, light=light), report)
            by_prompt = {pid: counts.pop(pid) for pid in {prompt_id(r.prompt) for r in read_table(table)}}
            got.append((report.rows, report.cells_left_out, report.cell_notes, len(by_prompt), by_prompt))
        assert got[0] == got[1], table
    assert got[0][1] == 3  # seed 'x', cfg 'high', part_id 'x' (the unparseable timestamp is text)
