"""The X/Y grid: cells made once and reused, cancel keeps cells, reopen fills the missing, the PNG sheet."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PIL import Image

from studio.errors import InputError
from studio.studio import Studio
from tests.conftest import SMALL


def test_a_grid_of_the_idea_and_typed_variants_is_scored_ranked_and_stored(gen_studio: Studio):
    seen: list[tuple[int, int]] = []
    out = gen_studio.grid("a red fox in the snow", seeds=3, candidates=0, seed=5,
                          variants=["a red fox in the snow, watercolor"],
                          on_cell=lambda done, total, cell: seen.append((done, total)), **SMALL)
    assert [r.kind for r in out.plan.rows] == ["idea", "typed"] and len(out.cells) == 6
    assert [c.fields["seed"] for c in out.plan.columns] == [5, 6, 7]
    assert seen == [(i, 6) for i in range(1, 7)] and out.made == 6 and out.reused == 0
    assert all(-1.0 <= c.score <= 1.0 and c.request.steps == 2 for c in out.cells)
    scores = out.row_scores()
    assert all(s.scored == 3 and s.spread >= 0 for s in scores)
    ranked = out.ranking()
    assert ranked[0].mean >= ranked[1].mean and out.best == out.plan.rows[ranked[0].row]
    stored = gen_studio.store.get("images", where={"grid_id": out.plan.grid_id})
    assert len(stored) == 6 and {r.metadata["cell_key"] for r in stored} == {c.key for c in out.cells}
    assert all(r.metadata["idea"] == "a red fox in the snow" for r in stored)
    history = gen_studio.history(None, limit=20).results  # every cell lands in History with the grid's id
    assert sum(h.metadata.get("grid_id") == out.plan.grid_id for h in history) == 6


def test_cells_already_made_are_reused_not_generated(gen_studio: Studio):
    first = gen_studio.grid("a lighthouse at night", seeds=2, candidates=0, seed=40, **SMALL)
    # A new grid sharing the idea and one seed: that column comes from the store.
    second = gen_studio.grid("a lighthouse at night", seeds=2, candidates=0, seed=41,
                             variants=["a lighthouse at night, oil painting"], **SMALL)
    assert second.plan.grid_id != first.plan.grid_id
    assert second.cell(0, 0).state == "reused" and second.reused == 1 and second.made == 3
    assert second.cell(0, 0).key == first.cell(0, 1).key and second.cell(0, 0).image_id == first.cell(0, 1).image_id
    assert second.cell(0, 0).score == pytest.approx(first.cell(0, 1).score, abs=1e-4)


def test_cancel_keeps_finished_cells_and_reopen_fills_only_the_missing(gen_studio: Studio):
    flag = threading.Event()

    def on_cell(done: int, total: int, cell) -> None:
        if done == 2:
            flag.set()  # as the Cancel button does, between cells

    out = gen_studio.grid("a castle on a hill", seeds=2, candidates=0, seed=3, variants=["a castle, ink"],
                          on_cell=on_cell, cancel=flag, **SMALL)
    assert out.cancelled and out.made == 2 and out.missing == 2
    assert len(gen_studio.store.get("images", where={"grid_id": out.plan.grid_id})) == 2
    peek = gen_studio.reopen_grid(out.plan.grid_id, fill=False)  # what is there, nothing generated
    assert (peek.reused, peek.missing, peek.made, peek.cancelled) == (2, 2, 0, False)
    made: list[str] = []
    again = gen_studio.reopen_grid(out.plan.grid_id, on_cell=lambda d, t, c: made.append(c.state))
    assert made == ["reused", "reused", "made", "made"] and again.missing == 0
    assert [c.key for c in again.cells] == [c.key for c in out.cells]
    assert again.cell(0, 0).image_id == out.cell(0, 0).image_id
    third = gen_studio.reopen_grid(out.plan.grid_id)  # complete: reopening costs no generation
    assert third.made == 0 and third.reused == 4
    assert [p.grid_id for p in gen_studio.grid_list()][0] == out.plan.grid_id


def test_an_axis_of_cfg_replaces_the_seed_columns(gen_studio: Studio):
    out = gen_studio.grid("a blue bird", candidates=0, axis="cfg=3,7", seed=9, **SMALL)
    assert [c.label for c in out.plan.columns] == ["cfg 3", "cfg 7"] and out.plan.axis == "cfg"
    assert [c.request.cfg for c in out.cells] == [3.0, 7.0] and {c.request.seed for c in out.cells} == {9}
    with pytest.raises(InputError, match="one of seed, cfg, steps, sampler"):
        gen_studio.grid("a blue bird", candidates=0, axis="colour=1,2", **SMALL)


def test_the_sheet_has_labels_and_the_prompts_and_seeds_in_its_metadata(gen_studio: Studio, tmp_path: Path):
    out = gen_studio.grid("a green frog", seeds=2, candidates=0, seed=12, variants=["a green frog, macro photo"],
                          **SMALL)
    path = gen_studio.grid_sheet(out, tmp_path / "sheet.png")
    with Image.open(path) as img:
        meta = json.loads(img.text["prompt-studio-grid"])
        assert "Seed: " in img.text["parameters"]
        ranked = out.ranking()
        assert img.width > 2 * 128 and img.height > 2 * 128
        band = img.convert("L").crop((8, 44, 300, 60))  # the best row's label is drawn there
        assert band.getextrema()[0] < 128
    assert meta["grid_id"] == out.plan.grid_id and meta["columns"] == ["seed 12", "seed 13"]
    assert [r["prompt"] for r in meta["rows"]] == ["a green frog", "a green frog, macro photo"]
    assert meta["ranking"] == [s.row for s in ranked]
    assert sorted(c["seed"] for c in meta["cells"]) == [12, 12, 13, 13]


def test_the_cli_grid_with_a_cfg_axis_and_reopen(tmp_path: Path, tiny_clip_dir: Path, tiny_sdxl_dir: Path) -> None:
    from tests.test_cli import run

    home = tmp_path / "home"
    sdxl = ("--sdxl-model", str(tiny_sdxl_dir), "--device", "cpu")
    out = run("grid", "a small boat", "--candidates", "0", "--axis", "cfg=4,8", "--seed", "3", "--steps", "2",
              "--width", "64", "--height", "64", "--sampler", "Euler", "--json", *sdxl, home=home, clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    raw = json.loads(out.stdout)
    assert [c["label"] for c in raw["columns"]] == ["cfg 4", "cfg 8"] and raw["made"] == 2
    assert {c["request"]["scheduler"] for c in raw["cells"]} == {"Euler"} and Path(raw["sheet"]).is_file()
    assert "cell" in out.stderr  # the tqdm bar counts cells on stderr
    again = run("grid", "--reopen", raw["grid_id"], "--json", *sdxl, home=home, clip=tiny_clip_dir)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["made"], json.loads(again.stdout)["reused"]) == (0, 2)
    listed = run("grid", "--list", *sdxl, home=home, clip=tiny_clip_dir)
    assert raw["grid_id"] in listed.stdout
