"""Explore, Reverse and History below the page (issue 23 part 2): an image's own metadata (Studio.image_info), seeds
as exact text for the page, History's text search that matches nothing and its undo of a delete, and the same
words for CLIP's state in the status line and the banner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from studio.config import Settings
from studio.studio import Studio
from tests.toolimages import COMFY_SEED, FOOOCUS_SEED, make_tool_folder


def test_image_info_reads_every_tools_own_prompt_and_exact_seed(studio: Studio, tmp_path: Path) -> None:
    expected = make_tool_folder(tmp_path / "tools")
    for want in expected:
        info = studio.image_info(str(tmp_path / "tools" / want.file))
        if want.tool is None:
            assert info is None, want.file  # a photo, a screenshot: nothing to show
            continue
        assert info is not None and info.tool == want.tool, want.file
        assert info.prompt == want.prompt and info.negative_prompt == want.negative, want.file
        seed = want.settings.get("seed", want.settings.get("seed_text"))
        assert str(info.settings["seed"]) == str(seed), want.file
        assert info.settings["steps"] == want.settings["steps"], want.file
    fooocus = studio.image_info((tmp_path / "tools" / "2024-05-01_12-00-00_1234.png").read_bytes())
    assert fooocus is not None and fooocus.settings["seed"] == int(FOOOCUS_SEED)  # bytes too, exactly
    comfy = studio.image_info(tmp_path / "tools" / "ComfyUI_00001_.png")
    assert comfy is not None and comfy.settings["seed"] == COMFY_SEED and comfy.model == "sd_xl_base_1.0.safetensors"
    assert studio.image_info(tmp_path / "tools" / "broken.png") is None  # its pixels' reader says why
    assert studio.image_info(tmp_path / "nowhere.png") is None


def test_image_info_reads_our_own_png(gen_studio: Studio) -> None:
    result = gen_studio.generate("a lighthouse at dawn", negative_prompt="fog", seed=11, steps=2, width=64, height=64)
    info = gen_studio.image_info(result.saved[0].path)
    assert info is not None and info.tool == "Prompt Studio" and info.prompt == "a lighthouse at dawn"
    assert info.negative_prompt == "fog" and info.settings["seed"] == 11 and info.settings["width"] == 64


def test_seeds_reach_the_page_as_exact_text() -> None:
    from studio.studio import Hit, SearchResult
    from studio.ui.views import for_sdxl, page_json, pick_of, row_picks, rows

    big = int(FOOOCUS_SEED)
    hit = Hit("a", "a smiling goldfish", 0.1, {"source": "user"}, settings=[{"seed": big, "steps": 30, "cfg": 4.0}])
    result = SearchResult("goldfish", "prompts", [hit])
    assert rows(result)[0][3] == FOOOCUS_SEED  # text: JavaScript would round the number to ...973000
    assert pick_of(hit)["seed"] == FOOOCUS_SEED and row_picks(result)[0]["seed"] == FOOOCUS_SEED
    raw = page_json(result.to_dict())
    assert raw["results"][0]["settings"][0]["seed"] == FOOOCUS_SEED and raw["results"][0]["settings"][0]["steps"] == 30
    values, changed = for_sdxl({"seed": FOOOCUS_SEED, "steps": 30}, exact=True, sizes=False)
    assert "seed" not in values and any(FOOOCUS_SEED in c for c in changed)  # past SDXL's 32-bit seeds: said
    assert for_sdxl({"seed": "3405691582"}, exact=True)[0]["seed"] == 3405691582


def test_history_text_that_matches_nothing_lists_nothing(gen_studio: Studio) -> None:
    gen_studio.generate("a red fox in the snow", seed=7, steps=2, width=64, height=64, n=2)
    found = gen_studio.history("red fox", 10)
    assert len(found.results) == 2  # words of the query in the prompt
    nothing = gen_studio.history("zzqx", 10)
    assert nothing.results == [] and nothing.hidden == 2  # not "every image, closest first"
    assert len(gen_studio.history(None, 10).results) == 2


def test_a_deleted_image_is_restored_with_its_settings(gen_studio: Studio) -> None:
    result = gen_studio.generate("a paper boat on a river", seed=21, steps=2, width=64, height=64)
    saved = result.saved[0]
    moved = gen_studio.delete_image(saved.image_id)
    assert moved is not None and moved.parent.name == ".deleted" and not saved.path.exists()
    assert gen_studio.history(None, 10).results == []
    hit = gen_studio.restore_image(str(moved), str(saved.path))
    assert hit.id == saved.image_id and saved.path.is_file() and not moved.exists()
    back = gen_studio.history(None, 10).results
    assert [h.id for h in back] == [saved.image_id] and back[0].metadata["seed"] == 21
    with pytest.raises(Exception, match="no longer in"):
        gen_studio.restore_image(str(moved), str(saved.path.with_name("other.png")))


def _first_run_status(settings: Settings) -> str:
    from studio.firstrun import FirstRun

    run = FirstRun(Studio(settings), ingest_sample=False).start()
    run.wait(120)
    return run.status_markdown()


def test_status_and_banner_say_the_same_word_for_clip(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from studio.ui.text import missing_banner

    no_tokenizer = tmp_path / "clip-no-tokenizer"
    shutil.copytree(tiny_clip_dir, no_tokenizer)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    settings = Settings(home=tmp_path / "a", models_dir=tmp_path / "models", clip_model=str(no_tokenizer),
                        offline=True, device="cpu")
    banner, status = missing_banner(Studio(settings).models()), _first_run_status(settings)
    assert "CLIP (search) is unreadable" in banner and "CLIP (search) is missing" not in banner
    assert "the CLIP model is unreadable" in status and "CLIP model is missing" not in status
    broken = tmp_path / "clip-broken-weights"  # every file there: the banner cannot know, the status says why
    shutil.copytree(tiny_clip_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not weights")
    settings = Settings(home=tmp_path / "b", models_dir=tmp_path / "models", clip_model=str(broken), offline=True,
                        device="cpu")
    status = _first_run_status(settings)
    assert "the CLIP model is unreadable" in status and "usable weights" in status
    assert "CLIP" not in missing_banner(Studio(settings).models())
    absent = Settings(home=tmp_path / "c", models_dir=tmp_path / "models", clip_model=str(tmp_path / "none"),
                      offline=True, device="cpu")
    assert "the CLIP model is missing" in _first_run_status(absent) and "CLIP (search) is missing" in missing_banner(Studio(absent).models())
