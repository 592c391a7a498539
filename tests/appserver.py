"""Serving the real app for the app and browser tests: `python launch.py` on 127.0.0.1 in a subprocess;
the browser helpers (chromium, a screenshot, the tiny model's settings typed in)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SMALL = {"steps": 2, "cfg": 5.0, "width": 64, "height": 64}  # the tiny SDXL: seconds, not minutes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path, clip: str, models_dir: Path, sdxl: str | None = None, *, args: tuple[str, ...] = (),
          env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start launch.py on a free port; return once it answers HTTP 200 (models load in the background)."""
    port = free_port()
    env = os.environ | {"STUDIO_HOME": str(home), "STUDIO_CLIP_MODEL": clip, "STUDIO_MODELS_DIR": str(models_dir),
                        "STUDIO_DEVICE": "cpu"} | (env_extra or {})
    if sdxl:
        env["STUDIO_SDXL_MODEL"] = sdxl
    home.parent.mkdir(parents=True, exist_ok=True)
    log_path = home.parent / f"launch-{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"launch.py exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail("launch.py did not answer within 90 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def ready_client(url: str) -> Any:
    """A gradio_client Client, once the first launch has ingested the whole shipped sample."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # the sample's images are ingested last: three searchable images mean it is all in
            if len(client.predict("a castle", "images", False, 3, api_name="/search")[1]) == 3:
                return client
        except Exception:  # CLIP still loading: the handler says "not ready" until then
            pass
        time.sleep(1)
    pytest.fail("the sample was not ingested within 120 s")


def browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


def shot(page: Any, name: str) -> None:
    page.wait_for_timeout(300)  # let the last update paint
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def small_settings(page: Any, accordion: str) -> None:
    """Open a settings accordion and set the tiny model's size and steps (typed into the number boxes)."""
    from playwright.sync_api import expect

    if not page.locator(f"#{accordion} input[aria-label='number input for Width']").is_visible():
        page.locator(f"#{accordion}").get_by_text("Settings").first.click()
        # An accordion mounts its sliders when first opened: a value typed within those milliseconds is
        # reset by the mount (seen 40% of the time at once, never after a second), which no hand is quick enough for.
        page.wait_for_timeout(1000)
    for label, value in (("Width", SMALL["width"]), ("Height", SMALL["height"]), ("Steps", SMALL["steps"])):
        box = page.locator(f"#{accordion} input[aria-label='number input for {label}']")
        box.fill(str(value))
        box.press("Enter")
        expect(box).to_have_value(str(value))


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


def newest_history(page: Any) -> None:
    """History's newest-first list, whatever an earlier test left in its boxes (tests run in any order)."""
    page.get_by_role("tab", name="History").click()
    page.locator("#history-text textarea").fill("")
    box = page.locator("#history-favourites input")
    if box.is_checked():
        box.uncheck()
    page.locator("#history-go").click()
    page.locator("#history-note").get_by_text("newest first").wait_for()


def make_images(url: str, prompt: str = "a lighthouse in a storm", n: int = 2) -> None:
    """Generations of our own in the served app, so a test about History has some whatever ran before it."""
    ready_client(url).predict(prompt, "", 11, SMALL["steps"], SMALL["cfg"], SMALL["width"], SMALL["height"], "Euler",
                              "standard", n, api_name="/generate")
