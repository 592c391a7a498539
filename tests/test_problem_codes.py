"""Rewrite event kinds and candidate problems are typed (issue 23): a Problem code, not a message text, decides a
retry; the texts users and the API see are the same as before."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from studio.rewrite import prompting, rewriter
from studio.rewrite.prompting import UNTRUSTED, findings, problems
from studio.rewrite.results import Candidate, EventKind, Finding, Problem, RewriteEvent
from studio.rewrite.rewriter import Rewriter, finish_candidate, retry_prefill
from tests.fakes import RecordingBackend

IDEA = "a cat sleeping on a sofa"


def test_findings_carry_codes_and_read_as_before():
    assert findings(IDEA, IDEA, []) == [Finding(Problem.SAME_AS_IDEA), Finding(Problem.ADDS_LITTLE)]
    copy = "a cat on a windowsill, oil painting, soft light"
    found = findings(copy, IDEA, [("p-7", copy)])
    assert [f.code for f in found] == [Problem.COPIES] and found[0].text == "copies retrieved prompt p-7"
    assert problems(copy, IDEA, [("p-7", copy)]) == ["copies retrieved prompt p-7"]
    assert problems("", IDEA, []) == ["empty"]
    assert Problem.NO_PROMPT.value == "the model gave no usable prompt, so the idea is kept as it is"


def test_the_code_decides_where_a_retry_starts():
    short = Candidate(f"{IDEA}, cozy", None, findings=[Finding(Problem.ADDS_LITTLE)])
    assert retry_prefill(short, IDEA) == f"{IDEA}, cozy,"  # only too short: go on from it
    copied = Candidate("a dog, oil painting", None, findings=[Finding(Problem.COPIES, "p-1")])
    assert retry_prefill(copied, IDEA) == f"{IDEA},"  # a copy: start again from the idea
    kept = Candidate(IDEA, None, findings=[Finding(Problem.NO_PROMPT)])
    finish_candidate(kept, None)
    assert kept.warning and kept.warning.startswith("The model gave no usable prompt")


def test_the_rewriter_matches_no_message_text():
    """rewriter.py names problems by code: none of their texts (nor the untrusted-reason prefix) is in its source."""
    texts = {p.value for p in Problem} | {UNTRUSTED}
    tree = ast.parse(Path(rewriter.__file__).read_text(encoding="utf-8"))
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not literals & texts
    assert "UNTRUSTED" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert prompting.untrusted_prompts([{"id": "a", "prompt": "x", "reason": UNTRUSTED + "chat"},
                                        {"id": "b", "prompt": "y", "reason": "too short to show a style"}]) == ["x"]


def test_event_kinds_are_a_literal_and_the_stream_keeps_to_it():
    assert RewriteEvent.__dataclass_fields__["kind"].type == "EventKind"  # the annotation, not a plain str
    fake = RecordingBackend([IDEA, "oil painting, golden hour, by greg rutkowski"])
    events = list(Rewriter(fake, "fake.gguf").stream(IDEA, [], k=0, n=1, seed=3))
    assert {e.kind for e in events} <= set(typing.get_args(EventKind))
    assert [e.kind for e in events][0] == "retrieved" and events[-1].kind == "done"
    start = [e for e in events if e.kind == "start"][1]
    assert start.reason == "same as the idea; adds almost nothing to the idea"  # the texts, as shown before


def test_a_candidate_reads_the_same_through_the_api():
    cand = Candidate("a cat", 4, findings=[Finding(Problem.COPIES, "p-2"), Finding(Problem.DROPS_SUBJECT)])
    out = cand.to_dict()
    assert list(out) == ["text", "tokens", "warning", "raw", "seed", "temperature", "attempts", "problems",
                         "llm_tokens", "prefill", "restored", "added"]
    assert out["problems"] == ["copies retrieved prompt p-2", "drops the idea's subject"]
    assert cand.problems == out["problems"]
