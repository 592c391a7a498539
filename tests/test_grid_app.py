"""The grid through the served app: gradio_client (/grid, /reopen_grid) and headless Chromium (screenshots)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from tests.appserver import ARTIFACTS, SMALL, browser, needs_chromium, ready_client, serve, shot, small_settings, stop

SETTINGS = [SMALL["steps"], SMALL["cfg"], SMALL["width"], SMALL["height"], "Euler", "standard"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> Iterator[str]:
    base = tmp_path_factory.mktemp("grid-app")
    proc, url = serve(base / "home", str(tiny_clip_dir), base / "models", sdxl=str(tiny_sdxl_dir))
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(app: str) -> Any:
    return ready_client(app)


def _grid(client: Any, idea: str, variants: str, seeds: int, seed: int, steps: int = SMALL["steps"]) -> dict:
    out = client.predict(idea, variants, 0, seeds, "", False, "", seed, steps, *SETTINGS[1:], api_name="/grid")
    return out[3]


def test_grid_through_the_api_reuses_cells_and_writes_a_sheet(client) -> None:
    raw = _grid(client, "a red fox in the snow", "a red fox in the snow, watercolor", 2, 5)
    assert raw["made"] == 4 and raw["reused"] == 0 and [c["label"] for c in raw["columns"]] == ["seed 5", "seed 6"]
    assert [r["kind"] for r in raw["rows"]] == ["idea", "typed"] and all(r["scored"] == 2 for r in raw["rows"])
    with Image.open(raw["sheet"]) as sheet:
        meta = json.loads(sheet.text["prompt-studio-grid"])
    assert meta["grid_id"] == raw["grid_id"] and meta["columns"] == ["seed 5", "seed 6"]
    assert {r["prompt"] for r in meta["rows"]} == {"a red fox in the snow", "a red fox in the snow, watercolor"}
    again = _grid(client, "a red fox in the snow", "a red fox in the snow, watercolor", 2, 6)
    assert again["reused"] == 2 and again["made"] == 2  # seed 6 was made by the first grid
    pics, _, hist = client.predict("", None, 20, api_name="/history")
    assert sum(h["metadata"].get("grid_id") == raw["grid_id"] for h in hist["results"]) == 4


def test_cancel_keeps_cells_and_reopen_fills_only_the_missing(client) -> None:
    job = client.submit("a slow castle", "a slow castle, ink", 0, 3, "", False, "", 1, 40, *SETTINGS[1:],
                        api_name="/grid")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "1 of 6 cells" not in str(job.outputs()[-1:] or ""):
        time.sleep(0.1)
    assert "Cancelling" in client.predict(api_name="/cancel")
    raw = job.result(timeout=120)[3]
    assert raw["cancelled"] and 1 <= raw["made"] < 6 and raw["missing"] == 6 - raw["made"]
    reopened = client.predict(raw["grid_id"], api_name="/reopen_grid")[3]
    assert reopened["reused"] == raw["made"] and reopened["made"] == raw["missing"] and reopened["missing"] == 0


@needs_chromium
def test_the_grid_tab_in_chromium(app: str, client) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1366, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(app)
        page.get_by_role("tab", name="Grid").click()
        small_settings(page, "grid-settings")
        seeds = page.locator("#grid-seeds input[type='number']")
        seeds.fill("3")
        seeds.press("Enter")
        page.locator("#grid-variants textarea").fill("a lighthouse in a storm, oil painting\na lighthouse, 35mm film")
        page.locator("#grid-idea textarea").fill("a lighthouse in a storm")
        page.locator("#grid-go").click()
        page.locator("#grid-note").get_by_text("9 made").wait_for()
        expect(page.locator("#grid-cells img")).to_have_count(9)
        expect(page.locator("#grid-ranking [data-testid='cell-2-5']")).to_be_visible()  # three ranked rows
        page.locator("#grid-library").get_by_text("Styles and negatives").click()
        page.locator("#grid-styles-load").click()
        expect(page.locator("#grid-style input")).not_to_have_value("")
        shot(page, "grid-1366")
        page.set_viewport_size({"width": 800, "height": 1000})
        shot(page, "grid-800")
        page.set_viewport_size({"width": 1366, "height": 1000})
        best = page.locator("#grid-ranking [data-testid='cell-0-5']").inner_text()
        page.locator("#grid-send").click()  # the best row goes to Create
        expect(page.locator("#create-prompt textarea")).not_to_have_value("")
        assert page.locator("#create-prompt textarea").input_value() == best.strip()
        b.close()


def test_wildcard_combinations_a_style_and_the_neighbours_negatives_in_chromium(app: str, client,
                                                                                tmp_path: Path) -> None:
    """Issue 24 items 2-4 on the page: every combination of a wildcard idea as rows; a mined style applied to the
    idea (appended, tokens counted); the negative terms of A1111 images near the idea, one click to add."""
    from playwright.sync_api import expect, sync_playwright

    from tests.toolimages import make_tool_folder

    make_tool_folder(tmp_path / "tools")  # A1111 pictures carrying "blurry, lowres" as their negative prompt
    client.predict(str(tmp_path / "tools"), None, 0, api_name="/ingest")
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1366, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(app)
        page.get_by_role("tab", name="Grid").click()
        small_settings(page, "grid-settings")
        seeds = page.locator("#grid-seeds input[type='number']")
        seeds.fill("1")
        seeds.press("Enter")
        page.locator("#grid-idea textarea").fill("a {red|blue} lighthouse on a {cliff|beach}")
        page.locator("#grid-wildcards input").check()
        page.locator("#grid-wildcard-mode").get_by_text("every combination").click()
        page.locator("#grid-go").click()
        page.locator("#grid-note").get_by_text("4 made").wait_for()
        rows = {page.locator(f"#grid-ranking [data-testid='cell-{i}-5']").inner_text().strip() for i in range(4)}
        assert rows == {f"a {c} lighthouse on a {w}" for c in ("red", "blue") for w in ("cliff", "beach")}

        page.locator("#grid-library").get_by_text("Styles and negatives").click()
        page.locator("#grid-idea textarea").fill("a lighthouse on a cliff")
        page.locator("#grid-styles-load").click()
        expect(page.locator("#grid-style input")).not_to_have_value("")
        page.locator("#grid-style-apply").click()
        expect(page.locator("#grid-library-note")).to_contain_text("CLIP tokens")
        styled = page.locator("#grid-idea textarea").input_value()
        assert styled.startswith("a lighthouse on a cliff, ") and len(styled) > len("a lighthouse on a cliff, ")

        page.locator("#grid-negatives").click()
        expect(page.locator("#grid-library-note")).to_contain_text("neighbours had a negative prompt")
        page.locator("#grid-negative-terms").get_by_text("lowres").click()
        page.locator("#grid-negatives-add").click()
        expect(page.locator("#grid-negative input, #grid-negative textarea").first).to_have_value("lowres")
        shot(page, "grid-style-negatives-1366")
        page.set_viewport_size({"width": 800, "height": 1000})
        shot(page, "grid-style-negatives-800")
        b.close()
