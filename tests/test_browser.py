"""The real app in a real browser: Debian's chromium driven by Playwright, a screenshot per step
(test-artifacts/browser-*.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.appserver import (ARTIFACTS, SMALL, browser, needs_chromium, ready_client, serve, shot, small_settings,
                             stop)
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


# Prompts whose markup would make a page fetch from another host if it were rendered, not shown as text.
BEACONS = ["a lighthouse in a storm ![b](http://beacon.example/md.png)",
           "a lighthouse in a storm <img src='http://beacon.example/html.png'>",
           "a lighthouse in a storm [click](http://beacon.example/link) <iframe src=http://beacon.example/f>",
           "a lighthouse in a storm <style>@import url(http://beacon.example/css)</style> $$\\href{x}{y}$$"]
OUTSIDE: list[str] = []  # every request the page made to a host other than this machine


@pytest.fixture(scope="module")
def page(app: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from urllib.parse import urlparse

    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    table = tmp_path_factory.mktemp("beacons") / "beacons.csv"
    table.write_text("prompt,url\n" + "\n".join('"' + b.replace('"', '""') + f'",http://beacon.example/img-{i}.png'
                                                for i, b in enumerate(BEACONS)) + "\n")
    Client(app, verbose=False).predict(str(table), None, 0, api_name="/ingest")  # a library full of markup
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1366, "height": 1000})
        page.on("request", lambda r: OUTSIDE.append(r.url)
                if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
                and urlparse(r.url).hostname not in ("127.0.0.1", "localhost") else None)
        page.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)
        page.goto(app)
        yield page
        b.close()


def test_explore_search_shows_prompts_and_images(page: Any) -> None:
    page.get_by_role("tab", name="Explore").click()  # whichever tab the test before left open
    page.locator("#explore-idea textarea").fill("a lighthouse in a storm, oil painting")
    page.locator("#explore-search").click()
    page.locator("#explore-note").get_by_text("10 results").wait_for()
    assert page.locator("#explore-table .virtual-row").count() >= 5
    expect(page.locator("#explore-send")).to_be_disabled()  # nothing picked yet: nothing to send
    page.locator("#explore-table [data-testid='cell-0-1']").click()
    expect(page.locator("#explore-picked textarea")).not_to_have_value("")
    shot(page, "1-explore")
    page.locator("#explore-send").click()  # the picked prompt goes to Create, and Create opens
    expect(page.locator("#create-prompt textarea")).to_have_value(
        page.locator("#explore-picked textarea").input_value())
    expect(page.locator("#create-rewrite-note")).to_contain_text("From Explore")


def test_clicking_an_image_picks_its_prompt_and_settings(page: Any) -> None:
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-idea textarea").fill("a tiny cute chinese mascot snake, warm top light")
    # 7 results, not the 10 the last search's note still says: the gallery is read once this one is in
    results = page.locator("#explore-k input[type=number]")  # (CI once clicked the old one mid-search)
    results.fill("7")
    results.press("Enter")
    page.locator("#explore-search").click()
    page.locator("#explore-note").get_by_text("7 results").wait_for()
    caption = page.locator("#explore-gallery img").first.get_attribute("alt") or ""
    page.locator("#explore-gallery button.thumbnail-item").first.click()
    picked = page.locator("#explore-picked textarea")
    expect(picked).to_have_value(re.compile("^" + re.escape(caption[:40])))  # the picture's own prompt
    shot(page, "1b-explore-image-picked")
    page.locator("#explore-send").click()
    expect(page.locator("#create-prompt textarea")).to_have_value(picked.input_value())
    # DiffusionDB's k_lms has a diffusers scheduler (LMS): Create says what it changed for SDXL.
    expect(page.locator("#create-rewrite-note")).to_contain_text("From Explore")


def test_the_page_reads_at_800_px(page: Any) -> None:
    page.set_viewport_size({"width": 800, "height": 1000})
    try:
        page.get_by_role("tab", name="Explore").click()
        page.locator("#explore-idea textarea").fill("a lighthouse in a storm")
        page.locator("#explore-search").click()
        page.locator("#explore-note").get_by_text("results").wait_for()
        heights = page.eval_on_selector_all("#explore-table th", "els => els.map(e => e.getBoundingClientRect().height)")
        assert heights and max(heights) < 60, heights  # headers on one line, not stacked letters
        shot(page, "10-explore-800px")
        page.get_by_role("tab", name="Create").click()
        shot(page, "11-create-800px")
    finally:
        page.set_viewport_size({"width": 1366, "height": 1000})


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
    expect(page.locator("#create-tokens")).to_contain_text("/ 77 CLIP tokens")
    small_settings(page, "create-settings")
    page.locator("#create-prompt textarea").press("Control+Enter")  # generates, as in AUTOMATIC1111
    page.locator("#create-info").get_by_text("image(s)").wait_for()
    page.locator("#create-gallery img").first.wait_for()
    shot(page, "4-create")


def _pick_row(page: Any, row: int) -> str:
    """Click Explore's row and return its prompt once the Picked box shows it (the note of an earlier search
    can still read "results" while this one's table arrives: a stale click is made again)."""
    cell = page.locator(f"#explore-table [data-testid='cell-{row}-1']")
    for _ in range(5):
        page.wait_for_timeout(1000)
        text = cell.inner_text().strip()
        cell.click()
        try:
            expect(page.locator("#explore-picked textarea")).to_have_value(text, timeout=10_000)
            return text
        except AssertionError:
            continue
    raise AssertionError("the picked prompt never matched the clicked row")


