"""Removing a source ingested by mistake (Studio.remove_source): its prompts and images go, prompts other
sources share stay with exactly their own counts, and the counters stay exact; real Chroma stores in tmp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from studio.errors import InputError
from studio.library import removal
from studio.search.store import prompt_id
from studio.studio import Studio
from tests.conftest import SAMPLE

TABLE = SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"
SHARED = ("a portrait of a female robot made from code, very intricate details, octane render, 8 k, "
          "trending on artstation")  # the table's first prompt


def _library(folder: Path, prompts: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mylib.csv"
    path.write_text("prompt,url\n" + "".join(f'"{p}",http://example.invalid/{i}\n' for i, p in enumerate(prompts)))
    return path


def _user_images(folder: Path, prompts: list[str]) -> Path:
    """PNGs as AUTOMATIC1111 saves them: a `parameters` text chunk (the user's own images, source user)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(prompts):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {i + 1}, "
                                    "Size: 64x48, Model: sd15")
        Image.new("RGB", (64, 48), (40 * i % 256, 90, 200 - 30 * i)).save(folder / f"{i:05d}.png", pnginfo=info)
    return folder


def _exact(studio: Studio) -> dict[str, dict[str, int]]:
    """Records per source in each collection, checked against Chroma's own count (the counters are exact)."""
    out = {}
    for ix in studio.stats(wait=True).indexes:
        assert ix.exact and sum(ix.by_source.values()) == ix.count, ix
        out[ix.kind] = dict(ix.by_source)
    return out


def _meta(studio: Studio, prompt: str) -> dict[str, Any] | None:
    got = studio.store.get("prompts", [prompt_id(prompt)])
    return got[0].metadata if got else None


def test_removing_a_library_leaves_the_prompts_it_shared_as_they_were(studio: Studio, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(removal, "PAGE", 7)  # several pages even for this small store: the paging is what runs
    studio.ingest(str(TABLE), limit=40)
    before, shared_before = _exact(studio), _meta(studio, SHARED)
    report = studio.ingest(str(_library(tmp_path / "lib", [SHARED, "a red fox in fresh snow", "a blue teapot"])))
    assert report.prompts_new == 2 and report.prompts_updated == 1
    shared = _meta(studio, SHARED)
    assert shared["source"] == "diffusiondb" and shared["shared"] == ["mylib"]
    assert _exact(studio)["prompts"] == {**before["prompts"], "mylib": 2}

    gone = studio.remove_source("mylib")
    assert (gone.prompts_removed, gone.images_removed, gone.prompts_kept) == (2, 0, 1)
    assert "2 prompts and 0 images" in gone.summary()
    assert _exact(studio) == before
    assert _meta(studio, SHARED) == shared_before  # its counts, and no trace of the library
    assert _meta(studio, "a red fox in fresh snow") is None


def test_removing_the_first_source_hands_shared_prompts_to_the_other(studio: Studio, tmp_path: Path) -> None:
    studio.ingest(str(_library(tmp_path / "lib", [SHARED, "a red fox in fresh snow"])))
    studio.ingest(str(TABLE), limit=40)
    assert _meta(studio, SHARED)["source"] == "mylib"
    studio.remove_source("mylib")
    after = _meta(studio, SHARED)
    assert after["source"] == "diffusiondb" and "shared" not in after and "part_sources" not in after
    assert json.loads(after["counts"]) == {TABLE.stem: 1} and after["image_count"] == 1
    assert _exact(studio)["prompts"] == {"diffusiondb": 40}
    assert _meta(studio, "a red fox in fresh snow") is None


def test_removing_the_users_images_takes_back_their_counts_only(studio: Studio, tmp_path: Path) -> None:
    studio.ingest(str(SAMPLE / "images"))  # DiffusionDB's 3 images, their prompts
    before, kept = _exact(studio), studio.store.get("prompts", limit=1)[0]
    mine = [kept.document, "my own castle at dusk"]
    studio.ingest(str(_user_images(tmp_path / "pngs", mine)))
    assert _exact(studio)["images"] == {**before["images"], "user": 2}
    report = studio.remove_source("user")
    assert (report.images_removed, report.prompts_removed, report.prompts_kept) == (2, 1, 1)
    assert _exact(studio) == before
    assert _meta(studio, kept.document) == kept.metadata
    assert studio.search("my own castle at dusk", "images", 10).results  # DiffusionDB's images are all still there
    assert all(h.metadata.get("source") == "diffusiondb" for h in studio.search("castle", "images", 10).results)


def test_removing_diffusiondb_keeps_the_users_image_of_a_shared_prompt(studio: Studio, tmp_path: Path) -> None:
    studio.ingest(str(SAMPLE / "images"))
    prompt = studio.store.get("prompts", limit=1)[0].document
    studio.ingest(str(_user_images(tmp_path / "pngs", [prompt])))
    studio.remove_source("diffusiondb")
    left = _meta(studio, prompt)
    assert left["source"] == "user" and json.loads(left["counts"]) == {"outputs": 1}
    assert _exact(studio) == {"prompts": {"user": 1}, "images": {"user": 1}}


def test_removing_nothing_is_refused_and_an_unknown_source_removes_nothing(studio: Studio) -> None:
    studio.ingest(str(TABLE), limit=5)
    before = _exact(studio)
    with pytest.raises(InputError):
        studio.remove_source("  ")
    report = studio.remove_source("no-such-source")
    assert (report.prompts_removed, report.images_removed) == (0, 0) and _exact(studio) == before


def test_a_report_of_one_row_says_row(studio: Studio, tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("prompt\na single lonely prompt\n")
    text = studio.ingest(str(one)).summary()
    assert "1 row ->" in text and "1 new prompt," in text and "1 rows" not in text
