"""The real app: `python launch.py` on 127.0.0.1 with tiny real models, called through gradio_client."""

from __future__ import annotations

import re

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.appserver import ARTIFACTS, CHROMIUM, SMALL, browser, free_port, ready_client, serve, stop
from tests.conftest import ROOT, SAMPLE, SAMPLE_IMAGES

CORAL = ("cyberpunk coral emperor, highly detailed, digital painting, trending on artstation, concept art, sharp "
         "focus, illustration, art by artgerm and greg rutkowski and magali villeneuve")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[str]:
    """The studio on a fresh STUDIO_HOME: it ingests the shipped sample on its own, in the background."""
    base = tmp_path_factory.mktemp("app")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(app: str) -> Any:
    return ready_client(app)


def test_every_event_has_its_api_name(client) -> None:
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/search", "/reverse", "/rewrite", "/generate", "/compare", "/history", "/stats", "/ingest"} <= names


def test_search_and_reverse_through_gradio_client(client) -> None:
    from gradio_client import handle_file

    table, gallery, note, raw = client.predict(CORAL, "prompts", False, 5, api_name="/search")
    assert table["data"][0][1].startswith("cyberpunk coral emperor") and "5 results" in note
    assert {"id", "prompt", "distance", "metadata"} <= raw["results"][0].keys()
    assert len(gallery) == 3  # the gallery shows the idea's images whichever list the table shows
    _, _, _, mine = client.predict(CORAL, "prompts", False, 5, "mine", api_name="/search")
    # "mine" is the user's own (generated, or their images from other tools; other tests here may have made some,
    # in any order): none of DiffusionDB's shows
    assert all(h["metadata"]["source"] in ("generated", "user") for h in mine["results"])
    image = SAMPLE_IMAGES / "2m-part-000001_from-poloclub-example-loading.png"
    table, gallery, note, raw = client.predict(handle_file(str(image)), False, 3, api_name="/reverse")
    assert table["data"][0][1].startswith("symmetry!! a tiny cute chinese") and table["data"][0][3] == "75054762"  # seeds as text (exact past 2**53)
    assert len(gallery) == 3