def test_steering_the_rewrite(page: Any) -> None:
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-idea textarea").fill("a lighthouse in a storm, oil painting")
    page.locator("#explore-search").click()
    brought = _pick_row(page, 1)
    page.locator("#explore-add").click()  # one of Explore's prompts joins the LLM's examples
    page.locator("#explore-note").get_by_text("Added to the examples").wait_for()
    page.get_by_role("tab", name="Create").click()
    if not page.locator("#create-note textarea").is_visible():
        page.locator("#create-steer").get_by_text("Steer the rewrite").first.click()
    page.locator("#create-idea textarea").fill("a cat sleeping on a sofa")
    page.locator("#create-note textarea").fill("warmer light, no people")
    page.locator("#create-locked textarea").fill("velvet")
    page.locator("#create-candidates input[type=number]").fill("2")
    page.locator("#create-candidates input[type=number]").press("Enter")
    page.locator("#create-rewrite").click()
    page.locator("#create-rewrite-note").get_by_text("2 candidates below").wait_for()
    examples = page.locator("#create-examples").inner_text()
    assert brought[:40] in examples  # the brought example was shown to the LLM, beside retrieved ones
    texts = [page.locator(f"#create-cand-{i} textarea").input_value() for i in range(2)]
    assert all("velvet" in t for t in texts), texts
    page.locator("#create-cand-use-1").click()
    expect(page.locator("#create-prompt textarea")).to_have_value(texts[1])
    small_settings(page, "create-settings")
    page.locator("#create-generate-all").click()
    page.locator("#create-info").get_by_text("candidates side by side").wait_for()
    assert page.locator("#create-looks img").count() == 2
    shot(page, "15-steering")


def test_sizes_snap_to_multiples_of_8_as_typed(page: Any) -> None:
    page.get_by_role("tab", name="Create").click()
    box = page.locator("#create-settings input[aria-label='number input for Width']")
    if not box.is_visible():
        page.locator("#create-settings").get_by_text("Settings").first.click()
        page.wait_for_timeout(1000)  # see small_settings
    box.fill("100")
    box.press("Enter")
    expect(box).to_have_value("96")
    box.fill(str(SMALL["width"]))
    box.press("Enter")


def _saved_file(info: str) -> Path:
    found = re.search(r"seed \d+: (\S+\.png)", info)
    assert found, info
    return Path(found.group(1))


def test_reuse_from_history_makes_the_same_pixels(page: Any) -> None:
    import numpy as np
    from PIL import Image

    page.get_by_role("tab", name="Create").click()
    page.locator("#create-prompt textarea").fill(BEACONS[0])  # markup in a prompt stays text in History too
    page.locator("#create-negative textarea").fill("blurry")
    small_settings(page, "create-settings")
    page.locator("#create-settings input[aria-label='Seed (-1: random)']").fill("4242")
    page.locator("#create-generate").click()
    page.locator("#create-info").get_by_text("seed 4242:").wait_for()
    first = _saved_file(page.locator("#create-info").inner_text())
    # Somewhere else entirely: another size, seed and negative prompt.
    page.locator("#create-settings input[aria-label='Seed (-1: random)']").fill("-1")
    page.locator("#create-negative textarea").fill("")
    page.get_by_role("tab", name="History").click()
    page.locator("#history-go").click()
    page.locator("#history-note").get_by_text("newest first").wait_for()
    page.locator("#history-gallery button.thumbnail-item").first.click()
    expect(page.locator("#history-details")).to_contain_text("seed 4242")
    expect(page.locator("#history-details")).to_contain_text("](http://beacon.example/md.png)")  # as text,
    expect(page.locator("#history-details a")).to_have_count(0)  # and no bare url made a link (GFM would)
    page.locator("#history-reuse").click()
    expect(page.locator("#create-rewrite-note")).to_contain_text("every setting, seed included")
    expect(page.locator("#create-negative textarea")).to_have_value("blurry")
    page.locator("#create-generate").click()
    expect(page.locator("#create-info")).not_to_contain_text(first.name)  # this run's line, not the last one's
    page.locator("#create-info").get_by_text("seed 4242:").wait_for()
    second = _saved_file(page.locator("#create-info").inner_text())
    assert second != first and np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    shot(page, "12-reuse-same-pixels")


