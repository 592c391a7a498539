"""The CLI's printing lives in studio/cli_show.py (issue 23: cli.py was over 400 lines); what it prints is unchanged."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import studio.cli as cli
import studio.cli_show as cli_show
from studio.cli_show import show
from studio.rewrite.results import Candidate, Finding, Problem, RewriteResult, Timings
from studio.search.results import Hit


def test_cli_keeps_no_printing_and_both_modules_stay_small():
    tree = ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not {d for d in defined if d.startswith("_print") or d in ("_show", "show")}
    for module in (cli, cli_show):
        assert len(Path(module.__file__).read_text(encoding="utf-8").splitlines()) < 400


def _rewrite() -> RewriteResult:
    cand = Candidate("a red barn, oil painting", 9, seed=4, added=["oil painting"],
                     findings=[Finding(Problem.COPIES, "p-1")], warning="Check this one: copies retrieved prompt p-1")
    return RewriteResult("barn", [cand], [Hit("p-1", "a barn", 0.1, {})], ["a barn"], {"cfg": 7.0, "from": 1},
                         "llm.gguf", False, "chat", Timings(), notice="a note")


def test_a_rewrite_reads_as_before(capsys: pytest.CaptureFixture[str]):
    show("rewrite", _rewrite(), as_json=False)
    out, err = capsys.readouterr()
    assert " 1. a red barn, oil painting\n      9 CLIP tokens, seed 4\n      adds: oil painting\n" in out
    assert "      warning: Check this one: copies retrieved prompt p-1\n" in out
    assert "Suggested settings (median of 1 neighbours' images): cfg 7.0\n" in out
    assert out.startswith("\nRewritten:\n") and err == "note: a note\n"


def test_json_is_the_results_dict(capsys: pytest.CaptureFixture[str]):
    show("rewrite", _rewrite(), as_json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["candidates"][0]["problems"] == ["copies retrieved prompt p-1"] and data["idea"] == "barn"
    show("tokens", {"count": 4, "chunks": 1, "over": 0, "cut": ""}, as_json=False)
    assert capsys.readouterr().out == "4 CLIP tokens (start and end included): SDXL reads them in 1 chunk of 75\n"
