"""History: our own generations, newest first or searched by text or image, with settings and lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.search.results import Hit
from studio.studio import Studio
from studio.ui.common import as_int, handler, uploaded_image
from studio.ui.views import details_markdown, picture


@dataclass
class HistoryControls:
    reuse: gr.Button
    picked: gr.State  # the picked entry: {"prompt", "negative_prompt", "seed", "steps", ...}


def _entry(hit: Hit) -> dict[str, Any]:
    m = hit.metadata
    keys = ("seed", "cfg", "steps", "sampler", "width", "height", "negative_prompt", "idea", "profile")
    return {"prompt": hit.prompt, "id": hit.id, **{k: m.get(k) for k in keys}}


def history_tab(studio: Studio) -> HistoryControls:
    def history(text: str, payload: Any, limit: float) -> tuple[list, str, dict, list]:
        limit = max(1, min(as_int(limit, "limit"), 500))
        query = uploaded_image(payload) if payload else (text or "").strip() or None
        try:
            result = studio.history(query, limit)
        except Exception:
            if studio.is_empty():  # a fresh library: nothing generated yet is not an error
                return [], "Nothing generated yet: make something in **Create** or **Compare**.", {}, []
            raise
        shown, pics = [], []
        for hit in result.results:
            if (pic := picture(studio, hit)) is not None:
                shown.append(hit)
                pics.append((pic, f"{hit.prompt[:80]} · seed {hit.metadata.get('seed')}"))
        how = "newest first" if query is None else ("closest to the image" if payload else "closest to the text")
        msg = f"{len(shown)} of your images, {how}." if shown else "Nothing generated yet (or nothing matches)."
        return pics, msg, result.to_dict(), [_entry(h) | {"details": details_markdown(h)} for h in shown]

    def pick(entries: list[dict], evt: gr.SelectData) -> tuple[str, dict]:
        if not entries or evt.index is None or evt.index >= len(entries):
            return gr.skip(), gr.skip()
        entry = entries[evt.index]
        return entry["details"], {k: v for k, v in entry.items() if k != "details"}

    with gr.Tab("History", id="history") as tab:
        gr.Markdown("Everything you generated, newest first. Search it by words or by an image.")
        with gr.Row():
            text = gr.Textbox(label="Search by text", placeholder="lighthouse", scale=3)
            image = gr.Image(type="filepath", label="…or by image", sources=["upload", "clipboard"], height=140,
                             scale=1)
            with gr.Column(scale=1):
                limit = gr.Slider(1, 200, value=40, step=1, label="Show")
                go = gr.Button("Search", variant="primary")
                newest = gr.Button("Newest first")
        msg = gr.Markdown()
        pics = gr.Gallery(label="Your images", columns=6, height="auto", allow_preview=False, elem_id="history-gallery")
        details = gr.Markdown("Click an image for its settings and lineage.")
        reuse = gr.Button("Reuse these settings in Create →")
        with gr.Accordion("Raw result (JSON)", open=False):
            raw = gr.JSON()
        entries, picked = gr.State([]), gr.State({})
        out = [pics, msg, raw, entries]
        go.click(handler(history), [text, image, limit], out, api_name="history", preprocess=False)
        text.submit(handler(history), [text, image, limit], out, api_visibility="private", preprocess=False)
        newest.click(handler(lambda n: history("", None, n)), limit, out, api_visibility="private")
        tab.select(handler(lambda n: history("", None, n)), limit, out, api_visibility="private")
        pics.select(pick, entries, [details, picked], api_visibility="private")
    return HistoryControls(reuse, picked)
