"""Create's page: idea -> retrieved prompts -> the rewrite streaming in -> generate with live previews, cancel
(the handlers are in create_handlers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.studio import MAX_IDEA_CHARS, MAX_IMAGES, MAX_NOTE_CHARS, MAX_PROMPT_CHARS, Studio
from studio.ui.common import GPU, Cancels, handler, quiet, said_in, sdxl_missing
from studio.ui.create_handlers import RETRIEVED, CreateHandlers
from studio.ui.defaults import UIDefaults
from studio.ui.jobs import Jobs, after_reload
from studio.ui.limits import limited
from studio.ui.loras import lora_picker
from studio.ui.settings_panel import SettingsPanel, settings_panel
from studio.ui.steering import Steering, card_updates, examples_update, steering_panel
from studio.ui.text import token_line


PANEL_KEYS = ("profile", "sampler", "seed", "preset", "width", "height", "steps", "cfg")


@dataclass
class CreateControls:
    """What other tabs fill: the prompt, the negative prompt, the settings a picked result or a history
    entry brings, the lineage, and the line under the prompt that says what was brought."""

    prompt: gr.Textbox
    negative: gr.Textbox
    panel: SettingsPanel
    lineage: gr.State
    note: gr.Markdown
    steer: Steering
    remembered: dict[str, Any]  # what a reload keeps (remember.remember / restore, wired in build_ui)
    image_read: Any  # an image dropped in Create was read; .then fills the boxes from `image_info` (build_ui)
    image_info: gr.State  # that image's own prompt and settings (PNG Info), {} when it carries none

    @property
    def settings(self) -> list[Any]:
        return self.panel.fillable


def suggested_settings(panel: SettingsPanel, s: dict, width: Any = None, height: Any = None) -> list[Any]:
    """The retrieved neighbours' usual settings -> the panel (fillable) and the note under the prompt; never more
    pixels than the size set now (width, height)."""
    from studio.ui.views import for_sdxl

    if not s:
        return [*[gr.skip()] * len(panel.fillable),
                "The retrieved neighbours carry no settings (a table without seeds or cfg): nothing to copy. "
                "Rewrite an idea first, or set them by hand."]
    values, changed = for_sdxl(s, current=(width, height))
    said = "Copied the neighbours' usual settings" + (f"; {'; '.join(changed)}" if changed else "") + "."
    return [*panel.fill_values(values, with_seed=False), said]


def create_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels, visitor: gr.State | None = None,
               loaded: Any = None) -> CreateControls:
    """visitor, loaded: this browser's id and the page-load event that sets it (remember.visitor_id): a
    generation running at a reload is shown again when the page is back."""
    h = CreateHandlers(studio, cancels, Jobs())
    with gr.Tab("Create", id="create"), gr.Row(elem_id="create-columns"):
        # Two columns, as AUTOMATIC1111 and Fooocus: what goes in on the left, what comes out on the right,
        # both in the first screen at 1366 px; under 800 px the right column wraps under the left one.
        with gr.Column(scale=5, min_width=460, elem_id="create-left"):
            idea = gr.Textbox(label="Idea", placeholder="a cat sleeping on a sofa", elem_id="create-idea")
            with gr.Row(equal_height=True):
                k = gr.Slider(0, 20, value=5, step=1, label="Examples to retrieve", scale=2, min_width=180)
                nsfw = gr.Checkbox(label="NSFW examples", value=False, scale=1, min_width=130)
                rewrite_btn = gr.Button("Rewrite", variant="primary", scale=1, elem_id="create-rewrite",
                                        min_width=110)
            steer = steering_panel()
            prompt = gr.Textbox(label="Prompt", lines=3, buttons=["copy"], elem_id="create-prompt",
                                placeholder="The rewrite streams in here; or type or paste a prompt (Ctrl+Enter generates)")
            with gr.Row():
                rewrite_note = gr.Markdown(elem_id="create-rewrite-note")
                tokens = gr.Markdown(token_line(""), elem_id="create-tokens")
                undo = gr.Button("↶ Undo rewrite", size="sm", scale=0, min_width=140, elem_id="create-undo")
            lora_picker(lambda: [lo["name"] for lo in studio.loras()], prompt)
            negative = gr.Textbox(label="Negative prompt", placeholder="blurry, low quality", elem_id="create-negative")
            with gr.Accordion("Read an image's prompt and settings (PNG Info)", open=False, elem_id="create-png"):
                dropped = gr.Image(type="filepath", sources=["upload", "clipboard"], height=180,
                                   label="From AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI, NovelAI or this studio",
                                   elem_id="create-png-drop")
            last_seed_btn: list[gr.Button] = []
            with gr.Accordion("Settings", open=True, elem_id="create-settings"):
                panel = settings_panel(defaults, seed_extra=lambda: last_seed_btn.append(
                    gr.Button("♻ Last seed", size="sm", scale=0, min_width=110, elem_id="create-last-seed")))
                with gr.Row():
                    n = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
                    suggest = gr.Button("Use suggested settings (from the retrieved neighbours)", size="sm")
            retrieved = gr.Dataframe(headers=RETRIEVED, label="Retrieved prompts (the LLM's examples)", wrap=True,
                                     interactive=False, column_widths=["80px", "300px", "60px", "160px"],
                                     max_height=260, elem_id="create-retrieved")
        with gr.Column(scale=4, min_width=360, elem_id="create-right"):
            with gr.Row():
                blocked = sdxl_missing(studio)
                go = gr.Button("Generate (needs SDXL: see the note at the top)" if blocked else "Generate",
                               variant="primary", interactive=not blocked, elem_id="create-generate", scale=3)
                stop = gr.Button("Cancel", variant="secondary", elem_id="create-cancel", scale=1, min_width=100)
            info = gr.Markdown(elem_id="create-info")
            preview = gr.Image(label="Live preview", interactive=False, height=256, elem_id="create-preview")
            images = gr.Gallery(label="Results (saved to outputs/ and your library)", columns=2, height=384,
                                object_fit="contain", elem_id="create-gallery")
            with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
                raw = gr.JSON()
        suggested, lineage = gr.State({}), gr.State({})
        last_seed = gr.State(None)  # the seed of the last generation (♻ Last seed), not read out of the raw JSON
        rewritten = gr.State({})  # the last rewrite's lineage, for its candidates (the Prompt box may hold another's)
        for box, limit, name in ((idea, MAX_IDEA_CHARS, "Idea"), (prompt, MAX_PROMPT_CHARS, "Prompt"),
                                 (negative, MAX_PROMPT_CHARS, "Negative prompt"),
                                 (steer.note, MAX_NOTE_CHARS, "The note to the LLM")):
            limited(box, limit, name, rewrite_note)
        remembered = {"idea": idea, "prompt": prompt, "negative": negative, "k": k, "nsfw": nsfw, "n": n,
                      "note": steer.note, "locked": steer.locked, "candidates": steer.n,
                      **{name: getattr(panel, name) for name in PANEL_KEYS}}
        private = {"api_visibility": "private", "queue": False}
        image_info = gr.State({})
        image_read = dropped.upload(quiet(h.image_info), dropped, [image_info, rewrite_note], preprocess=False,
                                    **private)
        said_in(image_read, rewrite_note)
        controls = CreateControls(prompt, negative, panel, lineage, rewrite_note, steer, remembered, image_read,
                                  image_info)

        rw_in = [idea, k, nsfw, steer.note, steer.n, steer.examples, steer.locked, steer.examples_for]
        rw_out = [retrieved, prompt, rewrite_note, raw, suggested, lineage, steer.result, steer.examples_for, rewritten]
        before = gr.State("")  # the Prompt box as it was when Rewrite was clicked: Undo brings it back
        for trigger in (rewrite_btn.click, idea.submit):
            trigger(lambda text: text, prompt, before, **private)
        undo.click(lambda text: text if text else gr.skip(), before, prompt, **private)
        last_seed_btn[0].click(lambda seed: gr.skip() if seed is None else seed, last_seed, panel.seed, **private)
        prompt.change(token_line, prompt, tokens, trigger_mode="always_last", show_progress="hidden", **private)
        # A failed rewrite leaves the Prompt box as it was: progress and errors show on the note under it.
        for event in (rewrite_btn.click(handler(h.rewrite, gpu=True, toast=False), rw_in, rw_out, api_name="rewrite",
                                        show_progress_on=[rewrite_note], **GPU),
                      idea.submit(handler(h.rewrite, gpu=True, toast=False), rw_in, rw_out, api_visibility="private",
                                  show_progress_on=[rewrite_note], **GPU)):
            said_in(event, rewrite_note)
        card_out = [part for col, text, info_md, _ in steer.cards for part in (col, text, info_md)]

        def show_steering(result: dict, choices: list, ticked: list[str]) -> list[Any]:
            group, new_choices = examples_update(result or {}, choices, ticked)
            many = len((result or {}).get("candidates") or []) > 1
            return [group, new_choices, *card_updates(result), gr.update(visible=many)]
        steer.result.change(show_steering, [steer.result, steer.choices, steer.examples],
                            [steer.examples, steer.choices, *card_out, steer.generate_all], **private)
        for _, text, _, use in steer.cards:
            use.click(lambda t: t or gr.skip(), text, prompt, **private)
        look_in = [steer.result, rewritten, negative, panel.seed, panel.steps, panel.cfg, panel.width, panel.height,
                   panel.sampler, panel.profile]
        for trigger in (go.click, steer.generate_all.click):
            # Cancel is red only while something runs: red as the click is sent, back once the job ends (.then
            # below). Registered before the job's own listener: the page runs a click's listeners in order and
            # waits for a queued one to end before the next.
            trigger(lambda: gr.update(variant="stop"), None, stop, show_progress="hidden", **private)
        if visitor is not None:  # waiting for its turn at the GPU: a reload before it starts is said (jobs.after_reload)
            go.click(h.jobs.queue, visitor, None, show_progress="hidden", **private)
        looking = steer.generate_all.click(handler(h.generate_all, gpu=True, toast=False), look_in, [steer.looks, info],
                                           api_visibility="private", show_progress_on=[info], **GPU)
        said_in(looking, info)
        suggest.click(lambda s, w, ht: suggested_settings(panel, s, w, ht), [suggested, panel.width, panel.height],
                      [*controls.settings, rewrite_note], **private)
        gen_in = [prompt, negative, panel.seed, panel.steps, panel.cfg, panel.width, panel.height, panel.sampler,
                  panel.profile, n, lineage, visitor or gr.State("")]
        generating = go.click(handler(h.generate, gpu=True, toast=False), gen_in,
                              [preview, images, info, raw, last_seed], api_name="generate", show_progress_on=[info],
                              **GPU)
        said_in(generating, info)
        for event in (generating, looking):
            event.then(lambda: gr.update(variant="secondary"), None, stop, show_progress="hidden", **private)
        stop.click(handler(h.cancel), visitor or gr.State(""), info, api_name="cancel", queue=False)
        if visitor is not None and loaded is not None:
            watch = gr.Timer(1.0, active=False)

            def resume(vid: str) -> list[Any]:
                """After a reload: the generation this browser had running, its progress, then its end."""
                job = h.jobs.get(vid)
                said, more = after_reload(job)
                if said is None or job is None:
                    return [gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
                running = gr.update(variant="stop" if more else "secondary")
                return [said, job.preview if job.preview is not None else gr.skip(), job.pictures or gr.skip(),
                        running, gr.Timer(active=more)]
            loaded.then(resume, visitor, [info, preview, images, stop, watch], show_progress="hidden", **private)
            watch.tick(resume, visitor, [info, preview, images, stop, watch], show_progress="hidden", **private)
    return controls
