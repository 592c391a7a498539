"""Small faults: LoRA weights bounded, black (NaN) images flagged, History's box confined when served,
bidirectional controls neutralised in shown text, long prompts clipped in tables, Gradio's upload cache
cleaned, a prompt table in a folder named as its own source."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.errors import InputError
from studio.generate.prompt_syntax import split_loras
from studio.generate.request import GenerationRequest, GenerationResult


def test_lora_weights_are_bounded_and_the_error_says_the_bound():
    from studio.generate.prompt_syntax import MAX_LORA_WEIGHT

    assert split_loras("a <lora:ink:10> <lora:glow:-10:2>")[1][0].weight == MAX_LORA_WEIGHT == 10
    for prompt in ("a <lora:ink:1e308>", "a <lora:ink:0.5:11>", "a <lora:ink:6> <lora:ink:6>"):
        with pytest.raises(InputError, match="between -10 and 10"):
            split_loras(prompt)


def test_an_all_black_image_is_flagged_in_the_notes(tmp_path, settings, embedder):
    from studio.library.writeback import Lineage, write_back
    from studio.studio import Studio

    req = GenerationRequest("a lighthouse", seed=4, width=64, height=64, steps=2, n=2).validated()
    result = GenerationResult(req, [Image.new("RGB", (64, 64), (30, 60, 90)), Image.new("RGB", (64, 64))], "t", "cpu")
    studio = Studio(settings, embedder=embedder)
    saved = write_back(result, settings.outputs_dir, Lineage(), lambda: (studio.store_for(create=True), embedder))
    assert all(s.written for s in saved)
    black = [n for n in result.notes if "all black" in n]
    assert len(black) == 1 and "seed 5 " in black[0] and "seed 4" not in black[0]


RLO = "\u202e"


def test_bidirectional_controls_are_taken_out_of_what_the_page_shows():
    from studio.search.results import Hit, SearchResult
    from studio.ui.text import inert, quoted, shown
    from studio.ui.views import pick_of, row_picks, rows

    evil = f"a cat {RLO}gnp.exe\u2066 x\u2069 \u200f\u061c\u202a\u202d end"
    for text in (shown(evil), inert(evil), quoted(evil)):
        assert not any(c in text for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    assert shown(evil).startswith("a cat gnp.exe") and shown(evil).endswith(" end")
    hit = Hit(id="p1", prompt=evil, distance=0.1, metadata={})
    result = SearchResult(query="cat", target="prompts", results=[hit])
    assert RLO not in rows(result)[0][1] and RLO not in row_picks(result)[0]["prompt"] and RLO not in pick_of(hit)["prompt"]


def test_a_long_prompt_is_cut_in_tables_and_whole_one_click_away():
    import gradio as gr

    from studio.search.results import Hit, SearchResult
    from studio.ui.explore import _select
    from studio.ui.views import row_picks, rows

    long = "a castle, " * 10_000  # 100 KB
    result = SearchResult(query="castle", target="prompts", results=[Hit(id="p1", prompt=long, distance=0.1,
                                                                         metadata={"image_count": 1})])
    table = rows(result)
    assert len(table[0][1]) <= 300 and table[0][1].endswith("…")
    evt = gr.SelectData(None, {"index": [0, 1], "value": table[0][1], "row_value": table[0]})
    picked_text, picked, *_ = _select(table, row_picks(result), evt)
    assert picked_text == long and picked["prompt"] == long


def test_historys_box_reads_only_our_folders_when_served(tmp_path):
    from studio.ui.history import history_query

    ours, elsewhere = tmp_path / "home", tmp_path / "secret"
    ours.mkdir()
    elsewhere.mkdir()
    (elsewhere / "there.png").write_bytes(b"\x89PNG")
    roots = (str(ours),)
    said = []
    for path in (elsewhere / "there.png", elsewhere / "absent.png"):  # the same answer: no existence oracle
        with pytest.raises(InputError) as exc:
            history_query(str(path), None, roots)
        said.append(str(exc.value).replace(path.name, "NAME"))
    assert said[0] == said[1] and "served to other machines" in said[0]
    assert history_query(str(ours / "mine.png"), None, roots) == str(ours / "mine.png")
    assert history_query("a lighthouse", None, roots) == "a lighthouse"
    assert history_query(str(elsewhere / "there.png"), None, ()) == str(elsewhere / "there.png")  # this machine only


def test_gradios_cache_is_cleaned_and_a_full_one_is_said(studio):
    from studio.ui import build_ui
    from studio.ui.common import no_room_to_show

    demo = build_ui(studio)
    freq, age = demo.delete_cache
    assert 0 < freq <= 3600 and 0 < age <= 7 * 24 * 3600
    images = [Image.new("RGB", (1024, 1024))] * 4
    full = no_room_to_show(images, free=0)
    assert full is not None and "disk is full" in full and "postprocess" not in full
    assert no_room_to_show(images, free=50 * 2**30) is None


def test_a_prompt_table_in_a_folder_is_its_own_source(studio, tmp_path):
    for name, prompts in (("library", "a red fox in snow\nan old oak"), ("tagged", "a blue heron\na stone bridge")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "my-prompts.csv").write_text(f"prompt\n{prompts}\n")
    studio.ingest(str(tmp_path / "library"))
    studio.ingest(str(tmp_path / "tagged"), source_tag="faves")  # a tag the user gives still wins
    got = studio.store.collections["prompts"].get(include=["metadatas", "documents"])
    sources = {doc: meta["source"] for doc, meta in zip(got["documents"], got["metadatas"])}
    assert sources == {"a red fox in snow": "my-prompts", "an old oak": "my-prompts", "a blue heron": "faves",
                       "a stone bridge": "faves"}
