"""Hugging Face `datasets` as prompt libraries: a save_to_disk folder (made here with the real library) and
hf:ORG/NAME streamed through load_dataset(streaming=True), pointed at a local parquet folder (no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from studio.config import Settings
from studio.errors import InputError
from studio.search.results import Filters
from studio.search.store import prompt_id
from studio.studio import Studio
from tests.conftest import SAMPLE_IMAGES

PROMPTS = ["a lighthouse in a storm, oil painting", "a fox in the snow, watercolor", "portrait of a robot, 3d render",
           "a castle in the clouds, matte painting"]


def _picture(i: int) -> Image.Image:
    img = Image.new("RGB", (48, 40), (40 * i, 200 - 30 * i, 90))
    img.putpixel((i, i), (255, 255, 255))
    return img


def make_dataset(folder: Path, splits: bool = False) -> Path:
    """A prompt library as `datasets` saves it: prompt, an image column (one row has none), a ClassLabel, a
    number, a url kept as text, a list column (not a scalar: left out), and a column named like one of ours."""
    import datasets

    features = datasets.Features({"prompt": datasets.Value("string"), "image": datasets.Image(),
                                  "style": datasets.ClassLabel(names=["painting", "photo", "render"]),
                                  "rating": datasets.Value("float32"), "url": datasets.Value("string"),
                                  "tags": datasets.Sequence(datasets.Value("string")),
                                  "source": datasets.Value("string")})
    rows = {"prompt": PROMPTS, "image": [_picture(0), _picture(1), None, _picture(3)], "style": [0, 0, 2, 0],
            "rating": [4.5, 3.0, 5.0, 2.5], "url": [f"https://example.invalid/{i}.png" for i in range(4)],
            "tags": [["sea"], [], ["robot", "3d"], ["sky"]], "source": ["lexica", "lexica", "civitai", "lexica"]}
    ds = datasets.Dataset.from_dict(rows, features=features)
    if splits:
        ds = datasets.DatasetDict({"train": ds.select(range(3)), "test": ds.select([3])})
    ds.save_to_disk(str(folder))
    return folder


def test_a_saved_dataset_ingests_as_a_prompt_library_with_its_images(studio: Studio, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "my-prompts")
    report = studio.ingest(str(folder))
    assert (report.rows, report.prompts_new, report.images_new) == (4, 4, 3), report.summary()
    meta = studio.store.get("prompts", [prompt_id(PROMPTS[2])])[0].metadata
    assert meta["source"] == "my-prompts" and meta["style"] == "render" and meta["rating"] == 5.0
    assert meta["url"] == "https://example.invalid/2.png" and meta["col_source"] == "civitai" and "tags" not in meta
    images = studio.store.get("images")
    assert len(images) == 3 and all(r.metadata["source"] == "my-prompts" for r in images)
    # Each image was saved once where the gallery can read it, and is findable by image.
    saved = sorted((studio.settings.home / "datasets" / "my-prompts").iterdir())
    assert len(saved) == 3 and {Path(r.metadata["file"]) for r in images} == set(saved)
    _picture(1).save(tmp_path / "query.png")
    top = studio.similar_images(tmp_path / "query.png", k=1, filters=Filters(nsfw=True)).results[0]
    assert top.prompt == PROMPTS[1] and top.distance < 1e-4
    hits = studio.search("a fox in the snow", k=2, filters=Filters(source="my-prompts")).results
    assert hits and all(h.metadata["source"] == "my-prompts" for h in hits)


def test_ingesting_a_dataset_again_adds_nothing(studio: Studio, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "again")
    studio.ingest(str(folder))
    files = sorted((studio.settings.home / "datasets" / "again").iterdir())
    again = studio.ingest(str(folder))
    assert (again.prompts_new, again.prompts_updated, again.images_new, again.images_unchanged) == (0, 0, 0, 3)
    assert sorted((studio.settings.home / "datasets" / "again").iterdir()) == files
    assert not list((studio.settings.home / "cache" / "spool").iterdir())  # the spool is gone, the images stay


def test_every_split_of_a_dataset_dict_and_a_source_name(studio: Studio, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "dict", splits=True)
    report = studio.ingest(str(folder), source_tag="my library")
    assert (report.rows, report.prompts_new, report.images_new) == (4, 4, 3), report.summary()
    meta = studio.store.get("prompts", [prompt_id(PROMPTS[3])])[0].metadata
    assert meta["source"] == "my-library" and json.loads(meta["counts"]) == {"my-library-test": 1}


def test_a_dataset_with_diffusiondbs_columns_stays_diffusiondb(studio: Studio, tmp_path: Path) -> None:
    """The HF loader's DiffusionDB export, saved: its image_name is the image's id (as from a part zip)."""
    import datasets

    name = "f3501e05-aef7-4225-a9e9-f516527408ac.png"
    ds = datasets.Dataset.from_dict(
        {"image": [str(next(SAMPLE_IMAGES.glob("*.png")))], "prompt": ["a woman reading on a pile of books"],
         "seed": [75054762], "step": [50], "cfg": [7.0], "sampler": [8], "width": [512], "height": [512],
         "image_name": [name], "image_nsfw": [0.1], "prompt_nsfw": [0.02]},
        features=datasets.Features({"image": datasets.Image(), "prompt": datasets.Value("string"),
                                    "seed": datasets.Value("uint32"), "step": datasets.Value("uint16"),
                                    "cfg": datasets.Value("float32"), "sampler": datasets.Value("uint8"),
                                    "width": datasets.Value("uint16"), "height": datasets.Value("uint16"),
                                    "image_name": datasets.Value("string"), "image_nsfw": datasets.Value("float32"),
                                    "prompt_nsfw": datasets.Value("float32")}))
    ds.save_to_disk(str(tmp_path / "2m_first_1"))
    studio.ingest(str(tmp_path / "2m_first_1"))
    (image,) = studio.store.get("images", [name])
    assert image.metadata["source"] == "diffusiondb" and image.metadata["seed"] == 75054762
    assert image.metadata["steps"] == 50 and image.metadata["sampler"] == "k_lms"


def test_a_broken_image_cell_is_named_and_its_prompt_kept(studio: Studio, tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a red balloon", "a blue kite"],
                                     "image": [{"bytes": b"not an image", "path": None}, _picture(2)]},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "image": datasets.Image()}))
    ds.save_to_disk(str(tmp_path / "kites"))
    report = studio.ingest(str(tmp_path / "kites"))
    assert (report.prompts_new, report.images_new, report.unreadable) == (2, 1, 1), report.summary()
    assert report.failed[0][0] == "kites-train-row0000000" and "train row 1" in report.failed[0][1]
    assert "unreadable" in report.summary() and "Traceback" not in report.summary()


def _parquet_repo(root: Path) -> str:
    """A local folder laid out as a hub dataset repo (data/train-*.parquet): load_dataset streams it as it would
    stream ORG/NAME from the hub, offline."""
    import pandas as pd

    repo = root / "local-org" / "sd-prompts"
    (repo / "data").mkdir(parents=True)
    for i, chunk in enumerate([PROMPTS[:2], PROMPTS[2:]]):
        pd.DataFrame({"Prompt": chunk, "seed": [2**40 + i, 7]}).to_parquet(repo / "data" / f"train-0000{i}-of-00002.parquet")
    return "local-org/sd-prompts"


def test_hf_datasets_are_streamed(settings: Settings, embedder, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo = _parquet_repo(tmp_path)
    online = Studio(replace(settings, offline=False), embedder=embedder)
    report = online.ingest(f"hf:{repo}:train", limit=3)
    assert (report.rows, report.prompts_new) == (3, 3), report.summary()
    meta = online.store.get("prompts", [prompt_id(PROMPTS[0])])[0].metadata
    assert meta["source"] == "sd-prompts" and meta["seed"] == 2**40
    assert online.ingest(f"hf:{repo}").prompts_new == 1  # every split; the first three were stored already
    with pytest.raises(InputError, match="Available splits"):
        online.ingest(f"hf:{repo}:validation")


def test_hf_offline_says_what_to_do(studio: Studio) -> None:
    assert studio.settings.offline
    with pytest.raises(InputError, match="STUDIO_OFFLINE/HF_HUB_OFFLINE is set.*save_to_disk"):
        studio.ingest("hf:Gustavosta/Stable-Diffusion-Prompts")
    with pytest.raises(InputError, match="hf:ORG/NAME"):
        studio.ingest("hf:../etc")


def test_streaming_reads_only_what_it_keeps(tmp_path: Path) -> None:
    """--limit stops the stream: rows past it are never produced (memory holds a row, never the dataset)."""
    import datasets

    from studio.ingest.hfdatasets import Opened, dataset_rows

    produced: list[int] = []

    def rows():
        for i in range(1_000_000):
            produced.append(i)
            yield {"prompt": f"prompt number {i}"}

    stream = datasets.IterableDataset.from_generator(rows)
    got = list(dataset_rows(Opened("endless", [("train", stream)], ["prompt"]), "endless", tmp_path, limit=5))
    assert [r.prompt for r in got] == [f"prompt number {i}" for i in range(5)] and len(produced) < 1_000


def test_explore_lists_user_and_dataset_sources(studio: Studio, tmp_path: Path) -> None:
    from studio.ui.explore import source_choices
    from tests.toolimages import make_tool_folder

    studio.ingest(str(make_dataset(tmp_path / "my-prompts")))
    make_tool_folder(tmp_path / "mine")
    studio.ingest(str(tmp_path / "mine"))
    choices = source_choices(studio)
    assert "user" in choices and "my-prompts" in choices


def test_the_cli_ingests_a_dataset_and_searches_its_source(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from tests.test_cli import run

    folder = make_dataset(tmp_path / "cli-prompts")
    out = run("ingest", str(folder), "--json", home=tmp_path / "home", clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["prompts_new"] == 4
    out = run("search", "a fox", "--source", "cli-prompts", "--json", home=tmp_path / "home", clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    assert {h["metadata"]["source"] for h in json.loads(out.stdout)["results"]} == {"cli-prompts"}
    out = run("search", "a fox", "--source", "nope", home=tmp_path / "home", clip=tiny_clip_dir)
    assert out.returncode == 2 and "cli-prompts" in out.stderr  # the error lists the sources the store holds
    out = run("ingest", "hf:someone/something", home=tmp_path / "home", clip=tiny_clip_dir)
    assert out.returncode == 2 and "STUDIO_OFFLINE" in out.stderr and "Traceback" not in out.stderr


def test_importing_the_core_loads_neither_datasets_nor_sd_parsers() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; import studio.studio, studio.cli, studio.ingest.ingester; "
            "print([m for m in ('datasets', 'sd_parsers', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_served_beyond_this_machine_hf_reads_no_local_folder_outside_the_roots(tmp_path: Path, monkeypatch) -> None:
    from studio.ui.library import confined

    confined("hf:Gustavosta/Stable-Diffusion-Prompts:train", (str(tmp_path / "home"),))  # the hub: not a server path
    monkeypatch.chdir(tmp_path)
    _parquet_repo(tmp_path)  # a local folder load_dataset would read under that name
    with pytest.raises(InputError, match="reads server files only under"):
        confined("hf:local-org/sd-prompts", (str(tmp_path / "home"),))
    confined("hf:local-org/sd-prompts", (str(tmp_path),))
