"""Uploads from the browser made into sources (images kept, a zip of a folder unpacked safely, tables as they
are) and the offer of real DiffusionDB pictures (its size, what is already here, offline: how)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.errors import InputError
from studio.ingest import hub_offer
from studio.ingest.uploads import stage
from studio.studio import Studio


def _png(path: Path, prompt: str, colour: tuple[int, int, int]) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x48")
    Image.new("RGB", (64, 48), colour).save(path, pnginfo=info)
    return path


def test_uploaded_images_a_zipped_folder_and_a_jsonl_are_ingested(studio: Studio, tmp_path: Path) -> None:
    tmp = tmp_path / "gradio-tmp"
    tmp.mkdir()
    one = _png(tmp / "castle.png", "a castle on a hill at dawn", (200, 80, 40))
    two = _png(tmp / "boat.png", "a small boat on a calm lake", (20, 80, 200))
    folder = tmp / "zipped.zip"
    with zipfile.ZipFile(folder, "w") as zf:
        zf.write(_png(tmp / "z.png", "a fox in the snow", (240, 240, 250)), "my folder/z.png")
        zf.writestr("../evil.png", b"never written outside")
        zf.writestr("__MACOSX/._z.png", b"resource fork")
    table = tmp / "prompts.jsonl"
    table.write_text('{"prompt": "a lighthouse in a storm, oil painting"}\n')
    reports = studio.ingest_uploads([(str(p), p.name) for p in (one, two, folder, table)])
    said = " ".join(r.summary() for r in reports)
    assert "2 images: 2 with a prompt" in said and "zipped.zip: 1 image: 1 with a prompt" in said
    assert "prompts.jsonl: 1 row -> 1 new prompt," in said and str(tmp) not in said
    kept = list((studio.settings.home / "uploads").rglob("*.png"))
    assert len(kept) == 3 and not (studio.settings.home / "evil.png").exists()
    assert all(k.is_relative_to(studio.settings.home / "uploads") for k in kept)
    assert studio.stats().by_source("images") == {"user": 3}
    assert studio.stats().by_source("prompts") == {"user": 3, "prompts": 1}


def test_a_failed_upload_says_what_went_in_before_it(studio: Studio, tmp_path: Path) -> None:
    good = _png(tmp_path / "a.png", "a castle on a hill at dawn", (200, 80, 40))
    bad = tmp_path / "notes.csv"
    bad.write_text("title\nno prompt column\n")
    with pytest.raises(InputError) as err:
        studio.ingest_uploads([(str(good), "a.png"), (str(bad), "notes.csv")])
    assert "a.png: 1 image" in str(err.value) and "notes.csv has no prompt column" in str(err.value)
    assert studio.stats().by_source("images") == {"user": 1}  # what went in stays in


def test_unknown_uploads_and_empty_zips_are_refused_in_words(tmp_path: Path) -> None:
    doc = tmp_path / "x.docx"
    doc.write_bytes(b"PK")
    with pytest.raises(InputError, match="upload images"):
        stage([(str(doc), "x.docx")], tmp_path / "uploads")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "nothing to ingest")
    with pytest.raises(InputError, match="holds no images or tables"):
        stage([(str(empty), "empty.zip")], tmp_path / "uploads")


def test_the_offer_states_its_size_and_what_is_already_downloaded(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.delenv("HF_HUB_OFFLINE")  # as a user's machine online has it (nothing here reaches the hub)
    online = replace(settings, offline=False)
    offer = hub_offer.offer(online, sizes=lambda files: {f: 100_000_000 for f in files})
    assert (offer.images, offer.total_bytes, offer.exact, offer.offline) == (2000, 300_000_000, True, False)
    assert "300 MB to download" in offer.button() and "hub:2m:1-2" in offer.markdown()
    cache = online.home / "cache" / "diffusiondb"
    (cache / "images").mkdir(parents=True)
    (cache / "metadata.parquet").write_bytes(b"x" * 1000)  # a finished file
    hub_offer.offer(online)  # the hub not asked: DiffusionDB's published sizes
    assert hub_offer.offer(online).cached_bytes == 1000 and not hub_offer.offer(online).exact

    def unreachable(files: list[str]) -> dict[str, int]:
        raise OSError("no route to host")

    assert hub_offer.offer(online, sizes=unreachable).total_bytes == 195_000_000 + 2 * 800_000_000


def test_offline_the_offer_says_how(settings) -> None:
    offer = hub_offer.offer(settings)  # the tests run offline
    assert offer.offline and "needs a connection" in offer.button()
    assert "python -m studio ingest hub:2m:1-2" in offer.markdown() and "images/part-000001.zip" in offer.markdown()
