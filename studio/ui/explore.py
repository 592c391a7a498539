"""Explore (an idea -> real prompts and images) and Reverse (an image -> the prompts that likely made it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.search.results import Filters
from studio.studio import Studio
from studio.ui.common import as_int, handler, said_in, uploaded_image
from studio.ui.defaults import UIDefaults
from studio.ui.views import COLUMNS, MISSING, SOURCES, WIDTHS, gallery, note, rows


@dataclass
class Picked:
    """What a tab offers the Create tab: the prompt box a clicked result fills, and its send button."""

    prompt: gr.Textbox
    send: gr.Button
    settings: gr.State


def _filters(nsfw: bool, source: str | None) -> Filters:
    source = source or "all"
    return Filters(nsfw=bool(nsfw), source=SOURCES[source] if source in SOURCES else source)


def source_choices(studio: Studio) -> list[str]:
    """The fixed choices, then every other source the store holds (prompt libraries by name)."""
    try:
        found = {s for ix in studio.stats()["indexes"] for s in ix["by_source"]}
    except Exception:  # no store yet: the fixed choices
        found = set()
    return list(SOURCES) + sorted(found - set(SOURCES.values()) - {"?"})


def _select(table: Any, evt: gr.SelectData) -> tuple[str, dict]:
    """A clicked row -> its prompt (with a copy button) and its settings, ready for Create."""
    row = evt.row_value or []
    if len(row) < 8:
        return gr.skip(), gr.skip()
    keys = ("seed", "cfg", "steps", "sampler", "size")
    return row[1], {k: v for k, v in zip(keys, row[3:8]) if v not in ("", None, MISSING)}


def explore_tab(studio: Studio, defaults: UIDefaults) -> Picked:
    def search(text: str, target: str, nsfw: bool, k: float, source: str = "all") -> tuple[list, list, str, dict]:
        filters, k = _filters(nsfw, source), as_int(k, "k")
        result = studio.search(text, target or "prompts", k, filters)
        # The gallery always shows images of the idea's style, whichever list the table shows.
        images = result if target == "images" else studio.search(text, "images", k, filters)
        return rows(result), gallery(studio, images.results), note(result), result.to_dict()

    with gr.Tab("Explore", id="explore"):
        gr.Markdown("Type an idea: the closest **real** prompts from DiffusionDB (and your own generations), "
                    "with the settings of their images. Click a row to pick its prompt.")
        with gr.Row():
            idea = gr.Textbox(label="Idea", placeholder="a lighthouse in a storm, oil painting", scale=4,
                              elem_id="explore-idea")
            target = gr.Radio(["prompts", "images"], value="prompts", label="List", scale=1)
        with gr.Row():
            nsfw = gr.Checkbox(label="Show NSFW results", value=False)
            # Any source name the store holds is accepted (API callers too); the list refreshes on focus.
            source = gr.Dropdown(list(SOURCES), value="all", label="Source", scale=1, allow_custom_value=True)
            source.focus(lambda: gr.update(choices=source_choices(studio)), None, source, api_visibility="private")
            k = gr.Slider(1, 50, value=defaults.results, step=1, label="Results")
            go = gr.Button("Search", variant="primary", elem_id="explore-search")
        msg = gr.Markdown(elem_id="explore-note")
        table = gr.Dataframe(headers=COLUMNS, label="Prompts", wrap=True, interactive=False, column_widths=WIDTHS,
                             buttons=["copy", "fullscreen"], elem_id="explore-table")
        with gr.Row():
            picked = gr.Textbox(label="Picked prompt", buttons=["copy"], scale=5, lines=2,
                                placeholder="Click a row above", elem_id="explore-picked")
            send = gr.Button("Use in Create →", scale=1, elem_id="explore-send")
        picked_settings = gr.State({})
        images = gr.Gallery(label="Matching images", columns=6, height=320)
        with gr.Accordion("Raw result (JSON)", open=False):
            raw = gr.JSON()
        outputs = [table, images, msg, raw]
        for event in (go.click(handler(search), [idea, target, nsfw, k, source], outputs, api_name="search",
                               show_progress_on=[msg, table]),
                      idea.submit(handler(search), [idea, target, nsfw, k, source], outputs,
                                  api_visibility="private", show_progress_on=[msg, table])):
            said_in(event, msg)
        table.select(_select, table, [picked, picked_settings], api_visibility="private")
    return Picked(picked, send, picked_settings)


def reverse_tab(studio: Studio, defaults: UIDefaults) -> Picked:
    def reverse(payload: Any, nsfw: bool, k: float, source: str = "all") -> tuple[list, list, str, dict]:
        image, filters, k = uploaded_image(payload), _filters(nsfw, source), as_int(k, "k")
        result = studio.reverse(image, k, filters)
        similar = studio.similar_images(image, k, filters)
        return rows(result), gallery(studio, similar.results), note(result), result.to_dict()

    with gr.Tab("Reverse", id="reverse"):
        gr.Markdown("Drop in an image: the prompts that likely made it, with seed, cfg, steps and sampler, "
                    "and the stored images most like it.")
        with gr.Row():
            image = gr.Image(type="filepath", label="An image", sources=["upload", "clipboard"], height=320,
                             elem_id="reverse-image")
            with gr.Column():
                nsfw = gr.Checkbox(label="Show NSFW results", value=False)
                source = gr.Dropdown(list(SOURCES), value="all", label="Source", allow_custom_value=True)
                source.focus(lambda: gr.update(choices=source_choices(studio)), None, source,
                             api_visibility="private")
                k = gr.Slider(1, 50, value=defaults.results, step=1, label="Results")
                go = gr.Button("Find the prompts", variant="primary", elem_id="reverse-go")
        msg = gr.Markdown(elem_id="reverse-note")
        table = gr.Dataframe(headers=COLUMNS, label="Prompts that likely made it", wrap=True, interactive=False,
                             column_widths=WIDTHS, buttons=["copy", "fullscreen"], elem_id="reverse-table")
        with gr.Row():
            picked = gr.Textbox(label="Picked prompt", buttons=["copy"], scale=5, lines=2,
                                placeholder="Click a row above")
            send = gr.Button("Use in Create →", scale=1)
        picked_settings = gr.State({})
        images = gr.Gallery(label="Similar images", columns=6, height=320)
        with gr.Accordion("Raw result (JSON)", open=False):
            raw = gr.JSON()
        # preprocess=False: the handler opens the upload itself, so a broken file gets our message.
        said_in(go.click(handler(reverse), [image, nsfw, k, source], [table, images, msg, raw], api_name="reverse",
                         preprocess=False, show_progress_on=[msg, table]), msg)
        table.select(_select, table, [picked, picked_settings], api_visibility="private")
    return Picked(picked, send, picked_settings)
