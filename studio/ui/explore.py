"""Explore (an idea -> real prompts, images first) and Reverse (an image -> the prompts that likely made it).
A click on an image or a row picks its prompt and settings for Create."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from studio.studio import MAX_QUERY_CHARS, Filters, SearchResult, Studio
from studio.ui.common import as_int, quiet, said_in, uploaded_image
from studio.ui.defaults import UIDefaults
from studio.ui.limits import limited
from studio.ui.text import info_markdown, link_markdown
from studio.ui.views import (
    COLUMNS, DEFAULT_SOURCE, SOURCES, WIDTHS, gallery_picks, info_pick, note, page_json, row_picks, rows,
)

PICK_HINT = "Click an image or a row to pick its prompt."


@dataclass
class Picked:
    """What a tab offers the Create tab: the prompt box a clicked result fills, and its send button."""

    prompt: gr.Textbox
    send: gr.Button
    settings: gr.State
    add: gr.Button  # + the picked prompt to the examples the LLM sees (Create)
    note: gr.Markdown  # the tab's own status line
    info: gr.State | None = None  # Reverse: the dropped image's own prompt and settings (PNG Info)
    info_send: gr.Button | None = None  # …and its Use in Create button


def _filters(nsfw: bool, source: str | None) -> Filters:
    source = source or "all"
    return Filters(nsfw=bool(nsfw), source=SOURCES[source] if source in SOURCES else source)


def source_choices(studio: Studio) -> list[str]:
    """The fixed choices, then every other source the store holds (prompt libraries by name)."""
    try:
        found = studio.stats().sources()
    except Exception:  # no store yet: the fixed choices
        found = set()
    named = {v for v in SOURCES.values() if isinstance(v, str)}  # "mine" stays split too: generated | user
    return list(SOURCES) + sorted(found - named)


def empty_note(studio: Studio, source: str, loading: Callable[[], str | None]) -> str:
    """What is true when a search finds nothing: the sample still loading, nothing of that source yet."""
    if (still := loading()) is not None:
        return f"⏳ {still}: search again in a moment."
    wanted = _filters(True, source).sources
    try:
        held = studio.stats().by_source("prompts")
    except Exception:
        held = {}
    if wanted and not any(held.get(s) for s in wanted):
        if set(wanted) <= {"generated", "user"}:
            return "Nothing of yours yet: make something in **Create**, or ingest a folder of your images in **Library**."
        return f"The library holds no {source} prompts yet: pick **all** in Source, or ingest some in **Library**."
    return "No results."


def _select(table: Any, links: list, evt: gr.SelectData) -> tuple[Any, ...]:
    """A clicked row -> its prompt (with a copy button), its settings ready for Create, and its link. All of it
    from what the server kept for that row: the page's cells are cut (prompts) and would be rounded (seeds)."""
    at = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not links or not isinstance(at, int) or not 0 <= at < len(links):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    picked = {k: v for k, v in links[at].items() if k != "url"}
    return (picked["prompt"], picked, gr.update(interactive=True), gr.update(interactive=True),
            link_markdown(links[at].get("url")))


def _select_image(picks: list[dict], evt: gr.SelectData) -> tuple[Any, Any, Any]:
    """A clicked picture -> its prompt and its image's settings (the gallery also opens it full size)."""
    if not picks or evt.index is None or evt.index >= len(picks):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    picked = picks[evt.index]
    return (picked["prompt"], picked, gr.update(interactive=True), gr.update(interactive=True),
            link_markdown(picked.get("url")))


def _filter_row(studio: Studio, defaults: UIDefaults, tab: str) -> tuple[Any, Any, Any]:
    nsfw = gr.Checkbox(label="Show NSFW results", value=False)
    # Any source name the store holds is accepted (API callers too); the list refreshes on focus.
    source = gr.Dropdown(list(SOURCES), value=DEFAULT_SOURCE, label="Source", scale=1, elem_id=f"{tab}-source",
                         allow_custom_value=True)
    source.focus(lambda: gr.update(choices=source_choices(studio)), None, source, api_visibility="private")
    k = gr.Slider(1, 50, value=defaults.results, step=1, label="Results", elem_id=f"{tab}-k")
    return nsfw, source, k


