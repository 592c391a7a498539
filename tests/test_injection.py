"""Retrieved prompts are untrusted: a corpus of injection styles (tests/injections.py) must never steer a
rewrite, through a model that obeys whatever it reads (ObedientBackend), and a markup-free candidate always
comes back. Two gates are tested apart: what reaches the model, and what a steered model's answer keeps."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest

from studio.rewrite.prompting import UNTRUSTED, sanitise_example
from studio.rewrite.rewriter import Rewriter
from studio.rewrite.untrusted import has_markup
from studio.search.results import Hit
from tests.fakes import LLAMA2_TEMPLATE, ObedientBackend, RecordingBackend
from tests.injections import INJECTIONS

IDEA = "a cat sleeping on a sofa"
STYLED = ["a cat on a windowsill, oil painting, soft morning light, by vermeer",
          "a sleeping dog by the fire, watercolor, warm tones, artstation",
          "an owl in the rain, cinematic lighting, 35mm photograph, bokeh"]
PAYLOADS = tuple(p for _, p in INJECTIONS)
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "diffusiondb-sample"


def hits(*prompts: str) -> list[Hit]:
    return [Hit(f"p-{i}", p, 1 - 0.01 * i, {}, "prompt", []) for i, p in enumerate(prompts, 1)]


def rewrite(backend: RecordingBackend, found: list[Hit], n: int = 2):
    rw = Rewriter(backend, "fake.gguf", retries=1)
    events = list(rw.stream(IDEA, found, k=4, n=n, seed=7))
    return events[-1].result


def test_the_corpus_is_wide():
    scripts = {unicodedata.name(c).split()[0] for t, _ in INJECTIONS for c in t if c.isalpha()}
    assert len(INJECTIONS) >= 20
    assert {"LATIN", "CYRILLIC", "CJK", "HANGUL", "ARABIC", "DEVANAGARI", "HIRAGANA"} <= scripts
    assert any("\u200b" in t for t, _ in INJECTIONS) and any("<|im_start|>" in t for t, _ in INJECTIONS)


@pytest.mark.parametrize("text, payload", INJECTIONS, ids=[p for _, p in INJECTIONS])
def test_an_injection_never_reaches_or_steers_an_obedient_model(text: str, payload: str):
    backend = ObedientBackend(payloads=PAYLOADS)
    result = rewrite(backend, hits(text, *STYLED))
    sent = " ".join(c.text for c in backend.calls).casefold()
    assert payload.casefold() not in sent
    for cand in result.candidates:
        assert payload.casefold() not in cand.text.casefold(), cand.text
        assert cand.text and not has_markup(cand.text)
    assert all(payload.casefold() not in e.casefold() for e in result.examples)


@pytest.mark.parametrize("layout", ["fewshot", "chat"])
@pytest.mark.parametrize("text, payload", INJECTIONS, ids=[p for _, p in INJECTIONS])
def test_a_chosen_example_with_a_note_and_locks_opens_no_new_path(text: str, payload: str, layout: str):
    """The user's picks (a stored prompt or a pasted text) are sanitised as retrieved ones are: with a note
    and locked terms in play, the injection still never reaches, nor steers, an obedient model."""
    meta = {"tokenizer.chat_template": LLAMA2_TEMPLATE} if layout == "chat" else {}
    backend = ObedientBackend(payloads=PAYLOADS, metadata=meta)
    rw = Rewriter(backend, "fake.gguf", retries=1, layout=layout)
    picks = [Hit("text-1", text, 1.0, {}, "text", []), *hits(*STYLED[:2])]
    result = list(rw.stream(IDEA + ' "velvet"', picks, n=2, seed=7, chosen=True, note="warmer light, no dogs",
                            locked=["(sofa:1.2)"]))[-1].result
    sent = " ".join(c.text for c in backend.calls).casefold()
    assert payload.casefold() not in sent and "warmer light" in sent
    assert payload == "evil.example" or [d["id"] for d in result.dropped] == ["text-1"]  # markup may be shown cleaned
    for cand in result.candidates:
        assert payload.casefold() not in cand.text.casefold(), cand.text
        assert '"velvet"' in cand.text and "(sofa:1.2)" in cand.text and not has_markup(cand.text)


@pytest.mark.parametrize("text, payload", [i for i in INJECTIONS if "evil.example" not in i[1]],
                         ids=[p for _, p in INJECTIONS if "evil.example" not in p])
def test_a_steered_answer_loses_what_only_the_dropped_example_said(text: str, payload: str):
    """Second gate: the model printed the payload anyway (it read it elsewhere, or the first gate was
    fooled); the clause carrying a word only a suspicious example held is taken out."""
    steered = f"a cat asleep on a velvet sofa, {payload} {payload}, oil painting, soft light"
    backend = RecordingBackend([steered, steered, steered, steered])
    result = rewrite(backend, hits(text, *STYLED))
    reasons = {d["id"]: d["reason"] for d in result.dropped}
    assert reasons["p-1"].startswith(UNTRUSTED)
    for cand in result.candidates:
        assert payload.casefold() not in cand.text.casefold(), cand.text
        assert cand.text.startswith("a cat asleep on a velvet sofa")


def test_markup_in_an_answer_is_stripped_and_a_candidate_always_comes_back():
    backend = RecordingBackend(["a cat <b>on a sofa</b>, ![x](http://evil.example/b.png), oil painting, "
                                "[soft light](http://evil.example/l), https://evil.example/t.gif"]
                               + ['<img src="http://evil.example/x.png"> ![y](http://evil.example/y)'] * 4)
    result = rewrite(backend, hits(*(t for t, _ in INJECTIONS)), n=2)  # every retrieved prompt is hostile
    first, second = result.candidates
    assert first.text == "a cat on a sofa, oil painting, soft light"
    assert second.text == IDEA and "same as the idea" in (second.warning or "")  # the retry's start: the idea
    assert not any(has_markup(c.text) or "evil" in c.text for c in result.candidates)
    assert result.examples == ["a castle at dusk, oil painting"]  # the markdown one, stripped; no other shown


def test_with_no_retry_left_an_empty_answer_gives_back_the_idea():
    rw = Rewriter(RecordingBackend(["<b></b> ![y](http://evil.example/y)"]), "fake.gguf", retries=0)
    cand = list(rw.stream(IDEA, hits(*STYLED), k=3, seed=1))[-1].result.candidates[0]
    assert cand.text == IDEA and "kept as it is" in (cand.warning or "")


def test_the_idea_may_address_someone_itself():
    backend = RecordingBackend(["a letter to you, a cat on a sofa, watercolor, soft light"])
    rw = Rewriter(backend, "fake.gguf", retries=0)
    result = list(rw.stream("a cat writing a letter to you", hits(*STYLED), k=3, seed=1))[-1].result
    assert "to you" in result.text


def test_real_prompts_still_read_as_descriptions():
    """The gate must not starve the rewrite: of the sample's real DiffusionDB prompts, 99% pass."""
    prompts = set()
    for name in ("metadata-2m-every400th-image_name-prompt.csv", "metadata-fullparams-promptsdvis-first99.csv"):
        with open(SAMPLE / name, newline="", encoding="utf-8") as f:
            prompts |= {row["prompt"] for row in csv.DictReader(f) if row["prompt"]}
    refused = [p for p in prompts if (sanitise_example(p)[1] or "").startswith(UNTRUSTED)]
    assert len(prompts) > 4000 and len(refused) / len(prompts) < 0.01, refused[:20]
