"""build_ui(studio) -> gr.Blocks: the six tabs, wired; handlers live with their tab (studio/ui/*.py)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.firstrun import FirstRun
from studio.studio import Studio
from studio.ui.common import Cancels
from studio.ui.compare import compare_tab
from studio.ui.create import CreateControls, create_tab, settings_updates
from studio.ui.defaults import UIDefaults, ui_defaults
from studio.ui.explore import explore_tab, reverse_tab
from studio.ui.history import history_tab
from studio.ui.library import library_tab

__all__ = ["build_ui"]

INTRO = ("# Prompt Studio\nSearch real Stable Diffusion prompts (DiffusionDB) by idea or by image, rewrite ideas "
         "with a local LLM, generate with SDXL and compare, all on this machine.")
SPACE_INTRO = ("\n\n*This is the Hugging Face Space demo: smaller images and fewer steps. "
               "Run it at home for the full studio (see the README).*")


def _to_create(c: CreateControls, with_seed: bool) -> Any:
    def fill(prompt: str, settings: dict) -> list[Any]:
        return [prompt or gr.skip(), *settings_updates(settings, with_seed=with_seed), {}, gr.Tabs(selected="create")]
    return fill


def build_ui(studio: Studio, first_run: FirstRun | None = None, defaults: UIDefaults | None = None) -> gr.Blocks:
    defaults = defaults or ui_defaults(studio.settings)
    cancels = Cancels()

    def status() -> tuple[str, Any]:
        busy = first_run is not None and first_run.progress.busy
        return (first_run.status_markdown() if first_run else ""), gr.Timer(active=busy)

    with gr.Blocks(title="Prompt Studio") as demo:
        gr.Markdown(INTRO + (SPACE_INTRO if defaults.space else ""))
        status_md = gr.Markdown(first_run.status_markdown() if first_run else "")
        with gr.Tabs() as tabs:
            explore = explore_tab(studio, defaults)
            reverse = reverse_tab(studio, defaults)
            create = create_tab(studio, defaults, cancels)
            compare_tab(studio, defaults, cancels)
            history = history_tab(studio)
            library_tab(studio, defaults)

        fill_out = [create.prompt, *create.settings, create.lineage, tabs]
        for picked in (explore, reverse):  # a search result: its prompt, and its settings but not its seed
            picked.send.click(_to_create(create, with_seed=False), [picked.prompt, picked.settings], fill_out,
                              api_visibility="private")

        def reuse(entry: dict) -> list[Any]:  # a history entry: everything, the seed included
            if not entry:
                raise gr.Error("Click one of your images first.", print_exception=False)
            return [entry["prompt"], entry.get("negative_prompt") or "", *settings_updates(entry), {},
                    gr.Tabs(selected="create")]
        history.reuse.click(reuse, history.picked, [create.prompt, create.negative, *create.settings, create.lineage,
                                                    tabs], api_visibility="private")
        if first_run is not None:
            timer = gr.Timer(1.0)
            timer.tick(status, None, [status_md, timer], api_visibility="private", show_progress="hidden", queue=False)
            demo.load(status, None, [status_md, timer], api_visibility="private", queue=False)
    return demo
