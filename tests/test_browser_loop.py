"""Explore, Reverse and History in a real browser (issue 23 part 2): a dropped image's own metadata first, seeds
exact on the page, one message per error, History's delete/undo and favourite toggle. Screenshots at 1366 and
800 px in test-artifacts/browser-loop-*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.appserver import ARTIFACTS, SMALL, browser, needs_chromium, newest_history, ready_client, serve, stop
from tests.toolimages import FOOOCUS_SEED, make_tool_folder

pytestmark = needs_chromium
TIMEOUT = 90_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[tuple[str, Path]]:
    """The app with the sample, another tools' folder ingested (source user) and two generations of ours."""
    base = tmp_path_factory.mktemp("browser-loop")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    client = ready_client(url)
    tools = base / "tools"
    make_tool_folder(tools)
    client.predict(str(tools), None, 0, api_name="/ingest")
    client.predict("a red fox in the snow", "", 7, SMALL["steps"], SMALL["cfg"], SMALL["width"], SMALL["height"],
                   "Euler", "standard", 2, api_name="/generate")
    yield url, tools
    stop(proc)


@pytest.fixture(scope="module")
def page(app: tuple[str, Path]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1366, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)
        page.goto(app[0])
        page.locator("#explore-idea textarea").wait_for()
        yield page
        b.close()


