"""build_ui(studio) -> gr.Blocks: layout and thin handlers only; every event has an api_name."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from studio.errors import StudioError
from studio.firstrun import FirstRun
from studio.images import open_image
from studio.service import Filters, Hit, SearchResult, Studio

COLUMNS = ["similarity", "prompt", "images", "seed", "cfg", "steps", "sampler", "size"]
WIDTHS = ["7%", "51%", "6%", "10%", "5%", "5%", "8%", "8%"]


def _rows(result: SearchResult) -> list[list[Any]]:
    rows = []
    for hit in result.results:
        s = hit.settings[0] if hit.settings else {}
        rows.append([round(1 - hit.distance, 3), hit.prompt, hit.metadata.get("image_count", ""),
                     s.get("seed", ""), s.get("cfg", ""), s.get("steps", ""), s.get("sampler", ""), s.get("size", "")])
    return rows


def _gallery(studio: Studio, hits: list[Hit]) -> list[tuple[Image.Image, str]]:
    out = []
    for hit in hits:
        data = studio.image_bytes(hit)
        if data is not None:
            out.append((open_image(data, name=hit.id), hit.prompt[:120]))
    return out


def _note(result: SearchResult) -> str:
    if not result.results:
        return "No results." + (" Some were hidden by the NSFW filter." if result.hidden else "")
    return f"{len(result.results)} results" + (f" ({result.hidden} hidden by the filters)" if result.hidden else "")


def build_ui(studio: Studio, first_run: FirstRun | None = None) -> gr.Blocks:
    def search(text: str, target: str, nsfw: bool, k: float) -> tuple[list, list, str, dict]:
        try:
            result = studio.search(text, target, int(k), Filters(nsfw=nsfw))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        gallery = _gallery(studio, result.results) if target == "images" else []
        return _rows(result), gallery, _note(result), result.to_dict()

    def reverse(image: Image.Image | None, nsfw: bool, k: float) -> tuple[list, list, str, dict]:
        if image is None:
            raise gr.Error("Drop an image first (PNG, JPEG or WebP).", print_exception=False)
        try:
            result = studio.reverse(image, int(k), Filters(nsfw=nsfw))
            similar = studio.similar_images(image, int(k), Filters(nsfw=nsfw))
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return _rows(result), _gallery(studio, similar.results), _note(result), result.to_dict()

    def status() -> str:
        return first_run.status_markdown() if first_run else ""

    with gr.Blocks(title="Prompt Studio") as demo:
        gr.Markdown("# Prompt Studio\nSearch real Stable Diffusion prompts (DiffusionDB) by idea or by image.")
        status_md = gr.Markdown(status())
        with gr.Tab("Explore"):
            with gr.Row():
                idea = gr.Textbox(label="Idea", placeholder="a lighthouse in a storm, oil painting", scale=4)
                target = gr.Radio(["prompts", "images"], value="prompts", label="Find", scale=1)
            with gr.Row():
                nsfw = gr.Checkbox(label="Show NSFW results", value=False)
                k = gr.Slider(1, 50, value=10, step=1, label="Results")
                go = gr.Button("Search", variant="primary")
            note = gr.Markdown()
            table = gr.Dataframe(headers=COLUMNS, label="Prompts", wrap=True, interactive=False, column_widths=WIDTHS)
            gallery = gr.Gallery(label="Images", columns=4, height="auto")
            with gr.Accordion("Raw result (JSON)", open=False):
                raw = gr.JSON()
            outputs = [table, gallery, note, raw]
            go.click(search, [idea, target, nsfw, k], outputs, api_name="search")
            idea.submit(search, [idea, target, nsfw, k], outputs, api_name=False)
        with gr.Tab("Reverse"):
            with gr.Row():
                image = gr.Image(type="pil", label="An image", image_mode="RGB", sources=["upload", "clipboard"])
                with gr.Column():
                    r_nsfw = gr.Checkbox(label="Show NSFW results", value=False)
                    r_k = gr.Slider(1, 50, value=10, step=1, label="Results")
                    r_go = gr.Button("Find the prompts", variant="primary")
            r_note = gr.Markdown()
            r_table = gr.Dataframe(headers=COLUMNS, label="Prompts that likely made it", wrap=True, interactive=False,
                                   column_widths=WIDTHS)
            r_gallery = gr.Gallery(label="Similar images", columns=4, height="auto")
            with gr.Accordion("Raw result (JSON)", open=False):
                r_raw = gr.JSON()
            r_go.click(reverse, [image, r_nsfw, r_k], [r_table, r_gallery, r_note, r_raw], api_name="reverse")
        if first_run is not None:
            timer = gr.Timer(1.0)
            timer.tick(status, None, status_md, api_name=False, show_progress="hidden")
            demo.load(status, None, status_md, api_name=False)
    return demo