def test_bad_input_is_a_message_not_a_trace(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    with pytest.raises(Exception, match="Type an idea"):
        client.predict("   ", "prompts", False, 5, api_name="/search")
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    with pytest.raises(Exception, match="Could not read notes.png as an image") as err:
        client.predict(handle_file(str(fake)), False, 3, api_name="/reverse")
    assert "Traceback" not in str(err.value)
    with pytest.raises(Exception, match="width=100: use a multiple of 8"):
        client.predict("a fox", "", 1, 2, 5.0, 100, 64, "Euler", "standard", 1, api_name="/generate")


def test_rewrite_streams_a_prompt_grounded_in_retrieved_ones(client) -> None:
    retrieved, prompt, notes, raw = client.predict("a lighthouse in a storm", 3, False, api_name="/rewrite")
    assert len(retrieved["data"]) >= 1 and retrieved["headers"][:2] == ["match", "prompt"]
    assert prompt.strip() and prompt == raw["candidates"][0]["text"]
    assert "CLIP tokens" in notes and "starter model" in notes  # the starter-model notice, where it applies
    assert raw["retrieved_ids"] and raw["starter"] is True
    # Steering through the same endpoint: a note, two candidates, a locked word (the outputs stay four).
    retrieved, prompt, notes, raw = client.predict("a lighthouse in a storm", 3, False, "warmer light", 2, [],
                                                   "velvet", api_name="/rewrite")
    assert len(raw["candidates"]) == 2 and raw["note"] == "warmer light"
    assert all("velvet" in c["text"] for c in raw["candidates"])


def test_generate_saves_and_remembers(client) -> None:
    preview, gallery, info, raw = client.predict("a red fox in the snow", "", 7, SMALL["steps"], SMALL["cfg"],
                                                 SMALL["width"], SMALL["height"], "Euler", "standard", 2,
                                                 api_name="/generate")
    assert [g["caption"] for g in gallery] == ["seed 7", "seed 8"] and preview
    assert raw["request"]["seed"] == 7 and raw["steps_done"] == 2 and not raw["cancelled"]
    saved = [Path(s["file"]) for s in raw["saved"]]
    assert len(saved) == 2 and all(p.is_file() and p.parent.name == "outputs" for p in saved)
    pics, note, hist = client.predict("", None, 10, api_name="/history")
    assert "newest first" in note and hist["results"][0]["prompt"] == "a red fox in the snow"
    pics, note, hist = client.predict("red fox", None, 10, api_name="/history")
    assert "closest to the text" in note and len(pics) >= 2
    table, _, _, raw = client.predict("a red fox in the snow", "prompts", False, 5, "mine", api_name="/search")
    assert raw["results"] and all(h["metadata"]["source"] in ("generated", "user") for h in raw["results"])
    assert raw["results"][0]["prompt"] == "a red fox in the snow"


def test_cancel_stops_a_running_generation(client) -> None:
    import time

    job = client.submit("a slow fox", "", 3, 150, 5.0, 64, 64, "Euler", "standard", 1, api_name="/generate")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Step" not in str(job.outputs()[-1:] or ""):
        time.sleep(0.1)  # wait for the first preview: the job is denoising
    assert "Cancelling" in client.predict(api_name="/cancel")  # the same client: the same session's job
    preview, gallery, info, raw = job.result(timeout=60)
    assert raw["cancelled"] and raw["steps_done"] < 150 and gallery == [] and "nothing saved" in info


def test_compare_three_images_one_seed(client) -> None:
    *columns, note, raw, earlier = client.predict("a lighthouse in a storm", 11, SMALL["steps"], SMALL["cfg"],
                                                 SMALL["width"], SMALL["height"], "Euler", "standard",
                                                 api_name="/compare")
    images, diffs = columns[:3], columns[3:]
    assert [e["variant"] for e in raw["entries"]] == ["original", "retrieved", "rewritten"]
    assert all(e["request"]["seed"] == 11 and isinstance(e["score"], float) for e in raw["entries"])
    assert all(img["value"] and re.search(r"match \d+%", img["label"]) for img in images)  # the % of every tab
    assert [d["token"] for d in diffs[0]] == ["a lighthouse in a storm "]  # the idea against itself: no change
    assert any(d["class_or_confidence"] == "added" for d in diffs[2])  # the rewrite adds words, shown as such
    assert raw["comparison_id"] in [c[1] for c in earlier["choices"]]
    reopened = client.predict(raw["comparison_id"], api_name="/reopen_comparison")
    assert "Reopened" in reopened[6] and all(img["value"] for img in reopened[:3])


def test_library_stats_models_and_ingest(client) -> None:
    stats_md, raw = client.predict(api_name="/stats")
    assert "prompts" in stats_md and "diffusiondb" in stats_md
    assert any(ix["kind"] == "prompts" and ix["count"] > 4000 for ix in raw["indexes"])
    models = client.predict(api_name="/models")
    assert "CLIP" in models and "SDXL" in models and "starter model" in models
    msg, _, _ = client.predict(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"), None, 0,
                               api_name="/ingest")
    assert "already stored" in msg


def test_the_library_ingests_a_tool_folder_and_a_dataset(client, tmp_path: Path) -> None:
    """The user's images from any tool and a `datasets` folder, through the Library's Ingest; Explore then offers
    and filters by both sources, and a seed past int64 shows whole."""
    from tests.test_datasets import make_dataset
    from tests.toolimages import COMFY_SEED, make_tool_folder

    make_tool_folder(tmp_path / "tools")
    msg, _, _ = client.predict(str(tmp_path / "tools"), None, 0, api_name="/ingest")
    assert "13 images: 10 with a prompt, 2 without, 1 unreadable" in msg and "broken.png" in msg
    msg, _, raw = client.predict(str(make_dataset(tmp_path / "ds-prompts")), None, 0, api_name="/ingest")
    assert "4 new prompts" in msg and "3 new images" in msg
    assert {"user", "ds-prompts"} <= {s for ix in raw["indexes"] for s in ix["by_source"]}
    table, _, _, _ = client.predict("a red fox in fresh snow, national geographic", "prompts", True, 3, "user",
                                    api_name="/search")
    top = table["data"][0]
    assert top[1] == "a red fox in fresh snow, national geographic" and str(top[3]) == str(COMFY_SEED)
    assert top[-1] == "user"


def test_an_uploaded_file_is_named_as_the_user_named_it(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    bad = tmp_path / "bad.csv"
    bad.write_text("title,notes\nno prompt column here,at all\n")
    with pytest.raises(Exception) as err:
        client.predict("", [handle_file(str(bad))], 0, api_name="/ingest")  # uploads are a list (images come many)
    assert "bad.csv has no prompt column" in str(err.value) and "gradio" not in str(err.value)


def test_without_clip_the_page_says_what_is_missing(tmp_path: Path) -> None:
    proc, url = serve(tmp_path / "home", "openai/clip-vit-base-patch32", tmp_path / "models")
    try:
        from gradio_client import Client

        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="python -m studio models --download clip"):
            client.predict("a castle", "prompts", False, 5, api_name="/search")
        with pytest.raises(Exception, match="SDXL model"):  # no SDXL either: what to do, not a trace
            client.predict("a fox", "", 1, 2, 5.0, 64, 64, "Euler", "standard", 1, api_name="/generate")
        assert "download sdxl" in client.predict(api_name="/models")
        if Path(CHROMIUM).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                b = browser(p)
                page = b.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.get_by_text("Not ready").wait_for(timeout=30_000)
                assert "python -m studio models --download clip" in page.inner_text("body")
                banner = page.locator("#models-banner").inner_text()  # one banner: the command, the offline way
                assert "--download clip" in banner and "STUDIO_CLIP_MODEL=" in banner and "STUDIO_SDXL_MODEL=" in banner
                page.get_by_role("tab", name="Create").click()
                assert page.locator("#create-generate").is_disabled()  # what cannot work says so, not fails later
                assert "needs SDXL" in page.locator("#create-generate").inner_text()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "missing-clip.png"), full_page=True)
                b.close()
    finally:
        stop(proc)