def explore_tab(studio: Studio, defaults: UIDefaults, loading: Callable[[], str | None] = lambda: None) -> Picked:
    """loading(): what the first run is still adding ("the sample is still loading (1,216/4,935)"), or None."""
    def search(text: str, target: str, nsfw: bool, k: float, source: str = DEFAULT_SOURCE) -> tuple:
        filters, k = _filters(nsfw, source), as_int(k, "k")
        result = studio.search(text, target or "prompts", k, filters)
        # The gallery always shows images of the idea's style, whichever list the table shows.
        images = result if target == "images" else studio.search(text, "images", k, filters)
        pics, picks = gallery_picks(studio, images.results)
        said = note(result, empty_note(studio, source, loading) if not result.results else None)
        if result.results and (still := loading()) is not None:
            said += f" so far: {still}"
        return rows(result), pics, said, page_json(result.to_dict()), picks, row_picks(result)

    with gr.Tab("Explore", id="explore"):
        gr.Markdown("Type an idea: the closest **real** prompts from DiffusionDB (and your own work), images "
                    "first. " + PICK_HINT)
        with gr.Row():
            idea = gr.Textbox(label="Idea", placeholder="a lighthouse in a storm, oil painting", scale=4,
                              elem_id="explore-idea")
            target = gr.Radio(["prompts", "images"], value="prompts", label="List", scale=1)
            go = gr.Button("Search", variant="primary", elem_id="explore-search", scale=1)
        with gr.Row():
            nsfw, source, k = _filter_row(studio, defaults, "explore")
        msg = gr.Markdown(elem_id="explore-note")
        limited(idea, MAX_QUERY_CHARS, "The search box", msg)
        images = gr.Gallery(label="Images of this style (click: pick its prompt, and see it full size)", columns=5,
                            height=300, object_fit="contain", allow_preview=True, elem_id="explore-gallery")
        with gr.Row():
            picked = gr.Textbox(label="Picked prompt", buttons=["copy"], scale=5, lines=2, interactive=False,
                                placeholder=PICK_HINT, elem_id="explore-picked")
            with gr.Column(scale=1, min_width=180):
                send = gr.Button("Use in Create →", interactive=False, elem_id="explore-send")
                add = gr.Button("+ Add to the LLM's examples", size="sm", interactive=False, elem_id="explore-add")
        link = gr.Markdown(elem_id="explore-link")
        table = gr.Dataframe(headers=COLUMNS, label="Prompts", wrap=True, interactive=False, column_widths=WIDTHS,
                             buttons=["copy", "fullscreen"], elem_id="explore-table")
        picked_settings, picks, links = gr.State({}), gr.State([]), gr.State([])
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        outputs = [table, images, msg, raw, picks, links]
        # Progress (and so any error pill) on the status line only: an error is said there once, the results stay.
        for event in (go.click(quiet(search), [idea, target, nsfw, k, source], outputs, api_name="search",
                               show_progress_on=[msg]),
                      idea.submit(quiet(search), [idea, target, nsfw, k, source], outputs,
                                  api_visibility="private", show_progress_on=[msg])):
            said_in(event, msg)
        table.select(_select, [table, links], [picked, picked_settings, send, add, link], api_visibility="private")
        images.select(_select_image, picks, [picked, picked_settings, send, add, link], api_visibility="private")
    return Picked(picked, send, picked_settings, add, msg)


