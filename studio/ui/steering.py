"""Steering the rewrite in Create: which examples the LLM sees (ticked; retrieved, or brought from Explore and
History), a note it follows, locked terms, several candidates side by side, and all of them generated with
one seed for a look."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.studio import MAX_CANDIDATES

SHOWN = 4  # candidate columns on the page (the CLI and API write up to MAX_CANDIDATES)
ID, TEXT = "id:", "text:"


@dataclass
class Steering:
    examples: gr.CheckboxGroup  # values "id:<prompt id>" (stored) or "text:<prompt>" (brought as text)
    examples_for: gr.State  # the idea the retrieved examples were found for
    note: gr.Textbox
    locked: gr.Textbox
    n: gr.Slider
    cards: list[tuple[gr.Column, gr.Textbox, gr.Markdown, gr.Button]]
    generate_all: gr.Button
    looks: gr.Gallery
    result: gr.State  # the last RewriteResult as a dict
    choices: gr.State  # the group's choices, [label, value] pairs (a CheckboxGroup's value holds only ticks)


def label(prompt: str, score: str | None = None, limit: int = 140) -> str:
    flat = " ".join(str(prompt).split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return f"{score} · {flat}" if score else f"yours · {flat}"


def chosen(values: list[str] | None) -> tuple[list[str], list[str]]:
    """The ticked examples as the rewrite takes them: (stored prompt ids, texts)."""
    ids = [v[len(ID):] for v in values or [] if v.startswith(ID)]
    texts = [v[len(TEXT):] for v in values or [] if v.startswith(TEXT)]
    return ids, texts


def locked_terms(text: str) -> list[str]:
    """'gold leaf, "under the sea"' -> the terms to keep verbatim (commas separate them)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def examples_update(result: dict[str, Any], current: list, ticked: list[str]) -> tuple[Any, list]:
    """After a rewrite: the examples it used, ticked, and the ones the user brought but left unticked;
    and the new choices (for the state that remembers them)."""
    choices: list[tuple[str, str]] = []
    for hit in result.get("retrieved") or []:
        if hit.get("kind") == "text":
            value = TEXT + hit["prompt"]
            choices.append((label(hit["prompt"]), value))
        else:
            value = ID + hit["id"]
            choices.append((label(hit["prompt"], f"{round(100 * max(0.0, 1 - hit['distance']))}%"), value))
    used = {v for _, v in choices}
    kept = [(lab, v) for lab, v in current or [] if v.startswith(TEXT) and v not in used]  # brought, not used
    value = [v for _, v in choices]
    every = choices + kept
    return gr.update(choices=every, value=value), [list(c) for c in every]


def card_updates(result: dict[str, Any] | None) -> list[Any]:
    """Each candidate's column: its text, its token count and what it adds (and what was put back)."""
    cands = (result or {}).get("candidates") or []
    out: list[Any] = []
    for i in range(SHOWN):
        if i < len(cands) and len(cands) > 1:
            c = cands[i]
            bits = [f"**{c.get('tokens')} CLIP tokens**"]
            if c.get("added"):
                bits.append("adds: " + ", ".join(c["added"][:8]))
            if c.get("restored"):
                bits.append("kept for you: " + ", ".join(c["restored"]))
            if c.get("warning"):
                bits.append(f"⚠️ {c['warning']}")
            out += [gr.update(visible=True), c.get("text", ""), "  \n".join(_inert_bits(bits))]
        else:
            out += [gr.update(visible=False), gr.skip(), gr.skip()]
    return out


def _inert_bits(bits: list[str]) -> list[str]:
    from studio.ui.text import inert

    return [b if b.startswith("**") else inert(b) for b in bits]


def steering_panel() -> Steering:
    """Built inside Create, under the idea row."""
    with gr.Accordion("Steer the rewrite: examples, a note, locked words, several candidates", open=False,
                      elem_id="create-steer"):
        examples = gr.CheckboxGroup([], value=[], label="Examples the LLM sees (untick to leave one out; "
                                    "+ Add from Explore or History brings your own)", elem_id="create-examples")
        with gr.Row():
            note = gr.Textbox("", label="Note to the LLM (optional)", placeholder="warmer light, no people", scale=3,
                              elem_id="create-note")  # its limit: create.py (limits.limited)
            locked = gr.Textbox("", label="Keep these exactly (commas between)", placeholder='gold leaf, "under the sea"',
                                scale=2, elem_id="create-locked")
            n = gr.Slider(1, min(SHOWN, MAX_CANDIDATES), value=1, step=1, label="Candidates", scale=1,
                          elem_id="create-candidates")
    cards = []
    with gr.Row(elem_id="create-cards"):
        for i in range(SHOWN):
            with gr.Column(visible=False, min_width=200) as col:
                text = gr.Textbox(label=f"Candidate {i + 1}", lines=4, interactive=False, buttons=["copy"],
                                  elem_id=f"create-cand-{i}")
                info = gr.Markdown(elem_id=f"create-cand-info-{i}")
                use = gr.Button("Use this ↑", size="sm", elem_id=f"create-cand-use-{i}")
            cards.append((col, text, info, use))
    generate_all = gr.Button("Generate every candidate with one seed, for a look", visible=False,
                             elem_id="create-generate-all")
    looks = gr.Gallery(label="The candidates side by side (one seed)", columns=SHOWN, height=320, visible=False,
                       object_fit="contain", elem_id="create-looks")
    return Steering(examples, gr.State(""), note, locked, n, cards, generate_all, looks, gr.State({}), gr.State([]))


def add_example(picked: dict[str, Any], choices: list, ticked: list[str]) -> tuple[Any, list, str]:
    """An Explore pick or a History image -> one more example the LLM will see (as text: it is sanitised
    like any stored prompt), ticked."""
    prompt = (picked or {}).get("prompt")
    if not prompt:
        return gr.skip(), gr.skip(), "Pick a prompt first (click an image or a row)."
    value = TEXT + prompt
    choices = [list(c) for c in choices or []]
    if value not in {v for _, v in choices}:
        choices.append([label(prompt), value])
    ticked = list(dict.fromkeys([*(ticked or []), value]))
    return gr.update(choices=[tuple(c) for c in choices], value=ticked), choices, (
        "+ Added to the examples the LLM sees (Create → Steer the rewrite). Rewrite to use it.")
