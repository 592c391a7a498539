"""The user's own images from any tool (A1111, ComfyUI, Fooocus, InvokeAI, NovelAI, none): every one ingested as
source=user with what its metadata says, read by sd-parsers; images without metadata embedded and counted."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from studio.search.results import Filters
from studio.search.store import prompt_id
from studio.studio import Studio
from tests.toolimages import COMFY_SEED, Expected, make_tool_folder


def _by_file(studio: Studio, folder: Path) -> dict[str, dict]:
    return {Path(r.metadata["file"]).name: {**r.metadata, "_document": r.document}
            for r in studio.store.get("images") if Path(r.metadata.get("file", "")).parent == folder.resolve()}


def test_a_folder_from_every_tool_ingests_every_image_as_the_users(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "my images"
    expected = make_tool_folder(folder)
    report = studio.ingest(str(folder))
    with_prompt = [e for e in expected if e.tool]
    # 13 files: 10 with a prompt, 2 without (embedded all the same), 1 corrupt (named, never a traceback)
    assert (report.images, report.images_without_prompt) == (13, 2), report.summary()
    assert [name for name, _ in report.failed] == ["broken.png"]
    assert report.images_new == 12 and report.prompts_new == len({e.prompt for e in with_prompt})
    assert "13 images: 10 with a prompt, 2 without, 1 unreadable" in report.summary()
    assert "broken.png" in report.summary()

    stored = _by_file(studio, folder)
    assert sorted(stored) == sorted(e.file for e in expected)
    for e in expected:
        meta = stored[e.file]
        assert meta["source"] == "user", e.file
        assert meta["_document"] == e.prompt, e.file
        if e.tool is None:
            assert "prompt_id" not in meta and "tool" not in meta
            continue
        assert meta["tool"] == e.tool and meta["prompt_id"] == prompt_id(e.prompt), e.file
        assert meta.get("negative_prompt") == e.negative, e.file
        assert {k: meta.get(k) for k in e.settings} == e.settings, e.file
        assert meta.get("model") == e.model, e.file
        record = studio.store.get("prompts", [prompt_id(e.prompt)])[0].metadata
        assert record["source"] == "user" and record.get("model") == e.model, e.file


def test_seeds_past_64_bits_are_kept_exactly(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "comfy"
    make_tool_folder(folder)
    studio.ingest(str(folder))
    meta = _by_file(studio, folder)["ComfyUI_00001_.png"]
    # Chroma holds int64: a larger int would come back as a float (1.8446744073709552e+19), so it is text
    assert "seed" not in meta and meta["seed_text"] == str(COMFY_SEED) and int(meta["seed_text"]) == 2**64 - 1
    fooocus = _by_file(studio, folder)["2024-05-01_12-00-00_1234.png"]
    assert fooocus["seed"] == 6952411511246973023 and isinstance(fooocus["seed"], int)
    hit = studio.search("a red fox in fresh snow, national geographic", k=1).results[0]
    assert hit.settings and hit.settings[0]["seed"] == str(COMFY_SEED)  # what Explore's table and Create read


def test_an_image_without_metadata_is_findable_by_image(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    make_tool_folder(folder)
    studio.ingest(str(folder))
    found = studio.similar_images(folder / "screenshot.png", k=3, filters=Filters(nsfw=True)).results
    assert found[0].file == str((folder / "screenshot.png").resolve()) and found[0].distance < 1e-4
    assert found[0].metadata["source"] == "user" and found[0].prompt == ""
    # Reverse search skips images that have no prompt rather than inventing one.
    assert all(h.prompt for h in studio.reverse(folder / "screenshot.png", k=3).results)


def test_ingesting_the_folder_again_adds_nothing(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "again"
    make_tool_folder(folder)
    first = studio.ingest(str(folder))
    counts = (studio.store.count("images"), studio.store.count("prompts"))
    again = studio.ingest(str(folder))
    assert (again.images_new, again.prompts_new, again.prompts_updated) == (0, 0, 0), again.summary()
    assert again.images_unchanged == first.images_new == 12
    assert (studio.store.count("images"), studio.store.count("prompts")) == counts


def test_subfolders_are_read_and_other_files_ignored(studio: Studio, tmp_path: Path) -> None:
    """A1111 keeps outputs in dated subfolders (outputs/txt2img-images/2024-05-01/); text files beside them
    are not images."""
    folder = tmp_path / "outputs"
    make_tool_folder(folder / "txt2img-images" / "2024-05-01")
    (folder / "txt2img-images" / "2024-05-01" / "00001-3405691582.txt").write_text("a lighthouse")
    (folder / "notes.md").write_text("my notes")
    report = studio.ingest(str(folder))
    assert report.images == 13 and report.images_new == 12, report.summary()


def test_a_folder_with_no_images_says_what_to_do(studio: Studio, tmp_path: Path) -> None:
    import pytest

    from studio.errors import InputError

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no images"):
        studio.ingest(str(tmp_path / "empty"))


def test_our_own_outputs_stay_generated_beside_user_images(studio: Studio, tmp_path: Path) -> None:
    """Our chunk is read first: a PNG the studio wrote keeps source=generated and its lineage, even when it also
    carries A1111's `parameters` text (which sd-parsers would read as AUTOMATIC1111's)."""
    from studio.library.pngmeta import Parameters, write_png

    folder = tmp_path / "mixed"
    make_tool_folder(folder)
    chunk = {"app": "prompt-studio", "image_id": "0b7f2c1e-1111-4222-8333-944455556666", "prompt": "a teapot",
             "seed": 6, "steps": 2, "cfg": 5.0, "sampler": "Euler", "width": 64, "height": 64, "model": "tiny",
             "lineage": {"idea": "tea"}, "timestamp": "2024-05-01T12:00:00"}
    write_png(Image.new("RGB", (64, 64), "teal"), folder / "studio.png",
              Parameters("a teapot", steps=2, sampler="Euler", cfg=5.0, seed=6, width=64, height=64), chunk)
    studio.ingest(str(folder))
    (ours,) = studio.store.get("images", ["0b7f2c1e-1111-4222-8333-944455556666"])
    assert ours.metadata["source"] == "generated" and ours.metadata["idea"] == "tea"
    assert json.loads(ours.metadata["retrieved_ids"]) == []


def test_the_cli_ingests_a_tool_folder(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from tests.test_cli import run

    folder = tmp_path / "tools"
    make_tool_folder(folder)
    out = run("ingest", str(folder), "--json", home=tmp_path / "home", clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["images"], report["images_without_prompt"], report["images_new"]) == (13, 2, 12)
    assert report["failed"][0][0] == "broken.png" and "Traceback" not in out.stderr
    assert "10 with a prompt, 2 without" in report["summary"]


def test_expected_shapes_are_what_the_tools_write(tmp_path: Path) -> None:
    """The fixtures themselves: each tool's chunk is where that tool puts it."""
    folder = tmp_path / "shapes"
    expected: list[Expected] = make_tool_folder(folder)
    assert len(expected) == 12
    with Image.open(folder / "ComfyUI_00001_.png") as img:
        assert {"prompt", "workflow"} <= set(img.info)
        assert json.loads(img.info["prompt"])["3"]["inputs"]["seed"] == COMFY_SEED
    with Image.open(folder / "00002-77.jpg") as img:
        assert img.getexif().get_ifd(0x8769)[0x9286].startswith(b"UNICODE\x00")
    with Image.open(folder / "2024-05-01_12-00-05_5678.jpeg") as img:
        assert img.getexif()[0x927C] == "fooocus"


def test_a_plain_jpeg_never_inherits_the_previous_jpegs_metadata(tmp_path: Path, monkeypatch) -> None:
    """sd-parsers 0.6 caches a JPEG's UserComment under id(image); CPython hands a freed image's address to the next
    one, and a plain JPEG read after an A1111 one then came back with its prompt (seen here, about 1 in 500
    alternating reads). Every image landing on the same address is that case made certain."""
    from sd_parsers.extractors import _jpeg_usercomment

    from studio.ingest.outputs import read_image
    from studio.ingest.toolmeta import ToolReader
    from tests.toolimages import a1111_exif

    a1111_exif(tmp_path / "a.jpg", "a windmill\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1", (9, 9, 9), "JPEG")
    Image.new("RGB", (64, 48), "white").save(tmp_path / "plain.jpg")
    monkeypatch.setattr(_jpeg_usercomment, "id", lambda obj: 1, raising=False)  # one address for every image
    reader = ToolReader()
    assert read_image(tmp_path / "a.jpg", reader).prompt == "a windmill"
    assert read_image(tmp_path / "plain.jpg", reader).prompt == ""
    assert read_image(tmp_path / "a.jpg", reader).prompt == "a windmill"
