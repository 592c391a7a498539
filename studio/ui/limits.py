"""Boxes with a length limit: a longer paste is cut at a word and the tab's status line says how much and why."""

from __future__ import annotations

from typing import Any

import gradio as gr

# Cut at the last space when one is this close to the limit; past that (one giant word) cut at the limit.
WORD_REACH = 200


def cut_at_word(text: str, limit: int) -> str:
    """The first `limit` characters at most, ending before a word, not in one."""
    if len(text) <= limit:
        return text
    if not text[limit].isspace():
        space = max(text.rfind(" ", 0, limit + 1), text.rfind("\n", 0, limit + 1))
        if space >= limit - WORD_REACH and space > 0:
            return text[:space].rstrip()
    return text[:limit].rstrip()


def said_cut(name: str, given: int, kept: int, limit: int) -> str:
    return (f"✂️ {name} holds at most {limit:,} characters: the {given:,} given were cut to {kept:,} (at a word); "
            f"the last {given - kept:,} are not in the box.")


def limited(box: gr.Textbox, limit: int, name: str, status: Any) -> None:
    """Enforce `limit` on the server instead of the browser's maxlength (which cuts a paste silently, mid-word):
    a longer text is cut at a word and `status` says so; shorter typing costs nothing but the check."""
    box.max_length = None  # the browser must not cut first: then nobody could say what was cut

    def check(text: str) -> tuple[Any, Any]:
        if len(text or "") <= limit:
            return gr.skip(), gr.skip()
        kept = cut_at_word(text, limit)
        return kept, said_cut(name, len(text), len(kept), limit)

    # .change, not .input: Gradio 6's textbox sends no input event for a paste or a script's fill (seen here).
    box.change(check, box, [box, status], queue=False, show_progress="hidden", api_visibility="private",
               trigger_mode="always_last")
