"""The real app: `python launch.py` on 127.0.0.1, called with gradio_client and driven in headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import ROOT, SAMPLE_IMAGES

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, clip: str, models_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = os.environ | {"STUDIO_HOME": str(home), "STUDIO_CLIP_MODEL": clip, "STUDIO_MODELS_DIR": str(models_dir)}
    log = open(home.parent / f"launch-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"launch.py exited: {(home.parent / f'launch-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("launch.py did not answer within 90 s")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[str]:
    """The studio on a fresh STUDIO_HOME: it ingests the shipped sample on its own, in the background."""
    base = tmp_path_factory.mktemp("app")
    proc, url = _serve(base / "home", str(tiny_clip_dir), base / "models")
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def client(app: str):
    from gradio_client import Client

    client = Client(app, verbose=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # first launch: wait until the sample ingest has finished
        try:
            if _sample_done(client):
                return client
        except Exception:  # CLIP still loading: the handler says "not ready" until then
            pass
        time.sleep(1)
    pytest.fail("the sample was not ingested within 120 s")


def _sample_done(client) -> bool:
    """The sample's images are ingested last, so three searchable images mean the whole sample is in."""
    gallery = client.predict("a castle", "images", False, 3, api_name="/search")[1]
    return len(gallery) == 3


def test_search_and_reverse_through_gradio_client(client) -> None:
    from gradio_client import handle_file

    table, gallery, note, raw = client.predict("cyberpunk coral emperor, highly detailed, digital painting, "
                                               "trending on artstation, concept art, sharp focus, illustration, "
                                               "art by artgerm and greg rutkowski and magali villeneuve",
                                               "prompts", False, 5, api_name="/search")
    assert table["data"][0][1].startswith("cyberpunk coral emperor") and "5 results" in note
    assert {"id", "prompt", "distance", "metadata"} <= raw["results"][0].keys()
    image = SAMPLE_IMAGES / "2m-part-000001_from-poloclub-example-loading.png"
    table, gallery, note, raw = client.predict(handle_file(str(image)), False, 3, api_name="/reverse")
    assert table["data"][0][1].startswith("symmetry!! a tiny cute chinese") and table["data"][0][3] == 75054762
    assert len(gallery) == 3


def test_bad_input_is_a_message_not_a_trace(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    with pytest.raises(Exception, match="Type an idea"):
        client.predict("   ", "prompts", False, 5, api_name="/search")
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(fake)), False, 3, api_name="/reverse")
    assert "Traceback" not in str(err.value)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_search_box_in_a_real_browser(client, app: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app)
        page.get_by_label("Idea").fill("a lighthouse in a storm, oil painting")
        page.get_by_role("button", name="Search").click()
        page.get_by_text("10 results").wait_for(timeout=30_000)
        assert page.locator("table").first.inner_text().count("\n") >= 5
        page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
        browser.close()


def test_without_clip_the_page_says_what_is_missing(tmp_path: Path) -> None:
    proc, url = _serve(tmp_path / "home", "openai/clip-vit-base-patch32", tmp_path / "models")
    try:
        from gradio_client import Client

        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="python -m studio models --download clip"):
            client.predict("a castle", "prompts", False, 5, api_name="/search")
        if Path(CHROMIUM).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(url)
                page.get_by_text("Not ready").wait_for(timeout=30_000)
                assert "python -m studio models --download clip" in page.inner_text("body")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "missing-clip.png"), full_page=True)
                browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


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
                                      (["--host", "0.0.0.0"], {"STUDIO_AUTH": "nopassword"})])
def test_refuses_to_serve_beyond_this_machine_without_credentials(args: list[str], env: dict, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "launch.py", "--port", str(_free_port()), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env=os.environ | {"STUDIO_HOME": str(tmp_path)} | env)
    assert out.returncode != 0
    assert "STUDIO_AUTH" in out.stderr and "Traceback" not in out.stderr
