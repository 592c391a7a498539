"""build_ui(studio) -> gr.Blocks: the six tabs, wired; handlers live with their tab (studio/ui/*.py).
page_options() -> what launch() takes for the page: a theme with no web fonts, the CSS and the keys."""

from __future__ import annotations

from typing import Any, Protocol

import gradio as gr

from studio.studio import Studio
from studio.ui.common import Cancels, handler, said_in
from studio.ui.compare import compare_tab
from studio.ui.create import CreateControls, create_tab
from studio.ui.defaults import UIDefaults, ui_defaults
from studio.ui.explore import explore_tab, reverse_tab
from studio.ui.grid import grid_tab
from studio.ui.history import history_tab
from studio.ui.library import library_tab
from studio.ui.steering import add_example
from studio.ui.page import page_options
from studio.ui.remember import remember, restore, secret_for, visitor_id
from studio.ui.text import missing_banner, stats_markdown
from studio.ui.views import for_sdxl

__all__ = ["build_ui", "page_options"]

UPLOAD_CACHE = (3600, 24 * 3600)  # Gradio's delete_cache: (every N seconds, files older than M seconds)
INTRO = ("# Prompt Studio\nSearch real Stable Diffusion prompts (DiffusionDB) by idea or by image, rewrite ideas "
         "with a local LLM, generate with SDXL and compare, all on this machine.")
SPACE_INTRO = ("\n\n*This is the Hugging Face Space demo: smaller images and fewer steps. "
               "Run it at home for the full studio (see the README).*")


class FirstRunView(Protocol):
    """What the page reads of the first launch's background job (studio.firstrun.FirstRun, built by the
    composition root, studio/app.py): the UI needs only these, so it does not import that module."""

    progress: Any  # .phase, .busy

    def loading(self) -> str | None: ...

    def status_markdown(self) -> str: ...


def _to_create(c: CreateControls, source: str, exact: bool, sizes: bool | None = None) -> Any:
    """A picked record -> Create's prompt and settings, and a line under the prompt saying what came and
    what had to change for SDXL. exact (your own images, a dropped image's own metadata): seed and negative
    prompt as they were, and the size unless `sizes` is False (another tool's SD 1.x sizes suit SDXL badly)."""
    def fill(picked: dict) -> list[Any]:
        if not picked or not picked.get("prompt"):
            return [gr.skip()] * (3 + len(c.settings)) + [gr.skip(), gr.skip()]
        values, changed = for_sdxl(picked, exact=exact, sizes=sizes)
        seed = f" {picked['seed']}" if picked.get("seed") not in (None, "") else ""  # as text: exact on the page
        kept = ("prompt and every setting, seed included" if exact and sizes is None else
                "prompt, negative prompt, seed and settings" if exact else f"prompt and settings (not its seed{seed})")
        said = f"From {source}: {kept}" + (f"; {'; '.join(changed)}" if changed else "") + "."
        negative = picked.get("negative_prompt") if exact else None
        return [picked["prompt"], negative if negative is not None else gr.skip(),
                *c.panel.fill_values(values, with_seed=exact), {}, said, gr.Tabs(selected="create")]
    return fill


