"""Library: what the store holds, ingesting a file or folder with a progress bar, and model status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import InputError, StudioError
from studio.studio import Studio
from studio.ui.common import handler, said_in
from studio.ui.defaults import UIDefaults
from studio.ui.text import inert, models_markdown, stats_markdown

HOW_TO = """**When a model is missing** the rest of the studio keeps working:

* **CLIP** (every search, the library): `python -m studio models --download clip` once while online, or put a CLIP
  folder in `models/` and set `STUDIO_CLIP_MODEL`.
* **LLM** (Rewrite, Compare): the starter model SmolLM2 works out of the box; for better rewrites put a Llama 2 7B
  chat GGUF in `models/` or set `STUDIO_LLM_MODEL` (`python -m studio models --download llm`).
* **SDXL** (Create, Compare): `python -m studio models --download sdxl` (about 7 GB), or set `STUDIO_SDXL_MODEL` to
  a diffusers folder or a single `.safetensors` (SDXL-Turbo/Lightning: use the *fast* profile).

Restart the studio after adding a model. See `models/README.md` for what goes where."""


def confined(source: str, roots: tuple[str, ...]) -> None:
    """Served beyond this machine, a typed path must lie under one of `roots` (links followed), so that a
    visitor cannot make the server read any file it can; hub specs and uploads are not server paths."""
    if source.startswith("hf:"):  # a hub dataset, unless a local folder of that name is what load_dataset reads
        source = source[3:].split(":")[0]
        if not Path(source).is_dir():
            return
    if not roots or source.startswith("hub:"):
        return
    real = Path(source).expanduser().resolve()
    if not any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        raise InputError(f"This studio is served to other machines, so the Library reads server files only under "
                         f"{', '.join(roots)}. Move {Path(source).name or source} there, or upload it.")


@dataclass
class LibraryControls:
    tab: gr.Tab
    stats: gr.Markdown  # refreshed when the first run has added the sample
    raw: gr.JSON


def library_tab(studio: Studio, defaults: UIDefaults) -> LibraryControls:
    def stats() -> tuple[str, dict]:
        s = studio.stats()
        return stats_markdown(s), s.to_dict()

    def models() -> str:
        return models_markdown(studio.models())

    def ingest(path: str, upload: Any, limit: float | None,
               progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, str, dict]:
        source = upload if upload else (path or "").strip()
        if not source:
            raise InputError("Give a file or folder: a folder of images (A1111, ComfyUI, Fooocus, InvokeAI, NovelAI, "
                             "your outputs/), a prompt table (.csv/.parquet/.jsonl), a datasets save_to_disk folder, "
                             "a DiffusionDB part folder or zip, or (online) hf:ORG/NAME or hub:2m:1-2.")
        if defaults.space and not upload:
            raise InputError("In this demo Space, upload a file to ingest; reading the server's folders is off.")
        if not upload:
            confined(str(source), defaults.ingest_roots)
        progress(0, desc="Reading…")

        def tick(phase: str, done: int, total: int) -> None:
            progress((done, total) if total else None, desc=f"Ingesting {phase}", unit=phase)

        limit_n = int(limit) if limit and limit > 0 else None
        shown = Path(str(upload)).name if upload else str(source)  # the user's file name, not Gradio's temp copy
        try:
            report = studio.ingest(str(source), limit=limit_n, progress=tick)
        except StudioError as exc:
            raise type(exc)(str(exc).replace(str(source), shown)) from exc
        text, raw = stats()
        return f"✅ {inert(report.summary().replace(str(source), shown))}", text, raw

    with gr.Tab("Library", id="library") as tab:
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown("### What the library holds")
                stats_md = gr.Markdown()
                refresh = gr.Button("Refresh", size="sm")
            with gr.Column(scale=2):
                gr.Markdown("### Models")
                models_md = gr.Markdown()
        gr.Markdown("### Add to the library")
        with gr.Row():
            path = gr.Textbox(label="A file or folder on this machine (images from any tool, a table, a datasets "
                              "folder), or hf:ORG/NAME; Enter ingests", scale=3, interactive=not defaults.space,
                              elem_id="library-path",
                              placeholder="data/diffusiondb-sample/metadata-2m-every400th-image_name-prompt.csv")
            upload = gr.File(label="…or upload one (.csv, .parquet, .zip, .json)", type="filepath", scale=2,
                             file_types=[".csv", ".parquet", ".zip", ".json"])
            limit = gr.Number(value=0, precision=0, label="At most (0: all)", scale=1)
        go = gr.Button("Ingest", variant="primary", elem_id="library-ingest")
        ingest_msg = gr.Markdown(elem_id="library-note")
        with gr.Accordion("When a model is missing", open=False):
            gr.Markdown(HOW_TO)
        with gr.Accordion("Raw statistics (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        refresh.click(handler(stats), None, [stats_md, raw], api_name="stats")
        tab.select(handler(stats), None, [stats_md, raw], api_visibility="private")
        tab.select(handler(models), None, models_md, api_name="models")
        said_in(go.click(handler(ingest), [path, upload, limit], [ingest_msg, stats_md, raw], api_name="ingest",
                         show_progress_on=[ingest_msg], concurrency_limit=1, concurrency_id="ingest"), ingest_msg)
        said_in(path.submit(handler(ingest), [path, upload, limit], [ingest_msg, stats_md, raw],
                            api_visibility="private", show_progress_on=[ingest_msg], concurrency_limit=1,
                            concurrency_id="ingest"), ingest_msg)
    return LibraryControls(tab, stats_md, raw)
