"""Lineage: one module encodes it for our PNG chunk and for Chroma's metadata, and decodes both."""

from __future__ import annotations

import json

from studio.library.lineage import APP, Lineage, chunk_metadata, is_ours, stored_list
from studio.library.pngmeta import STUDIO_KEY
from studio.rewrite.results import Candidate, RewriteResult, Timings
from studio.search.results import Hit


def _rewrite() -> RewriteResult:
    hits = [Hit("p-1", "a barn", 0.1, {}), Hit("p-2", "a farm", 0.2, {})]
    return RewriteResult("barn", [Candidate("a red barn", 5)], hits, ["a barn", "a farm"], {}, "llm.gguf", False,
                         "chat", Timings(), note="warmer", locked=["red"])


def test_of_rewrite_keeps_the_parent_and_extra_fields():
    lineage = Lineage.of_rewrite(_rewrite())
    assert (lineage.idea, lineage.retrieved_ids, lineage.parent) == ("barn", ["p-1", "p-2"], "p-1")
    assert (lineage.llm_model, lineage.note, lineage.locked, lineage.examples_chosen) == ("llm.gguf", "warmer", ["red"], False)
    compared = Lineage.of_rewrite(_rewrite(), parent=None, comparison_id="c", variant="original", score=0.3)
    assert compared.parent is None and compared.variant == "original" and compared.retrieved_ids == ["p-1", "p-2"]


def test_the_page_and_the_store_encodings_round_trip():
    lineage = Lineage.of_rewrite(_rewrite())
    assert Lineage.from_dict(lineage.to_dict()) == lineage
    assert Lineage.from_dict({**lineage.to_dict(), "from_a_newer_studio": 1}) == lineage and Lineage.from_dict(None) == Lineage()
    meta = chunk_metadata({"app": APP, "lineage": lineage.to_dict(), "model": "sdxl", "timestamp": "2024-01-02T03:04:05"})
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in meta.values())  # Chroma keeps scalars
    assert json.loads(meta["retrieved_ids"]) == ["p-1", "p-2"] and Lineage.from_metadata(meta) == lineage
    assert stored_list({"x": "not json"}, "x") == [] and stored_list({}, "x") == []


def test_one_name_for_our_chunk():
    assert STUDIO_KEY == APP == "prompt-studio" and is_ours({"app": APP}) and not is_ours({"app": "a1111"})
