"""What a reload must not lose: a tab's typed inputs kept in the browser (gr.BrowserState), and the browser's id."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import gradio as gr

PRIVATE = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}


def secret_for(home: Any) -> str:
    """A stable key for the browser's stored inputs, so they outlive a restart of the studio too (Gradio's
    default is new at each launch). It guards nothing secret: the text is the user's own, in their own browser."""
    return hashlib.sha256(f"prompt-studio:{home}".encode()).hexdigest()[:32]


def remember(key: str, boxes: dict[str, Any], secret: str) -> gr.BrowserState:
    """Save `boxes` (name -> component) in the browser's localStorage whenever one changes; restore(…) puts
    them back when the page loads."""
    store = gr.BrowserState({}, storage_key=f"prompt-studio-{key}", secret=secret)
    names = list(boxes)

    def save(*values: Any) -> dict[str, Any]:
        return dict(zip(names, values))

    gr.on([box.change for box in boxes.values()], save, list(boxes.values()), store, trigger_mode="always_last",
          **PRIVATE)
    return store


def restore(demo: gr.Blocks, store: gr.BrowserState, boxes: dict[str, Any]) -> None:
    """When the page loads: what `store` saved back into `boxes` (a box it has no value for stays as it is)."""
    names = list(boxes)

    def back(saved: dict[str, Any] | None) -> list[Any]:
        saved = saved if isinstance(saved, dict) else {}
        return [saved[n] if saved.get(n) is not None else gr.skip() for n in names]

    demo.load(back, store, list(boxes.values()), **PRIVATE)


def visitor_id(demo: gr.Blocks, secret: str) -> tuple[gr.State, Any]:
    """This browser's id (kept in its localStorage; new on a first visit), in a gr.State for handlers: a job
    started before a reload is found again by it. (A BrowserState input would show in the API; a State does not.)
    Returns the state and the load event (chain on it what needs the id)."""
    store = gr.BrowserState("", storage_key="prompt-studio-visitor", secret=secret)
    visitor = gr.State("")

    def known(saved: str | None) -> tuple[str, str]:
        vid = saved if isinstance(saved, str) and saved else uuid.uuid4().hex
        return vid, vid

    return visitor, demo.load(known, store, [store, visitor], **PRIVATE)