def shots(page: Any, name: str) -> None:
    """The page as it is, at 1366 and at 800 px wide."""
    for width in (1366, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / f"browser-loop-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 1000})


def error_pills(page: Any) -> int:
    """Gradio's "Error" badges over components (not toasts)."""
    return page.evaluate("""() => [...document.querySelectorAll('.error')].filter(e =>
        e.offsetParent !== null && e.textContent.trim() === 'Error' && !e.closest('[class*="toast"]')).length""")


def toasts(page: Any) -> int:
    return page.locator("[data-testid='toast-body']").count()


def drop(page: Any, path: Path) -> None:
    page.get_by_role("tab", name="Reverse").click()
    page.locator("#reverse-image input[type=file]").set_input_files(str(path))


def test_a_dropped_image_shows_its_own_prompt_then_its_neighbours(page: Any, app: tuple[str, Path]) -> None:
    drop(page, app[1] / "00001-3405691582.png")  # AUTOMATIC1111's PNG: `parameters`
    info = page.locator("#reverse-info")
    expect(info).to_contain_text("AUTOMATIC1111")
    expect(info).to_contain_text("a lighthouse on a cliff, oil painting")
    expect(info).to_contain_text("blurry, lowres")
    expect(info).to_contain_text("seed 3405691582")
    page.locator("#reverse-note").get_by_text("results").wait_for()  # the neighbours follow, without a click
    assert page.locator("#reverse-table .virtual-row").count() >= 1
    # the info box comes before the neighbours on the page
    assert info.bounding_box()["y"] < page.locator("#reverse-table").bounding_box()["y"]
    shots(page, "reverse-png-info")
    page.locator("#reverse-info-send").click()
    expect(page.locator("#create-prompt textarea")).to_have_value("a lighthouse on a cliff, oil painting")
    expect(page.locator("#create-negative textarea")).to_have_value("blurry, lowres")
    expect(page.locator("#create-rewrite-note")).to_contain_text("dropped image")
    seed = page.get_by_label("Seed (-1: random)")
    if not seed.is_visible():
        page.locator("#create-settings").get_by_text("Settings").first.click()
    expect(seed).to_have_value("3405691582")
    shots(page, "reverse-png-info-in-create")


def test_a_fooocus_seed_reads_exactly_as_written(page: Any, app: tuple[str, Path]) -> None:
    drop(page, app[1] / "2024-05-01_12-00-00_1234.png")
    expect(page.locator("#reverse-info")).to_contain_text(f"seed {FOOOCUS_SEED}")
    page.get_by_role("tab", name="Explore").click()
    source = page.locator("#explore-source input")
    source.fill("all")
    source.press("Enter")
    page.locator("#explore-idea textarea").fill("a smiling goldfish")
    page.locator("#explore-search").click()
    page.locator("#explore-note").get_by_text("results").wait_for()
    seeds = [page.locator(f"#explore-table [data-testid='cell-{i}-3']").inner_text().strip()
             for i in range(page.locator("#explore-table .virtual-row").count())]
    assert FOOOCUS_SEED in seeds, seeds  # not 6952411511246973000
    row = seeds.index(FOOOCUS_SEED)
    page.locator(f"#explore-table [data-testid='cell-{row}-1']").click()
    expect(page.locator("#explore-picked textarea")).to_have_value("a smiling goldfish")
    shots(page, "explore-exact-seed")
    page.locator("#explore-send").click()
    expect(page.locator("#create-rewrite-note")).to_contain_text(f"not its seed {FOOOCUS_SEED}")


def test_an_empty_search_is_said_once_and_keeps_the_results(page: Any) -> None:
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-idea textarea").fill("a lighthouse in a storm")
    page.locator("#explore-search").click()
    page.locator("#explore-note").get_by_text("results").wait_for()
    rows = page.locator("#explore-table .virtual-row").count()
    page.locator("#explore-idea textarea").fill("   ")
    page.locator("#explore-search").click()
    expect(page.locator("#explore-note")).to_contain_text("Type an idea")
    page.wait_for_timeout(1500)
    assert toasts(page) == 0 and error_pills(page) == 0
    assert page.locator("#explore-table .virtual-row").count() == rows  # the earlier results stay
    shots(page, "explore-empty-search")


def test_a_non_image_in_reverse_clears_the_old_results_and_says_why_once(page: Any, app: tuple[str, Path],
                                                                         tmp_path: Path) -> None:
    drop(page, app[1] / "00001-3405691582.png")
    page.locator("#reverse-note").get_by_text("results").wait_for()
    page.locator("#reverse-table [data-testid='cell-0-1']").click()
    expect(page.locator("#reverse-send")).to_be_enabled()
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a picture")
    page.locator("#reverse-image input[type=file]").set_input_files(str(fake))  # dropped over the last one
    expect(page.locator("#reverse-note")).to_contain_text("Could not read notes.png as an image")
    page.wait_for_timeout(1500)
    assert toasts(page) == 0 and error_pills(page) == 0
    assert page.locator("#reverse-table .virtual-row").count() == 0  # the last image's results went with it
    expect(page.locator("#reverse-info")).to_be_hidden()
    expect(page.locator("#reverse-picked textarea")).to_have_value("")
    expect(page.locator("#reverse-send")).to_be_disabled()
    shots(page, "reverse-not-an-image")


def _shown(page: Any) -> int:
    found = re.search(r"(\d+) of your", page.locator("#history-note").inner_text())
    return int(found.group(1)) if found else 0


def test_history_favourite_toggle_delete_and_undo(page: Any) -> None:
    newest_history(page)
    before = _shown(page)
    fav, remove = page.locator("#history-favourite"), page.locator("#history-delete")
    expect(fav).to_be_disabled()  # nothing picked: nothing to act on
    page.locator("#history-gallery button.thumbnail-item").first.click()
    expect(fav).to_have_text("☆ Favourite")
    fav.click()
    expect(fav).to_have_text("★ Favourite")
    shots(page, "history-favourite-on")
    fav.click()
    expect(fav).to_have_text("☆ Favourite")
    remove.click()
    expect(page.locator("#history-action")).to_contain_text("Deleted from your library")
    expect(page.locator("#history-note")).to_contain_text(f"{before - 1} of your images")
    expect(page.locator("#history-details")).to_contain_text("Click an image")  # the selection cleared
    expect(page.locator("#history-gallery .thumbnail-small")).to_have_count(0)  # the grid, not a full-size view
    for button in ("#history-reuse", "#history-add", "#history-favourite", "#history-delete"):
        expect(page.locator(button)).to_be_disabled()
    shots(page, "history-deleted")
    page.locator("#history-undo").click()
    expect(page.locator("#history-action")).to_contain_text("Restored")
    expect(page.locator("#history-note")).to_contain_text(f"{before} of your images")
    expect(page.locator("#history-undo")).to_be_hidden()
    shots(page, "history-restored")


def test_history_text_that_matches_nothing_says_so(page: Any) -> None:
    page.get_by_role("tab", name="History").click()
    page.locator("#history-text textarea").fill("zzqx")
    page.locator("#history-go").click()
    expect(page.locator("#history-note")).to_contain_text("None of your images matches")
    assert page.locator("#history-gallery button.thumbnail-item").count() == 0
    shots(page, "history-no-match")
    page.locator("#history-text textarea").fill("red fox")
    page.locator("#history-go").click()
    expect(page.locator("#history-note")).to_contain_text("closest to the text")


@pytest.mark.parametrize("tab,box,button,line,said", [
    ("Create", "#create-prompt textarea", "#create-generate", "#create-info", "prompt"),
    ("Compare", "#compare-idea textarea", "#compare-go", "#compare-note", "idea"),
    ("Grid", "#grid-idea textarea", "#grid-go", "#grid-note", "idea"),
    ("Library", "#library-path textarea", "#library-ingest", "#library-note", "no-such-folder"),
])
def test_every_tab_says_an_error_once_in_its_own_line(page: Any, tab: str, box: str, button: str, line: str,
                                                       said: str) -> None:
    """Issue 23 part 2 item 6 in the tabs that run jobs: the tab's line says it, no red toast over it."""
    page.reload()
    page.get_by_role("tab", name=tab).click()
    page.locator(box).fill("/no-such-folder/at-all" if tab == "Library" else "   ")
    page.locator(button).click()
    expect(page.locator(line)).to_contain_text(said, ignore_case=True)
    page.wait_for_timeout(1500)
    assert toasts(page) == 0 and error_pills(page) == 0, page.locator(line).inner_text()
    shots(page, f"{tab.lower()}-error-once")


def test_an_image_dropped_in_create_brings_its_own_prompt_and_settings(page: Any, app: tuple[str, Path],
                                                                       tmp_path: Path) -> None:
    """Issue 23 part 2 item 2, in Create: the file's PNG Info fills the prompt, negative prompt and settings; a
    picture that carries none, or a file that is no picture, says so under the prompt and changes nothing."""
    page.reload()
    page.get_by_role("tab", name="Create").click()
    page.locator("#create-png").get_by_text("Read an image's prompt").click()
    drop_zone = page.locator("#create-png-drop input[type=file]")
    drop_zone.set_input_files(str(app[1] / "00001-3405691582.png"))  # AUTOMATIC1111's PNG
    expect(page.locator("#create-prompt textarea")).to_have_value("a lighthouse on a cliff, oil painting")
    expect(page.locator("#create-negative textarea")).to_have_value("blurry, lowres")
    expect(page.locator("#create-rewrite-note")).to_contain_text("dropped image")
    expect(page.get_by_label("Seed (-1: random)")).to_have_value("3405691582")
    shots(page, "create-png-info")
    plain = tmp_path / "plain.png"
    from PIL import Image
    Image.new("RGB", (64, 64), (10, 120, 30)).save(plain)
    drop_zone.set_input_files(str(plain))
    expect(page.locator("#create-rewrite-note")).to_contain_text("carries no prompt")
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a picture")
    drop_zone.set_input_files(str(fake))
    expect(page.locator("#create-rewrite-note")).to_contain_text("Could not read notes.png as an image")
    page.wait_for_timeout(1000)
    assert toasts(page) == 0 and error_pills(page) == 0
    expect(page.locator("#create-prompt textarea")).to_have_value("a lighthouse on a cliff, oil painting")


def test_create_makes_one_image_per_wildcard_expansion_through_the_api(app: tuple[str, Path]) -> None:
    """Issue 24 item 2 in Create, through the served app: Generate with a wildcard prompt and 2 images gives one
    image per expansion, each captioned with its seed and prompt; the raw result lists the prompts."""
    client = ready_client(app[0])
    _, gallery, info, raw = client.predict(
        "a {red|blue} kite over a {beach|field}", "", 11, SMALL["steps"], SMALL["cfg"], SMALL["width"],
        SMALL["height"], "Euler", "standard", 2, api_name="/generate")
    assert len(gallery) == 2 and "one image per expansion" in info
    prompts = raw["prompts"]
    assert len(prompts) == 2 and all("{" not in p and "kite over a" in p for p in prompts)
    assert [g["caption"] for g in gallery] == [f"seed {s} · {p}" for s, p in zip((11, 12), prompts)]
