"""The Library, Compare's readability, the settings helper and the offer of real pictures, driven in Debian's
chromium at 1366 and 800 px (test-artifacts/browser-library-*.png)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image, PngImagePlugin
from playwright.sync_api import expect

from tests.appserver import ARTIFACTS, browser, needs_chromium, ready_client, serve, shot, small_settings, stop

pytestmark = needs_chromium
TIMEOUT = 120_000  # ms: the first rewrite loads the LLM on 2 shared cores


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("browser-library")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    try:
        ready_client(url)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            b = browser(p)
            page = b.new_page(viewport={"width": 1366, "height": 1000})
            page.set_default_timeout(TIMEOUT)
            expect.set_options(timeout=TIMEOUT)
            page.goto(url)
            page.locator("#explore-idea textarea").wait_for()
            yield page
            b.close()
    finally:
        stop(proc)


def _both(page: Any, name: str) -> None:
    """A screenshot at 1366 px and one at 800 px."""
    shot(page, f"library-{name}-1366")
    page.set_viewport_size({"width": 800, "height": 1000})
    try:
        page.wait_for_timeout(500)
        shot(page, f"library-{name}-800")
    finally:
        page.set_viewport_size({"width": 1366, "height": 1000})


def _png(path: Path, prompt: str, colour: tuple[int, int, int]) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x48")
    Image.new("RGB", (64, 48), colour).save(path, pnginfo=info)
    return path


def test_the_library_takes_uploads_and_removes_a_source(page: Any, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Library").click()
    folder = tmp_path / "zipped.zip"
    with zipfile.ZipFile(folder, "w") as zf:
        zf.write(_png(tmp_path / "z.png", "a fox in the snow", (240, 240, 250)), "trip/z.png")
    table = tmp_path / "mylib.jsonl"
    table.write_text('{"prompt": "a lighthouse made of glass, at night"}\n')
    files = [_png(tmp_path / "castle.png", "a castle on a hill at dawn", (200, 80, 40)), folder, table]
    page.locator("#library-upload input[type=file]").set_input_files([str(f) for f in files])
    page.locator("#library-ingest").click()
    note = page.locator("#library-note")
    expect(note).to_contain_text("mylib.jsonl: 1 row -> 1 new prompt,")
    expect(note).to_contain_text("castle.png: 1 image: 1 with a prompt")
    expect(note).to_contain_text("zipped.zip: 1 image")
    assert "1 rows" not in note.inner_text()
    expect(page.locator("#library-stats")).to_contain_text("mylib: 1")
    _both(page, "1-uploads")

    page.locator("#library-remove-box").get_by_text("Remove a source").click()
    page.locator("#library-remove-source input").click()
    page.get_by_role("option", name="mylib").click()
    page.locator("#library-remove").click()  # not ticked: nothing happens but the note says what would
    expect(note).to_contain_text("Nothing was removed")
    expect(page.locator("#library-stats")).to_contain_text("mylib: 1")
    page.locator("#library-remove-confirm input").check()
    page.locator("#library-remove").click()
    expect(note).to_contain_text("Removed mylib: 1 prompt and 0 images")
    expect(page.locator("#library-stats")).not_to_contain_text("mylib")
    expect(page.locator("#library-stats")).to_contain_text("user: 2")  # the other uploads are untouched
    expect(page.locator("#library-remove-confirm input")).not_to_be_checked()
    _both(page, "2-removed")


def test_tables_keep_their_words_whole_and_explore_its_columns_at_800_px(page: Any) -> None:
    page.set_viewport_size({"width": 800, "height": 1000})
    try:
        page.get_by_role("tab", name="Library").click()
        page.locator("#library-stats td").first.wait_for()
        # A one-word cell or heading on one line: 'records', 'prompts', 'source' are never split.
        tall = page.eval_on_selector_all(
            "#library-stats th, #library-stats td, #library-models th",
            "els => els.filter(e => e.innerText.trim() && !/\\s/.test(e.innerText.trim()) && !e.innerText.includes('/'))"
            ".map(e => { const r = document.createRange(); r.selectNodeContents(e);"
            " return [e.innerText, new Set([...r.getClientRects()].map(q => Math.round(q.top))).size]; })"
            ".filter(([t, lines]) => lines > 1)")
        assert not tall, tall
        shot(page, "library-3-tables-800")
        page.get_by_role("tab", name="Explore").click()
        page.locator("#explore-idea textarea").fill("a lighthouse in a storm")
        page.locator("#explore-search").click()
        page.locator("#explore-note").get_by_text("results").wait_for()
        seen = page.eval_on_selector_all(
            "#explore-table th", "els => els.filter(e => getComputedStyle(e).display !== 'none')"
            ".map(e => [e.innerText.replace('⋮', '').trim(), e.getBoundingClientRect().right])")
        names = [n for n, _ in seen]
        assert names[:2] == ["match", "prompt"] and {"seed", "size"} <= set(names), seen
        assert all(right <= 800 for _, right in seen), seen  # all in view, no sideways scroll needed
        shot(page, "library-4-explore-800")
    finally:
        page.set_viewport_size({"width": 1366, "height": 1000})


def test_compare_reads_in_percent_with_pictures_of_one_height(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    small_settings(page, "compare-settings")
    page.locator("#compare-idea textarea").fill("a lighthouse in a storm, oil painting, dramatic waves on rocks")
    page.locator("#compare-idea textarea").press("Enter")
    page.locator("#compare-note").get_by_text("Closest to the idea by CLIP").wait_for()
    labels = page.eval_on_selector_all(".compare-image", "els => els.map(e => e.innerText)")
    assert all("match" in t and "%" in t and "CLIP 0." not in t for t in labels), labels
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(500)
        heights = page.eval_on_selector_all(".compare-image img", "els => els.map(e => e.getBoundingClientRect().height)")
        assert len(heights) == 3 and max(heights) - min(heights) < 1, heights
        breaks = page.eval_on_selector_all(".compare-diff span", "els => els.map(e => getComputedStyle(e).wordBreak)")
        assert breaks and set(breaks) == {"normal"}, set(breaks)
        shot(page, f"library-5-compare-{width}")
    page.set_viewport_size({"width": 1366, "height": 1000})


def test_offline_the_first_run_and_the_library_say_how_to_get_real_pictures(page: Any) -> None:
    expect(page.locator("#status-hub")).to_be_visible()  # the sample's 3 images: real ones are offered
    expect(page.locator("#status-hub-note")).to_contain_text("python -m studio ingest hub:2m:1-2")
    expect(page.locator("#status-hub")).to_be_disabled()  # tests run offline: no click can fail
    page.get_by_role("tab", name="Library").click()
    expect(page.locator("#library-hub-note")).to_contain_text("offline")
    expect(page.locator("#library-hub")).to_contain_text("needs a connection")
    _both(page, "6-offer")


def test_suggested_settings_keep_a_small_size(page: Any, tmp_path: Path) -> None:
    """Neighbours made at 512×768 suggest SDXL's 832×1216 for that shape; a CPU set to 64×64 keeps 64×64."""
    cats = tmp_path / "cats.csv"
    cats.write_text("prompt,width,height,steps,cfg\n" + "".join(
        f'"a cat sleeping on a sofa, {style}",512,768,30,7\n' for style in
        ("oil painting", "watercolor", "photo", "pencil sketch", "digital art", "pastel")))
    page.get_by_role("tab", name="Library").click()
    page.locator("#library-path textarea, #library-path input").first.fill(str(cats))
    page.locator("#library-ingest").click()
    expect(page.locator("#library-note")).to_contain_text("6 new prompts")
    page.get_by_role("tab", name="Create").click()
    small_settings(page, "create-settings")  # 64×64: what this CPU serves
    page.locator("#create-idea textarea").fill("a cat sleeping on a sofa")
    page.locator("#create-rewrite").click()
    page.locator("#create-rewrite-note").get_by_text("CLIP tokens").wait_for()
    page.get_by_role("button", name="Use suggested settings (from the retrieved neighbours)").click()
    expect(page.locator("#create-rewrite-note")).to_contain_text("within your 64×64")
    for label in ("Width", "Height"):
        box = page.locator(f"#create-settings input[aria-label='number input for {label}']")
        expect(box).to_have_value("64")
    _both(page, "7-suggested")