def build_ui(studio: Studio, first_run: FirstRunView | None = None, defaults: UIDefaults | None = None) -> gr.Blocks:
    defaults = defaults or ui_defaults(studio.settings)
    cancels = Cancels()
    loading = first_run.loading if first_run is not None else (lambda: None)

    # Gradio copies every picture it shows and every upload into its cache (GRADIO_TEMP_DIR): four files a
    # generation. Hourly, those of this app older than a day go (and all of them when the server stops).
    with gr.Blocks(title="Prompt Studio", delete_cache=UPLOAD_CACHE) as demo:
        with gr.Row():
            gr.Markdown(INTRO + (SPACE_INTRO if defaults.space else ""))
            dev = gr.Checkbox(label="Developer view (raw JSON)", value=False, scale=0, min_width=220,
                              elem_id="dev-view")
        status_md = gr.Markdown(first_run.status_markdown() if first_run else "", elem_id="status")
        banner = gr.Markdown(missing_banner(studio.models()), elem_id="models-banner")
        with gr.Group(visible=False, elem_id="status-hub-box") as hub_box:  # first run: real pictures, one click
            hub_note = gr.Markdown(elem_id="status-hub-note")
            hub_go = gr.Button("Add real DiffusionDB images", size="sm", elem_id="status-hub")
        secret = secret_for(studio.settings.home)
        visitor, loaded = visitor_id(demo, secret)
        with gr.Tabs() as tabs:
            explore = explore_tab(studio, defaults, loading)
            reverse = reverse_tab(studio, defaults)
            create = create_tab(studio, defaults, cancels, visitor, loaded)
            compare = compare_tab(studio, defaults, cancels, visitor, loaded)
            grid = grid_tab(studio, defaults, cancels)
            history = history_tab(studio, defaults.ingest_roots)
            library = library_tab(studio, defaults)

        fill_out = [create.prompt, create.negative, *create.settings, create.lineage, create.note, tabs]
        private = {"api_visibility": "private", "queue": False}
        for picked, name in ((explore, "Explore"), (reverse, "Reverse")):  # its settings for SDXL, not its seed
            picked.send.click(_to_create(create, name, exact=False), picked.settings, fill_out, **private)
        reverse_info = _to_create(create, "the dropped image's own metadata", exact=True, sizes=False)
        reverse.info_send.click(reverse_info, reverse.info, fill_out, **private)
        create.image_read.success(reverse_info, create.image_info, fill_out, **private)  # dropped in Create
        history.reuse.click(_to_create(create, "History (your image)", exact=True), history.picked, fill_out,
                            **private)
        compare.send.click(_to_create(create, "Compare (the ★ image)", exact=True), compare.winner, fill_out,
                           **private)
        grid.send.click(_to_create(create, "Grid (its best row)", exact=True), grid.winner, fill_out, **private)
        steer = create.steer
        for source in (explore, reverse, history):  # a pick or one of your images as an example for the LLM
            source.add.click(add_example, [source.settings, steer.choices, steer.examples],
                             [steer.examples, steer.choices, source.note], **private)
        dev.change(None, dev, None, js="(on) => { document.body.classList.toggle('studio-dev', on); return []; }",
                   **private)

        if first_run is not None:
            said_ready = gr.State(False)

            def status(ready_before: bool) -> tuple[Any, ...]:
                p = first_run.progress
                text = first_run.status_markdown()
                ready = p.phase == "ready"
                refresh = ready and not ready_before  # the sample just went in: the Library's counts too
                stats = studio.stats() if refresh else None
                offer = studio.hub_offer() if refresh and getattr(p, "pictures", False) else None
                shown = ((gr.update(visible=True), offer.markdown(), gr.update(value=offer.button(),
                                                                             interactive=not offer.offline))
                         if offer else (gr.skip(),) * 3)
                return (text, gr.Timer(active=p.busy or bool(text)), ready,
                        stats_markdown(stats) if stats else gr.skip(), stats.to_dict() if stats else gr.skip(), *shown)

            timer = gr.Timer(1.0)
            outs = [status_md, timer, said_ready, library.stats, library.raw, hub_box, hub_note, hub_go]
            timer.tick(status, said_ready, outs, show_progress="hidden", **private)
            demo.load(status, said_ready, outs, **private)
        said_in(hub_go.click(handler(library.add_pictures), None, [hub_note, library.stats, library.raw],
                             api_visibility="private", show_progress_on=[hub_note], concurrency_limit=1,
                             concurrency_id="ingest"), hub_note)
        demo.load(lambda: missing_banner(studio.models()), None, banner, **private)
        # A reload loses nothing typed. The stores sit at the page's root: a BrowserState inside a tab that is
        # not shown at load reads nothing from the browser (seen here), so restore would find it empty.
        for key, boxes in (("create", create.remembered), ("compare", compare.remembered)):
            restore(demo, remember(key, boxes, secret), boxes)
    return demo
