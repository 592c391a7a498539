"""Library: what the store holds, ingesting a file or folder with a progress bar, and model status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import InputError, StudioError
from studio.studio import UPLOAD_TYPES, Studio
from studio.ui.common import handler, quiet, said_in
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
    note: gr.Markdown  # the Library's status line
    sources: gr.Dropdown  # "Remove a source"'s choices, refreshed by whatever adds a source
    add_pictures: Any  # the handler of "Add real DiffusionDB images" (the first run's banner offers it too)


def _paths(upload: Any) -> list[str]:
    """Gradio's upload value (one path, a list of them, or nothing) -> paths."""
    if not upload:
        return []
    return [str(u) for u in (upload if isinstance(upload, (list, tuple)) else [upload])]


def source_names(studio: Studio) -> list[str]:
    """Every source the store holds records of, for "Remove a source"."""
    try:
        return sorted(studio.stats().sources())
    except StudioError:
        return []


def library_tab(studio: Studio, defaults: UIDefaults) -> LibraryControls:
    def stats() -> tuple[str, dict]:
        s = studio.stats()
        return stats_markdown(s), s.to_dict()

    def models() -> str:
        return models_markdown(studio.models())

    def ingest(path: str, upload: Any, limit: float | None,
               progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, str, dict]:
        uploads = _paths(upload)
        source = (path or "").strip()
        if not uploads and not source:
            raise InputError("Give a file or folder: a folder of images (A1111, ComfyUI, Fooocus, InvokeAI, NovelAI, "
                             "your outputs/), a prompt table (.csv/.parquet/.jsonl), a datasets save_to_disk folder, "
                             "a DiffusionDB part folder or zip, or (online) hf:ORG/NAME or hub:2m:1-2; or upload "
                             "images, a .zip of a folder or a table.")
        if defaults.space and not uploads:
            raise InputError("In this demo Space, upload a file to ingest; reading the server's folders is off.")
        progress(0, desc="Reading…")

        def tick(phase: str, done: int, total: int) -> None:
            progress((done, total) if total else None, desc=f"Ingesting {phase}", unit=phase)

        limit_n = int(limit) if limit and limit > 0 else None
        if uploads:  # the user's file names in every message, not Gradio's temporary copies
            reports = studio.ingest_uploads([(u, Path(u).name) for u in uploads], limit=limit_n, progress=tick)
            said = " ".join(r.summary() for r in reports)
        else:
            confined(source, defaults.ingest_roots)
            said = studio.ingest(source, limit=limit_n, progress=tick).summary()
        text, raw = stats()
        return f"✅ {inert(said)}", text, raw

    def add_pictures(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, str, dict]:
        """One click: DiffusionDB's first part zips (downloaded once, resumed when stopped), then ingested."""
        offer = studio.hub_offer()
        if offer.offline:
            raise InputError(offer.markdown().replace("**Real pictures for Explore**: ", ""))
        progress(0, desc=f"Downloading {offer.spec}: {offer.left_text} to fetch…")

        def tick(phase: str, done: int, total: int) -> None:
            progress((done, total) if total else None, desc=f"Ingesting {phase}", unit=phase)

        report = studio.ingest(offer.spec, progress=tick)
        text, raw = stats()
        return f"✅ {inert(report.summary())} Explore's *Images of this style* now has real pictures.", text, raw

    def offer_view() -> tuple[str, Any]:
        offer = studio.hub_offer()
        return offer.markdown(), gr.update(value=offer.button(), interactive=not offer.offline)

    def remove(source: str | None, sure: bool,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str, dict, Any, bool]:
        if not source:
            raise InputError("Pick the source to remove first.")
        held = {k: studio.stats().by_source(k).get(source, 0) for k in ("prompts", "images")}
        if not sure:
            raise InputError(f"Nothing was removed. Tick *Yes, remove {source}* to take out its "
                             f"{held['prompts']:,} prompts and {held['images']:,} images (prompts other sources "
                             "also hold stay; files on disk are not touched).")

        def tick(phase: str, done: int, total: int) -> None:
            progress(None, desc=f"{done:,} {phase}")

        report = studio.remove_source(source, progress=tick)
        text, raw = stats()
        return f"✅ {inert(report.summary())}", text, raw, gr.update(choices=source_names(studio), value=None), False

    with gr.Tab("Library", id="library") as tab:
        with gr.Row():
            with gr.Column(scale=3, min_width=420):  # at 800 px the two stack: each table has the whole width
                gr.Markdown("### What the library holds")
                stats_md = gr.Markdown(elem_id="library-stats")
                refresh = gr.Button("Refresh", size="sm")
            with gr.Column(scale=2, min_width=420):
                gr.Markdown("### Models")
                models_md = gr.Markdown(elem_id="library-models")
        gr.Markdown("### Add to the library")
        with gr.Row():
            path = gr.Textbox(label="A file or folder on this machine (images from any tool, a table, a datasets "
                              "folder), or hf:ORG/NAME; Enter ingests", scale=3, interactive=not defaults.space,
                              elem_id="library-path",
                              placeholder="data/diffusiondb-sample/metadata-2m-every400th-image_name-prompt.csv")
            upload = gr.File(label="…or upload images, a .zip of a folder, or a table (.csv, .parquet, .jsonl)",
                             type="filepath", file_count="multiple", scale=2, file_types=list(UPLOAD_TYPES),
                             elem_id="library-upload")
            limit = gr.Number(value=0, precision=0, label="At most (0: all)", scale=1)
        go = gr.Button("Ingest", variant="primary", elem_id="library-ingest")
        ingest_msg = gr.Markdown(elem_id="library-note")
        with gr.Group(elem_id="library-hub-box"):
            hub_md = gr.Markdown(elem_id="library-hub-note")
            hub_btn = gr.Button("Add real DiffusionDB images", elem_id="library-hub", size="sm")
        with gr.Accordion("Remove a source (one ingested by mistake)", open=False, elem_id="library-remove-box"):
            with gr.Row():
                gone = gr.Dropdown(choices=[], label="Source", scale=2, elem_id="library-remove-source")
                sure = gr.Checkbox(label="Yes, remove it: its prompts and images leave the library", value=False,
                                   scale=2, elem_id="library-remove-confirm")
                drop = gr.Button("Remove", variant="stop", scale=1, elem_id="library-remove")
        with gr.Accordion("When a model is missing", open=False):
            gr.Markdown(HOW_TO)
        with gr.Accordion("Raw statistics (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        outputs = [ingest_msg, stats_md, raw]  # /ingest's three outputs, as scripts read them
        refresh.click(handler(stats), None, [stats_md, raw], api_name="stats")
        tab.select(handler(stats), None, [stats_md, raw], api_visibility="private")
        tab.select(handler(models), None, models_md, api_name="models")
        tab.select(lambda: gr.update(choices=source_names(studio)), None, gone, api_visibility="private", queue=False)
        tab.select(handler(offer_view), None, [hub_md, hub_btn], api_visibility="private", queue=False)
        busy = {"show_progress_on": [ingest_msg], "concurrency_limit": 1, "concurrency_id": "ingest"}
        choices = {"fn": lambda: gr.update(choices=source_names(studio)), "inputs": None, "outputs": gone,
                   "api_visibility": "private", "queue": False}
        for event in (go.click(quiet(ingest), [path, upload, limit], outputs, api_name="ingest", **busy),
                      path.submit(quiet(ingest), [path, upload, limit], outputs, api_visibility="private", **busy),
                      hub_btn.click(quiet(add_pictures), None, outputs, api_name="add_pictures", **busy)):
            said_in(event, ingest_msg)
            event.success(**choices)  # a new source can be removed at once
        said_in(drop.click(quiet(remove), [gone, sure], [*outputs, gone, sure], api_name="remove_source", **busy),
                ingest_msg)
    return LibraryControls(tab, stats_md, raw, ingest_msg, gone, add_pictures)
