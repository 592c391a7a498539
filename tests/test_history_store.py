"""History asks the store (PromptStore.newest_generated) for our newest generations; it never reaches the Chroma
client itself (issue 23)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import studio.library.history as history
from studio.search import newest
from studio.studio import Studio


def test_history_has_no_client_access():
    tree = ast.parse(Path(history.__file__).read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "client"]
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "studio.search.counts" not in modules and "studio.search.newest" not in modules
    assert not {"counts", "newest"} & names  # `from studio.search import counts` neither


def test_the_store_gives_our_newest_generations_and_rebuilds_a_missing_index(studio: Studio):
    store = studio.store_for(True)
    made = {"g-old": 100.0, "g-new": 300.0, "g-mid": 200.0}
    metas = [{"source": "generated", "created": t, "prompt_id": "p-x"} for t in made.values()]
    vectors = np.ones((3, store.dim), dtype=np.float32)
    store.add("images", list(made), vectors, metas)
    store.add("images", ["d-1"], vectors[:1], [{"source": "diffusiondb"}])  # not ours: never listed
    assert store.newest_generated() == ["g-new", "g-mid", "g-old"]
    col = studio.client.get_collection(store.names["images"])
    col.modify(metadata={k: v for k, v in col.metadata.items() if k != newest.KEY})  # as a store from before it
    assert store.newest_generated() == ["g-new", "g-mid", "g-old"]
    assert newest.KEY in studio.client.get_collection(col.name).metadata
    assert store.newest_generated(rebuild=True) == ["g-new", "g-mid", "g-old"]
