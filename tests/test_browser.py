"""The real app in a real browser: Debian's chromium driven by Playwright, a screenshot per step
(test-artifacts/browser-*.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.appserver import ARTIFACTS, SMALL, browser, needs_chromium, ready_client, serve, stop
from tests.conftest import SAMPLE_IMAGES

pytestmark = needs_chromium
TIMEOUT = 90_000  # ms; the first rewrite loads the LLM, on 2 cores shared with the sample ingest


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    ready_client(url)  # the sample is in before the page is driven
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def page(app: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)
        page.goto(app)
        yield page
        b.close()


def shot(page: Any, name: str) -> None:
    page.wait_for_timeout(300)  # let the last update paint
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def small_settings(page: Any, accordion: str) -> None:
    """Open a settings accordion and set the tiny model's size and steps (typed into the number boxes)."""
    page.locator(f"#{accordion}").get_by_text("Settings").first.click()
    for label, value in (("Width", SMALL["width"]), ("Height", SMALL["height"]), ("Steps", SMALL["steps"])):
        box = page.locator(f"#{accordion} input[aria-label='number input for {label}']")
        box.fill(str(value))
        box.press("Enter")


def test_explore_search_shows_prompts_and_images(page: Any) -> None:
    page.locator("#explore-idea textarea").fill("a lighthouse in a storm, oil painting")
    page.locator("#explore-search").click()
    page.locator("#explore-note").get_by_text("10 results").wait_for()
    assert page.locator("#explore-table .virtual-row").count() >= 5
    page.locator("#explore-table [data-testid='cell-0-1']").click()
    expect(page.locator("#explore-picked textarea")).not_to_have_value("")
    shot(page, "1-explore")
    page.locator("#explore-send").click()  # the picked prompt goes to Create, and Create opens
    expect(page.locator("#create-prompt textarea")).to_have_value(
        page.locator("#explore-picked textarea").input_value())


def test_reverse_an_uploaded_sample_image(page: Any) -> None:
    page.get_by_role("tab", name="Reverse").click()
    page.locator("#reverse-image input[type=file]").set_input_files(
        str(SAMPLE_IMAGES / "2m-part-000001_from-poloclub-example-loading.png"))
    page.locator("#reverse-go").click()
    page.locator("#reverse-note").get_by_text("results").wait_for()
    first = page.locator("#reverse-table [data-testid='cell-0-1']").inner_text()
    assert first.startswith("symmetry!! a tiny cute chinese")  # the stored copy of this very image
    shot(page, "2-reverse")


def test_a_bad_upload_is_a_readable_error(page: Any, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a picture")
    page.get_by_role("tab", name="Reverse").click()
    clear = page.locator("#reverse-image").get_by_role("button", name="Clear")
    if clear.count():
        clear.first.click()
    page.locator("#reverse-image input[type=file]").set_input_files(str(fake))
    page.locator("#reverse-go").click()
    page.get_by_text("Could not read notes.png as an image").first.wait_for()
    assert "Traceback" not in page.inner_text("body")
    shot(page, "3-bad-upload")


def test_create_rewrites_then_generates(page: Any) -> None:
    page.get_by_role("tab", name="Create").click()
    page.locator("#create-idea textarea").fill("a cat sleeping on a sofa")
    page.locator("#create-rewrite").click()
    page.locator("#create-rewrite-note").get_by_text("CLIP tokens").wait_for()
    assert page.locator("#create-prompt textarea").input_value().strip()
    small_settings(page, "create-settings")
    page.locator("#create-generate").click()
    page.locator("#create-info").get_by_text("image(s)").wait_for()
    page.locator("#create-gallery img").first.wait_for()
    shot(page, "4-create")


def test_compare_shows_three_images(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-idea textarea").fill("a lighthouse in a storm")
    small_settings(page, "compare-settings")
    page.locator("#compare-go").click()
    page.locator("#compare-note").get_by_text("Closest to the idea by CLIP").wait_for()
    images = page.locator(".compare-image img")
    assert images.count() == 3
    shot(page, "5-compare")


def test_history_and_library(page: Any) -> None:
    page.get_by_role("tab", name="History").click()
    page.get_by_text("of your images, newest first").wait_for()
    page.locator("#history-gallery img").first.wait_for()
    shot(page, "6-history")
    page.get_by_role("tab", name="Library").click()
    page.get_by_text("What the library holds").wait_for()
    page.get_by_text("CLIP (search)").wait_for()
    shot(page, "7-library")


def _error_badges(page: Any) -> int:
    """Gradio's per-component "Error" status badges on the page (its toasts, which fade, not counted)."""
    return page.evaluate("""() => [...document.querySelectorAll('.error')].filter(e =>
        e.offsetParent !== null && e.textContent.trim() === 'Error' && !e.closest('[class*="toast"]')).length""")


def test_a_failed_rewrite_keeps_the_prompt_and_says_why_under_it(page: Any) -> None:
    page.get_by_role("tab", name="Create").click()
    typed = "my own prompt, oil painting, golden hour"
    page.locator("#create-prompt textarea").fill(typed)
    page.locator("#create-idea textarea").fill("   ")
    page.locator("#create-rewrite").click()
    page.locator("#create-rewrite-note").get_by_text("Type an idea to rewrite").wait_for()
    page.wait_for_timeout(11_000)  # past the toast's life: the message stays where it was said
    expect(page.locator("#create-rewrite-note")).to_contain_text("Type an idea to rewrite")
    expect(page.locator("#create-prompt textarea")).to_have_value(typed)
    assert _error_badges(page) == 0
    shot(page, "7-failed-rewrite")


def test_reopen_with_nothing_picked_says_what_to_pick(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Reopen").click()
    page.locator("#compare-note").get_by_text("Pick one of the earlier comparisons").wait_for()
    shot(page, "8-reopen-nothing")
    assert "ValueError" not in page.inner_text("body"), page.inner_text("body")[-3000:]
    assert _error_badges(page) == 0


def test_undo_brings_back_the_prompt_a_rewrite_replaced(page: Any) -> None:
    page.get_by_role("tab", name="Create").click()
    mine = "a prompt I wrote myself, ink drawing"
    page.locator("#create-prompt textarea").fill(mine)
    page.locator("#create-idea textarea").fill("a lighthouse in a storm")
    page.locator("#create-rewrite").click()
    page.locator("#create-rewrite-note").get_by_text("CLIP tokens").wait_for()
    expect(page.locator("#create-prompt textarea")).not_to_have_value(mine)
    page.locator("#create-undo").click()
    expect(page.locator("#create-prompt textarea")).to_have_value(mine)
    shot(page, "9-undo-rewrite")