def reverse_tab(studio: Studio, defaults: UIDefaults) -> Picked:
    def reverse(payload: Any, nsfw: bool, k: float, source: str = DEFAULT_SOURCE) -> tuple:
        image, filters, k = uploaded_image(payload), _filters(nsfw, source), as_int(k, "k")
        result: SearchResult = studio.reverse(image, k, filters)
        similar = studio.similar_images(image, k, filters)
        pics, picks = gallery_picks(studio, similar.results)
        said = note(result, empty_note(studio, source, lambda: None) if not result.results else None)
        return rows(result), pics, said, page_json(result.to_dict()), picks, row_picks(result)

    def own_info(payload: Any) -> tuple[Any, Any, Any]:
        """The dropped file's own prompt and settings (PNG Info), shown before the neighbours; hidden for a file
        that carries none."""
        path = payload.get("path") if isinstance(payload, dict) else payload
        info = studio.image_info(str(path)) if path else None
        if info is None:
            return gr.Group(visible=False), "", {}
        return gr.Group(visible=True), info_markdown(info), info_pick(info)

    def cleared() -> tuple[Any, ...]:
        """A new (or no) image: the results of the last one no longer match it, whatever comes of this one."""
        return ([], [], "", None, [], [], "", {}, gr.update(interactive=False), gr.update(interactive=False), "",
                gr.Group(visible=False), "", {})

    with gr.Tab("Reverse", id="reverse"):
        gr.Markdown("Drop in an image: the prompts that likely made it, with seed, cfg, steps and sampler, "
                    "and the stored images most like it. " + PICK_HINT)
        with gr.Row():
            image = gr.Image(type="filepath", label="An image", sources=["upload", "clipboard"], height=320,
                             elem_id="reverse-image")
            with gr.Column():
                nsfw, source, k = _filter_row(studio, defaults, "reverse")
                go = gr.Button("Find the prompts", variant="primary", elem_id="reverse-go")
        msg = gr.Markdown(elem_id="reverse-note")
        with gr.Group(visible=False, elem_id="reverse-info-box") as info_box:
            with gr.Row():
                info_md = gr.Markdown(elem_id="reverse-info", padding=True)
                info_send = gr.Button("Use in Create →", variant="primary", size="sm", scale=0, min_width=180,
                                      elem_id="reverse-info-send")
        table = gr.Dataframe(headers=COLUMNS, label="Prompts that likely made it", wrap=True, interactive=False,
                             column_widths=WIDTHS, buttons=["copy", "fullscreen"], elem_id="reverse-table")
        with gr.Row():
            picked = gr.Textbox(label="Picked prompt", buttons=["copy"], scale=5, lines=2, interactive=False,
                                placeholder=PICK_HINT, elem_id="reverse-picked")
            with gr.Column(scale=1, min_width=180):
                send = gr.Button("Use in Create →", interactive=False, elem_id="reverse-send")
                add = gr.Button("+ Add to the LLM's examples", size="sm", interactive=False, elem_id="reverse-add")
        link = gr.Markdown(elem_id="reverse-link")
        images = gr.Gallery(label="Similar images", columns=6, height=300, object_fit="contain", allow_preview=True,
                            elem_id="reverse-gallery")
        picked_settings, picks, links = gr.State({}), gr.State([]), gr.State([])
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        info = gr.State({})
        # preprocess=False: the handler opens the upload itself, so a broken file gets our message.
        ins, outs = [image, nsfw, k, source], [table, images, msg, raw, picks, links]
        said_in(go.click(quiet(reverse), ins, outs, api_name="reverse", preprocess=False, show_progress_on=[msg]), msg)
        clear_out = [*outs, picked, picked_settings, send, add, link, info_box, info_md, info]
        private = {"api_visibility": "private"}
        image.clear(cleared, None, clear_out, queue=False, **private)
        # A drop: the old results go at once; the file's own metadata first, then its neighbours.
        dropped = image.upload(cleared, None, clear_out, queue=False, **private).then(
            quiet(own_info), image, [info_box, info_md, info], preprocess=False, **private)
        said_in(dropped.then(quiet(reverse), ins, outs, preprocess=False, show_progress_on=[msg], **private), msg)
        table.select(_select, [table, links], [picked, picked_settings, send, add, link], **private)
        images.select(_select_image, picks, [picked, picked_settings, send, add, link], **private)
    return Picked(picked, send, picked_settings, add, msg, info, info_send)
