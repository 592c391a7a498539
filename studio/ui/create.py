"""Create: idea -> retrieved prompts -> the rewrite streaming in -> generate with live previews, cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.generate.request import (
    MAX_CFG, MAX_IMAGES, MAX_SIDE, MAX_STEPS, MIN_SIDE, PROFILES, SCHEDULERS, scheduler_name,
)
from studio.search.results import Filters, Hit
from studio.studio import Studio
from studio.ui.common import GPU, Cancels, as_int, handler, plain_json, said_in, seed_or_none, session_of, streamed
from studio.ui.defaults import UIDefaults
from studio.ui.loras import lora_picker
from studio.ui.views import missing_note, settings_line

RETRIEVED = ["similarity", "prompt", "images", "settings"]


@dataclass
class CreateControls:
    """What other tabs fill: the prompt, and the settings a picked result or a history entry brings."""

    prompt: gr.Textbox
    negative: gr.Textbox
    seed: gr.Number
    steps: gr.Slider
    cfg: gr.Slider
    width: gr.Slider
    height: gr.Slider
    sampler: gr.Dropdown
    lineage: gr.State

    @property
    def settings(self) -> list[Any]:
        return [self.seed, self.steps, self.cfg, self.width, self.height, self.sampler]


def settings_updates(settings: dict[str, Any], with_seed: bool = True, with_size: bool = True) -> list[Any]:
    """A settings dict (a search hit's, the neighbours' suggestion, a history entry's) -> values for
    CreateControls.settings; what is missing or unusable with SDXL stays as it is."""
    s = dict(settings or {})
    if s.get("size") and not s.get("width"):
        w, _, h = str(s["size"]).partition("x")
        s["width"], s["height"] = w, h
    out: list[Any] = [gr.skip()] * 6
    if with_seed and str(s.get("seed", "")).lstrip("-").isdigit():
        out[0] = int(s["seed"])
    if isinstance(s.get("steps"), (int, float)) and 1 <= s["steps"] <= MAX_STEPS:
        out[1] = int(s["steps"])
    if isinstance(s.get("cfg"), (int, float)) and 0 <= s["cfg"] <= MAX_CFG:
        out[2] = float(s["cfg"])
    try:
        w, h = int(s.get("width") or 0), int(s.get("height") or 0)
    except (TypeError, ValueError):
        w = h = 0
    # DiffusionDB's images are SD 1.x sizes (512 px): SDXL draws badly below ~768, so those are not copied.
    if with_size and w >= 768 and h >= 768 and w <= MAX_SIDE and h <= MAX_SIDE:
        out[3], out[4] = w // 8 * 8, h // 8 * 8
    try:
        out[5] = scheduler_name(s["sampler"]) if s.get("sampler") else gr.skip()
    except InputError:  # DiffusionDB samplers diffusers lacks (k_lms, plms...): keep the current one
        pass
    return out


def _retrieved_rows(hits: list[Hit]) -> list[list[Any]]:
    """The LLM's examples, most similar first (the rewrite shows those with style words first: the table
    is about closeness, so it sorts by it)."""
    return [[round(1 - h.distance, 3), h.prompt, h.metadata.get("image_count", "—"),
             settings_line(h.settings[0] if h.settings else {}) or "—"] for h in sorted(hits, key=lambda h: h.distance)]


def create_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels) -> CreateControls:
    def rewrite(idea: str, k: float, nsfw: bool, progress: gr.Progress = gr.Progress()) -> Any:
        progress(0, desc="Loading the LLM…" if not studio.llm_loaded else "Retrieving…")
        table: list[list[Any]] = []
        text, suggested = "", {}
        for ev in studio.rewrite_stream(idea, as_int(k, "k"), 1, Filters(nsfw=bool(nsfw))):
            if ev.kind == "retrieved":
                table, suggested = _retrieved_rows(ev.hits or []), ev.suggested or {}
                progress(0.1, desc="Rewriting…")
                yield table, "", "✍️ Writing…", gr.skip(), suggested, gr.skip()
            elif ev.kind == "start":
                text = ""
            elif ev.kind == "token":
                text = ev.partial or text + ev.text
                yield gr.skip(), text, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif ev.kind == "done" and ev.result is not None:
                r = ev.result
                cand = r.candidates[0] if r.candidates else None
                notes = [f"**{cand.tokens} CLIP tokens**" if cand else "The model wrote nothing usable."]
                notes += [f"⚠️ {cand.warning}"] if cand and cand.warning else []
                notes += [f"ℹ️ {r.notice}"] if r.notice else []
                notes += [f"Neighbours suggest: {settings_line(r.suggested)}"] if r.suggested else []
                lineage = {"idea": r.idea, "retrieved_ids": r.retrieved_ids, "llm_model": r.model,
                           "parent": r.retrieved_ids[0] if r.retrieved_ids else None}
                yield (_retrieved_rows(r.retrieved) or table, r.text, "\n\n".join(notes), r.to_dict(),
                       r.suggested or suggested, lineage)

    def generate(prompt: str, negative: str, seed: Any, steps: float, cfg: float, width: float, height: float,
                 sampler: str, profile: str, n: float, lineage: dict | None = None,
                 request: gr.Request = None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:
        from studio.library.writeback import Lineage

        fields = {"negative_prompt": negative or "", "seed": seed_or_none(seed), "steps": as_int(steps, "steps"),
                  "cfg": float(cfg), "width": as_int(width, "width"), "height": as_int(height, "height"),
                  "n": as_int(n, "n"), "scheduler": sampler or None, "profile": profile or "standard"}
        lin = Lineage(**{k: v for k, v in (lineage or {}).items() if k in Lineage.__dataclass_fields__})
        flag = cancels.new(session_of(request))
        first = not studio.sdxl_loaded
        progress(0, desc="Loading SDXL…" if first else "Starting…")
        yield None, gr.skip(), "⏳ Loading SDXL (the first run after a launch)…" if first else "⏳ Starting…", gr.skip()
        result = None
        for kind, item in streamed(lambda emit: studio.generate(prompt, on_preview=emit, cancel=flag,
                                                                lineage=lin, **fields)):
            if kind == "event":
                (p,) = item
                progress((p.step, p.total), desc="Denoising", unit="steps")
                yield p.images[0] if p.images else None, gr.skip(), f"⏳ Step {p.step} of {p.total}…", gr.skip()
            else:
                result = item
        if result.cancelled:
            said = f"⏹️ Cancelled after {result.steps_done} of {result.request.steps} steps; nothing saved."
            yield None, [], said, plain_json(result.to_dict())
            return
        pics = [(img, f"seed {s}") for img, s in zip(result.images, result.seeds)]
        yield result.images[0], pics, result.describe().replace("\n", "  \n"), plain_json(result.to_dict())

    def cancel(request: gr.Request = None) -> str:
        return "⏹️ Cancelling at the next step…" if cancels.cancel(session_of(request)) else "Nothing is running."

    def model_notes() -> str:
        models = studio.models()
        return "  \n".join(n for n in (missing_note(models, "sdxl"), missing_note(models, "llm")) if n)

    with gr.Tab("Create", id="create"):
        notes = gr.Markdown(model_notes())
        with gr.Row():
            idea = gr.Textbox(label="Idea", placeholder="a cat sleeping on a sofa", scale=4, elem_id="create-idea")
            k = gr.Slider(0, 20, value=5, step=1, label="Examples to retrieve", scale=1)
            nsfw = gr.Checkbox(label="NSFW examples", value=False, scale=0, min_width=120)
            rewrite_btn = gr.Button("Rewrite", variant="primary", scale=1, elem_id="create-rewrite")
        retrieved = gr.Dataframe(headers=RETRIEVED, label="Retrieved prompts (the LLM's examples)", wrap=True,
                                 interactive=False, column_widths=["8%", "62%", "7%", "23%"], max_height=260)
        prompt = gr.Textbox(label="Prompt", lines=3, buttons=["copy"], elem_id="create-prompt",
                            placeholder="The rewrite streams in here; or type or paste a prompt")
        with gr.Row():
            rewrite_note = gr.Markdown(elem_id="create-rewrite-note")
            undo = gr.Button("↶ Undo rewrite", size="sm", scale=0, min_width=140, elem_id="create-undo")
        lora_picker(lambda: [lo["name"] for lo in studio.loras()], prompt)
        negative = gr.Textbox(label="Negative prompt", placeholder="blurry, low quality")
        with gr.Accordion("Settings", open=False, elem_id="create-settings"):
            with gr.Row():
                profile = gr.Radio(list(PROFILES), value=defaults.profile, label="Profile (fast: Turbo/Lightning)")
                sampler = gr.Dropdown(list(SCHEDULERS), value=defaults.sampler, label="Sampler")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                last_seed = gr.Button("♻ Last seed", size="sm", scale=0, min_width=110, elem_id="create-last-seed")
                n = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=defaults.steps, step=1, label="Steps")
                cfg = gr.Slider(0, MAX_CFG, value=defaults.cfg, step=0.5, label="CFG")
                width = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.width, step=8, label="Width")
                height = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.height, step=8, label="Height")
            suggest = gr.Button("Use suggested settings (from the retrieved neighbours)", size="sm")
        with gr.Row():
            go = gr.Button("Generate", variant="primary", elem_id="create-generate")
            stop = gr.Button("Cancel", variant="stop")
        info = gr.Markdown(elem_id="create-info")
        with gr.Row():
            preview = gr.Image(label="Live preview", interactive=False, height=384)
            images = gr.Gallery(label="Results (saved to outputs/ and your library)", columns=2, height=384,
                                elem_id="create-gallery")
        with gr.Accordion("Raw result (JSON)", open=False):
            raw = gr.JSON()
        suggested, lineage = gr.State({}), gr.State({})

        rw_out = [retrieved, prompt, rewrite_note, raw, suggested, lineage]
        before = gr.State("")  # the Prompt box as it was when Rewrite was clicked: Undo brings it back
        for trigger in (rewrite_btn.click, idea.submit):
            trigger(lambda text: text, prompt, before, api_visibility="private", queue=False)
        undo.click(lambda text: text if text else gr.skip(), before, prompt, api_visibility="private", queue=False)
        last_seed.click(lambda r: ((r or {}).get("seeds") or [gr.skip()])[0], raw, seed, api_visibility="private",
                        queue=False)
        # A failed rewrite leaves the Prompt box as it was: progress and errors show on the note under it.
        for event in (rewrite_btn.click(handler(rewrite, gpu=True), [idea, k, nsfw], rw_out, api_name="rewrite",
                                        show_progress_on=[rewrite_note], **GPU),
                      idea.submit(handler(rewrite, gpu=True), [idea, k, nsfw], rw_out, api_visibility="private",
                                  show_progress_on=[rewrite_note], **GPU)):
            said_in(event, rewrite_note)
        controls = CreateControls(prompt, negative, seed, steps, cfg, width, height, sampler, lineage)
        suggest.click(lambda s: settings_updates(s, with_seed=False), suggested, controls.settings,
                      api_visibility="private")
        said_in(go.click(handler(generate, gpu=True),
                         [prompt, negative, seed, steps, cfg, width, height, sampler, profile, n, lineage],
                         [preview, images, info, raw], api_name="generate", show_progress_on=[info, preview], **GPU),
                info)
        stop.click(handler(cancel), None, info, api_name="cancel", queue=False)
        profile.change(lambda p: (PROFILES[p].steps, PROFILES[p].cfg, PROFILES[p].scheduler), profile,
                       [steps, cfg, sampler], api_visibility="private")
        gr.on([go.click], model_notes, None, notes, api_visibility="private", queue=False)
    return controls