def _shown(page: Any) -> int:
    """How many pictures History says it shows ("3 of your images, newest first. …")."""
    found = re.search(r"(\d+) of your", page.locator("#history-note").inner_text())
    return int(found.group(1)) if found else 0


def test_history_favourite_and_delete(page: Any) -> None:
    page.get_by_role("tab", name="History").click()
    page.locator("#history-go").click()
    page.locator("#history-note").get_by_text("newest first").wait_for()
    before = _shown(page)
    page.locator("#history-gallery button.thumbnail-item").first.click()
    page.locator("#history-favourite").click()
    expect(page.locator("#history-action")).to_contain_text("Marked as a favourite")
    page.locator("#history-favourites input").check()
    expect(page.locator("#history-note")).to_contain_text("1 of your favourites")
    shot(page, "13-history-favourites")
    page.locator("#history-favourites input").uncheck()
    expect(page.locator("#history-note")).to_contain_text(f"{before} of your images")
    page.locator("#history-gallery button.thumbnail-item").first.click()
    page.locator("#history-delete").click()
    expect(page.locator("#history-action")).to_contain_text("Deleted from your library")
    expect(page.locator("#history-note")).to_contain_text(f"{before - 1} of your images")


def test_developer_view_shows_the_raw_json(page: Any) -> None:
    page.get_by_role("tab", name="Explore").click()
    assert not page.get_by_text("Raw result (JSON)").first.is_visible()  # hidden by default
    page.locator("#dev-view input").check()
    expect(page.get_by_text("Raw result (JSON)").first).to_be_visible()
    page.locator("#dev-view input").uncheck()
    expect(page.get_by_text("Raw result (JSON)").first).to_be_hidden()


def test_compare_shows_three_images(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    small_settings(page, "compare-settings")
    page.locator("#compare-idea textarea").fill("a lighthouse in a storm")
    page.locator("#compare-idea textarea").press("Enter")  # Enter compares
    page.locator("#compare-note").get_by_text("Closest to the idea by CLIP").wait_for()
    images = page.locator(".compare-image img")
    assert images.count() == 3
    expect(page.locator("#compare-earlier input")).not_to_have_value("")  # the list has it at once
    shot(page, "5-compare")
    page.locator("#compare-send").click()  # the winner goes to Create in one click
    expect(page.locator("#create-rewrite-note")).to_contain_text("From Compare")
    assert page.locator("#create-prompt textarea").input_value().strip()


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
    fresh = page.context.browser.new_page(viewport={"width": 1366, "height": 1000})  # a new visit: after a run the list holds that comparison already
    try:
        fresh.goto(page.url)
        fresh.get_by_role("tab", name="Compare").click()
        fresh.locator("#compare-reopen").click()
        fresh.locator("#compare-note").get_by_text("Pick one of the earlier comparisons").wait_for()
        shot(fresh, "8-reopen-nothing")
        assert "ValueError" not in fresh.inner_text("body"), fresh.inner_text("body")[-3000:]
        assert _error_badges(fresh) == 0
    finally:
        fresh.close()


def test_reopen_restores_the_idea_settings_and_seed(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-idea textarea").fill("something else entirely")
    page.locator("#compare-settings input[aria-label='Seed (-1: random)']").fill("-1")
    page.locator("#compare-reopen").click()
    page.locator("#compare-note").get_by_text("Reopened").wait_for()
    expect(page.locator("#compare-idea textarea")).to_have_value("a lighthouse in a storm")
    seed = re.search(r"seed (\d+)", page.locator("#compare-note").inner_text())
    assert seed and page.locator("#compare-settings input[aria-label='Seed (-1: random)']").input_value() == seed.group(1)
    expect(page.locator("#compare-settings input[aria-label='number input for Width']")).to_have_value(
        str(SMALL["width"]))


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


def test_nothing_on_the_page_came_from_outside_this_machine(page: Any) -> None:
    """Runs last: every page above (markup-laden prompts in tables, picks, History's details) fetched
    nothing from another host: no beacon, no web font, no CDN."""
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-source input").click()
    page.get_by_role("option", name="all", exact=True).click()
    for beacon in BEACONS:  # each one on top of the table (its own text is its nearest), then picked
        page.locator("#explore-idea textarea").fill(beacon)
        page.locator("#explore-search").click()
        expect(page.locator("#explore-table [data-testid='cell-0-1']")).to_contain_text("beacon.example")
        page.locator("#explore-table [data-testid='cell-0-1']").click()
        expect(page.locator("#explore-picked textarea")).to_have_value(beacon)
        # its library's image url is offered as a link (shown, not loaded)
        expect(page.locator("#explore-link a")).to_have_attribute("href", re.compile(r"^http://beacon\.example/img-"))
    page.wait_for_timeout(1000)
    shot(page, "14-markup-stays-text")
    assert OUTSIDE == [], OUTSIDE