def test_only_outputs_and_sample_images_are_served(app: str, tmp_path: Path) -> None:
    allowed = SAMPLE_IMAGES / "2m_first_1k-idx507_from-nobbettt-demo.png"
    assert httpx.get(f"{app}gradio_api/file={allowed}", timeout=10).status_code == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for path in (secret, ROOT / "launch.py", Path("/etc/passwd"), SAMPLE_IMAGES / ".." / "README.md"):
        response = httpx.get(f"{app}gradio_api/file={path}", timeout=10)
        assert response.status_code in (403, 404), path
        assert "private" not in response.text


@pytest.mark.parametrize("args,env", [(["--host", "0.0.0.0"], {}), (["--share"], {}),
                                      (["--host", "0.0.0.0"], {"STUDIO_AUTH": "nopassword"}),
                                      (["--share"], {"SPACE_ID": "someone/prompt-studio"})])
def test_refuses_to_serve_beyond_this_machine_without_credentials(args: list[str], env: dict, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "launch.py", "--port", str(free_port()), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env=os.environ | {"STUDIO_HOME": str(tmp_path)} | env)
    assert out.returncode != 0
    assert "STUDIO_AUTH" in out.stderr and "Traceback" not in out.stderr


def test_a_space_gets_smaller_defaults_and_a_prebuilt_index(sample_studio, tmp_path: Path) -> None:
    from studio.config import Settings
    from studio.firstrun import use_prebuilt_store
    from studio.ui.defaults import ui_defaults

    home = ui_defaults(Settings(), {})
    space = ui_defaults(Settings(), {"SPACE_ID": "someone/prompt-studio"})
    turbo = ui_defaults(Settings(sdxl_model="stabilityai/sdxl-turbo"), {"SPACE_ID": "someone/prompt-studio"})
    assert (home.width, home.steps, home.space) == (1024, 30, False)
    assert (space.width, space.steps, space.space) == (768, 20, True)
    assert (turbo.width, turbo.profile, turbo.steps, turbo.cfg) == (512, "fast", 4, 0.0)
    prebuilt = sample_studio.settings.store_dir  # stands in for data/space-index/store
    fresh = Settings(home=tmp_path / "home", clip_model=sample_studio.settings.clip_model, offline=True)
    assert use_prebuilt_store(fresh, prebuilt) and not use_prebuilt_store(fresh, prebuilt)  # only into an empty home
    from studio.studio import Studio

    copy = Studio(fresh, embedder=sample_studio.embedder)
    assert not copy.is_empty() and copy.search("a castle", "prompts", 3).results
