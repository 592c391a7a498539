"""Create in a real browser: two columns at 1366 px, nothing lost on reload, nothing cut silently
(screenshots at 1366 and 800 px in test-artifacts/browser-create-*.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.appserver import ARTIFACTS, browser, needs_chromium, ready_client, serve, shot, small_settings, stop

pytestmark = needs_chromium
TIMEOUT = 90_000
WIDTHS = (1366, 800)
STOP = re.compile(r"\bstop\b")  # Gradio's class for a red (variant="stop") button


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser-create")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    ready_client(url)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        yield b
        b.close()


@pytest.fixture
def page(chromium: Any, app: str) -> Iterator[Any]:
    """A fresh browser context per test (its own localStorage): no test sees another's saved inputs."""
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    expect.set_options(timeout=TIMEOUT)
    page.goto(app)
    page.get_by_role("tab", name="Create").click()
    page.locator("#create-prompt textarea").wait_for()
    yield page
    context.close()


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found, f"{selector} is not on the page"
    return found


def shots(page: Any, name: str) -> None:
    """The viewport (what the user sees without scrolling) at 1366 and 800 px wide, and the whole page at 1366."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 768})
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"browser-create-{name}-{width}px.png"))
    page.set_viewport_size({"width": 1366, "height": 768})
    shot(page, f"create-{name}-full")


def slow(page: Any, side: int = 128, settings: str = "create-settings") -> None:
    """Settings for a generation of some seconds with the tiny SDXL (time to see it run, cancel or reload)."""
    small_settings(page, settings)
    for label, value in (("Steps", 150), ("Width", side), ("Height", side)):
        box = page.locator(f"#{settings} input[aria-label='number input for {label}']")
        box.fill(str(value))
        box.press("Enter")
        expect(box).to_have_value(str(value))


def run_then_reload(page: Any, tab: str, box: str, text: str, button: str, line: str) -> Any:
    """Type `text`, start the job, wait until it is denoising, reload, come back to `tab`: its status line."""
    page.locator(box).fill(text)
    page.locator(button).click()
    page.locator(line).get_by_text("of 150").wait_for()
    page.reload()
    page.get_by_role("tab", name=tab).click()
    return page.locator(line)


def test_results_sit_beside_the_settings_in_the_first_screen(page: Any) -> None:
    settings, gallery = box(page, "#create-settings"), box(page, "#create-gallery")
    go, preview = box(page, "#create-generate"), box(page, "#create-preview")
    assert gallery["y"] < 768 and preview["y"] < 768 and go["y"] < 768, (gallery, preview, go)  # no scrolling
    assert gallery["x"] >= settings["x"] + settings["width"] - 1, (settings, gallery)  # beside, not below
    expect(page.locator("#create-settings input[aria-label='number input for Width']")).to_be_visible()
    # Cancel is red only while something runs.
    expect(page.locator("#create-cancel")).not_to_have_class(STOP)
    shots(page, "two-columns")
    page.set_viewport_size({"width": 800, "height": 768})  # one column: the results under the settings
    page.wait_for_timeout(300)
    assert box(page, "#create-gallery")["y"] > box(page, "#create-settings")["y"]
    page.set_viewport_size({"width": 1366, "height": 768})


def test_cancel_turns_red_while_a_generation_runs(page: Any) -> None:
    slow(page, side=256)  # long enough to click Cancel mid-way on an idle machine too
    page.locator("#create-prompt textarea").fill("a red fox in the snow")
    page.locator("#create-generate").click()
    expect(page.locator("#create-cancel")).to_have_class(STOP)
    expect(page.locator("#create-info")).to_contain_text("of 150")  # denoising (Gradio's bar may cover the line)
    page.screenshot(path=str(ARTIFACTS / "browser-create-running-1366px.png"))
    page.locator("#create-cancel").click()
    expect(page.locator("#create-info")).to_contain_text("Cancelled after")
    expect(page.locator("#create-cancel")).not_to_have_class(STOP)
    shots(page, "cancelled")


def test_typed_prompt_and_settings_survive_a_reload(page: Any) -> None:
    page.locator("#create-idea textarea").fill("a harbour at dawn")
    page.locator("#create-prompt textarea").fill("a harbour at dawn, oil on canvas, soft mist")
    page.locator("#create-negative textarea").fill("people, text")
    small_settings(page, "create-settings")
    seed = page.locator("#create-settings input[aria-label='Seed (-1: random)']")
    seed.fill("777")
    seed.press("Tab")
    page.wait_for_timeout(1000)  # the last change is saved on its own round trip
    page.reload()
    page.get_by_role("tab", name="Create").click()
    expect(page.locator("#create-prompt textarea")).to_have_value("a harbour at dawn, oil on canvas, soft mist")
    expect(page.locator("#create-negative textarea")).to_have_value("people, text")
    expect(page.locator("#create-idea textarea")).to_have_value("a harbour at dawn")
    expect(seed).to_have_value("777")
    expect(page.locator("#create-settings input[aria-label='number input for Width']")).to_have_value("64")
    shots(page, "after-reload")


def test_a_generation_running_at_a_reload_is_shown_when_the_page_comes_back(page: Any) -> None:
    slow(page)
    info = run_then_reload(page, "Create", "#create-prompt textarea", "a lantern on a jetty", "#create-generate",
                           "#create-info")
    expect(info).to_contain_text("before the reload")
    shots(page, "job-after-reload")
    expect(info).to_contain_text("finished: in History")
    page.locator("#create-gallery img").first.wait_for()  # its pictures too


def test_a_long_paste_says_how_much_was_cut_and_the_limit(page: Any) -> None:
    words = ("a lighthouse on a cliff in a storm with gulls " * 1300)[:54_900]
    page.locator("#create-prompt textarea").fill(words)
    note = page.locator("#create-rewrite-note")
    expect(note).to_contain_text("54,900")
    expect(note).to_contain_text("10,000")
    kept = page.locator("#create-prompt textarea").input_value()
    assert len(kept) <= 10_000 and words.startswith(kept) and words[len(kept)] == " ", len(kept)  # not mid-word
    page.locator("#create-idea textarea").fill(words)
    expect(note).to_contain_text("1,000")
    assert len(page.locator("#create-idea textarea").input_value()) <= 1_000
    shots(page, "long-paste")


def test_a_comparison_running_at_a_reload_is_said_then_shown(page: Any) -> None:
    """Issue 23 part 2 item 4 for Compare: the comparison goes on; the page that comes back says so, then shows it."""
    page.get_by_role("tab", name="Compare").click()
    slow(page, settings="compare-settings")
    note = run_then_reload(page, "Compare", "#compare-idea textarea", "a lighthouse in a storm", "#compare-go",
                           "#compare-note")
    expect(note).to_contain_text("The comparison started before the reload is still running")
    shots(page, "compare-after-reload")
    expect(note).to_contain_text("finished: below, and in History")
    expect(page.locator("#compare-idea textarea")).to_have_value("a lighthouse in a storm")
    assert page.locator(".compare-image img").count() == 3  # its three pictures, reopened
    expect(page.locator("#compare-send")).to_be_enabled()


def test_a_comparison_waiting_for_the_gpu_at_a_reload_is_not_lost_without_a_word(page: Any) -> None:
    """A Compare clicked while a generation holds the GPU waits; a reload takes a waiting job with its page
    (Gradio drops it), and the page that comes back says so instead of showing nothing."""
    slow(page, side=512)  # holds the GPU past the Compare set up below, the reload and a Cancel (256 px: ~7 s here)
    page.locator("#create-prompt textarea").fill("a kite over a beach")
    page.locator("#create-generate").click()
    page.locator("#create-info").get_by_text("of 150").wait_for()
    page.get_by_role("tab", name="Compare").click()
    small_settings(page, "compare-settings")
    page.locator("#compare-idea textarea").fill("a kite over a beach")
    page.locator("#compare-go").click()
    page.wait_for_timeout(1500)  # queued behind the generation (one GPU job at a time)
    assert "Rewriting" not in page.locator("#compare-note").inner_text()  # it has not started
    page.reload()
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-note")).to_contain_text("waiting for its turn")
    expect(page.locator("#compare-note")).to_contain_text("press Compare again")
    expect(page.locator("#compare-idea textarea")).to_have_value("a kite over a beach")  # what was typed stays
    shots(page, "compare-dropped-at-reload")
    page.get_by_role("tab", name="Create").click()
    info = page.locator("#create-info")
    expect(info).to_contain_text("before the reload is still running")  # the generation went on
    page.locator("#create-cancel").click()  # and this page's Cancel stops it (a new session, the same browser)
    expect(info).to_contain_text("before the reload was cancelled")
