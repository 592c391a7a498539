"""Create: idea -> retrieved prompts -> the rewrite streaming in -> generate with live previews, cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import InputError, StudioError
from studio.studio import MAX_IDEA_CHARS, MAX_IMAGES, MAX_PROMPT_CHARS, SEED_RANGE, Filters, Hit, Lineage, RewriteRequest, Studio
from studio.ui.common import (
    GPU, Cancels, as_int, handler, no_room_to_show, plain_json, said_in, sdxl_missing, seed_or_none, session_of,
    streamed,
)
from studio.ui.defaults import UIDefaults
from studio.ui.loras import lora_picker
from studio.ui.settings_panel import SettingsPanel, settings_panel
from studio.ui.steering import (
    Steering, card_updates, chosen, examples_update, locked_terms, steering_panel,
)
from studio.ui.text import clipped, inert, match, settings_line, token_line
from studio.ui.views import MISSING

RETRIEVED = ["match", "prompt", "images", "settings"]


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

    @property
    def settings(self) -> list[Any]:
        return self.panel.fillable


def _retrieved_rows(hits: list[Hit]) -> list[list[Any]]:
    """The LLM's examples, most similar first (the rewrite shows those with style words first: the table
    is about closeness, so it sorts by it)."""
    return [[match(h, cross_modal=False), clipped(h.prompt), h.metadata.get("image_count", MISSING),
             settings_line(h.settings[0] if h.settings else {}) or MISSING]
            for h in sorted(hits, key=lambda h: h.distance)]


def create_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels) -> CreateControls:
    def rewrite(idea: str, k: float, nsfw: bool, note: str = "", n: float = 1, ticked: list[str] | None = None,
                locked: str = "", examples_for: str = "", progress: gr.Progress = gr.Progress()) -> Any:
        progress(0, desc="Loading the LLM…" if not studio.llm_loaded else "Retrieving…")
        ids, texts = chosen(ticked)
        many, k = as_int(n, "candidates"), as_int(k, "k")
        if (idea or "").strip() != (examples_for or "").strip():
            # A new idea: its own neighbours, beside any examples the user brought (ticked) for it.
            ids = neighbours(idea, k, bool(nsfw)) if texts and k else []
        table: list[list[Any]] = []
        text, suggested = "", {}
        skip4, skip5 = [gr.skip()] * 4, [gr.skip()] * 5
        request = RewriteRequest(idea, k, many, Filters(nsfw=bool(nsfw)), example_ids=tuple(ids),
                                 example_texts=tuple(texts), note=(note or "").strip() or None,
                                 locked=tuple(locked_terms(locked)))
        for ev in studio.rewrite_stream(request):
            if ev.kind == "retrieved":
                table, suggested = _retrieved_rows(ev.hits or []), ev.suggested or {}
                progress(0.1, desc="Rewriting…")
                yield table, "", "✍️ Writing…", gr.skip(), suggested, *skip4
            elif ev.kind == "start" and ev.index == 0:
                text = ""
            elif ev.kind == "start":
                yield gr.skip(), gr.skip(), f"✍️ Writing candidate {ev.index + 1} of {many}…", gr.skip(), *skip5
            elif ev.kind == "token" and ev.index == 0:
                text = ev.partial or text + ev.text
                yield gr.skip(), text, gr.skip(), gr.skip(), *skip5
            elif ev.kind == "done" and ev.result is not None:
                r = ev.result
                lineage = Lineage.of_rewrite(r)
                cand = r.candidates[0] if r.candidates else None
                first = "Candidate 1: " if len(r.candidates) > 1 else ""  # the box may hold another one later
                notes = [f"{first}**{cand.tokens} CLIP tokens**" if cand else "The model wrote nothing usable."]
                notes += [f"⚠️ {cand.warning}"] if cand and cand.warning else []
                notes += [f"🔒 Put back what the LLM dropped: {inert(', '.join(cand.restored))}"] if cand and cand.restored else []
                notes += [f"{len(r.candidates)} candidates below: **Use this ↑** puts one here."] if len(r.candidates) > 1 else []
                notes += [f"ℹ️ {r.notice}"] if r.notice else []
                notes += [f"Neighbours suggest: {settings_line(r.suggested)}"] if r.suggested else []
                yield (_retrieved_rows(r.retrieved) or table, r.text, "\n\n".join(notes), r.to_dict(),
                       r.suggested or suggested, lineage.to_dict(), r.to_dict(), r.idea, lineage.to_dict())

    def neighbours(idea: str, k: int, nsfw: bool) -> list[str]:
        try:
            return [h.id for h in studio.search(idea, "prompts", k, Filters(nsfw=nsfw)).results]
        except StudioError:  # no CLIP, another CLIP's store: the brought examples alone
            return []

    def generate(prompt: str, negative: str, seed: Any, steps: float, cfg: float, width: float, height: float,
                 sampler: str, profile: str, n: float, lineage: dict | None = None,
                 request: gr.Request = None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:
        fields = {"negative_prompt": negative or "", "seed": seed_or_none(seed), "steps": as_int(steps, "steps"),
                  "cfg": float(cfg), "width": as_int(width, "width"), "height": as_int(height, "height"),
                  "n": as_int(n, "n"), "scheduler": sampler or None, "profile": profile or "standard"}
        lin = Lineage.from_dict(lineage)
        with cancels.job(session_of(request)) as flag:
            first = not studio.sdxl_loaded
            progress(0, desc="Loading SDXL…" if first else "Starting…")
            yield gr.skip(), gr.skip(), "⏳ Loading SDXL (the first run after a launch)…" if first else "⏳ Starting…", gr.skip()
            result = None
            for kind, item in streamed(lambda emit: studio.generate(prompt, on_preview=emit, cancel=flag,
                                                                    lineage=lin, **fields)):
                if kind == "event":
                    (p,) = item
                    progress((p.step, p.total), desc="Denoising", unit="steps")
                    picture = p.images[0] if p.images else gr.skip()  # a picture about twice a second
                    yield picture, gr.skip(), f"⏳ {p.describe()}…", gr.skip()
                else:
                    result = item
            if result.cancelled:  # the last preview stays: it shows where the run was
                said = f"⏹️ Cancelled after {result.steps_done} of {result.request.steps} steps; nothing saved."
                yield gr.skip(), [], said, plain_json(result.to_dict())
                return
            if (full := no_room_to_show(result.images)) is not None:  # else Gradio's "Could not postprocess"
                yield gr.skip(), gr.skip(), f"⚠️ {full}  \n" + result.describe().replace("\n", "  \n"), gr.skip()
                return
            pics = [(img, f"seed {s}") for img, s in zip(result.images, result.seeds)]
            yield result.images[0], pics, result.describe().replace("\n", "  \n"), plain_json(result.to_dict())

    def generate_all(result: dict, rewritten: dict, negative: str, seed: Any, steps: float, cfg: float, width: float, height: float,
                     sampler: str, profile: str, request: gr.Request = None) -> Any:
        """Every candidate of the last rewrite with one seed and these settings: a look side by side."""
        import secrets

        cands = [c for c in (result or {}).get("candidates") or [] if c.get("text")]
        if len(cands) < 2:
            raise InputError("Rewrite with 2 or more candidates first (Steer the rewrite → Candidates).")
        fixed = seed_or_none(seed)
        fixed = secrets.randbelow(SEED_RANGE) if fixed is None else fixed
        lineage = Lineage.from_dict(rewritten)  # the last rewrite's, from Lineage.of_rewrite
        fields = {"negative_prompt": negative or "", "seed": fixed, "steps": as_int(steps, "steps"),
                  "cfg": float(cfg), "width": as_int(width, "width"), "height": as_int(height, "height"),
                  "scheduler": sampler or None, "profile": profile or "standard"}
        looks: list[tuple[Any, str]] = []
        with cancels.job(session_of(request)) as flag:
            for i, cand in enumerate(cands):
                yield gr.update(visible=True, value=looks or None), f"⏳ Candidate {i + 1} of {len(cands)}…"
                out = studio.generate(cand["text"], cancel=flag, lineage=lineage, **fields)
                if out.cancelled:
                    yield gr.update(value=looks or None), f"⏹️ Cancelled after {len(looks)} of {len(cands)}."
                    return
                looks.append((out.images[0], f"{i + 1} · {cand.get('tokens')} tokens"))
        yield gr.update(value=looks), (f"Seed **{fixed}**: the {len(looks)} candidates side by side, each saved to "
                                       "your library. **Use this ↑** above puts one in the Prompt box.")

    def cancel(request: gr.Request = None) -> str:
        return "⏹️ Cancelling at the next step…" if cancels.cancel(session_of(request)) else "Nothing is running."

    def suggested_settings(s: dict, width: Any = None, height: Any = None) -> list[Any]:
        from studio.ui.views import for_sdxl

        if not s:
            return [*[gr.skip()] * len(controls.settings),
                    "The retrieved neighbours carry no settings (a table without seeds or cfg): nothing to copy. "
                    "Rewrite an idea first, or set them by hand."]
        values, changed = for_sdxl(s, current=(width, height))  # never more pixels than the size set now
        said = "Copied the neighbours' usual settings" + (f"; {'; '.join(changed)}" if changed else "") + "."
        return [*controls.panel.fill_values(values, with_seed=False), said]

    with gr.Tab("Create", id="create"):
        with gr.Row():
            idea = gr.Textbox(label="Idea", placeholder="a cat sleeping on a sofa", scale=4, elem_id="create-idea",
                              max_length=MAX_IDEA_CHARS, min_width=320)
            k = gr.Slider(0, 20, value=5, step=1, label="Examples to retrieve", scale=1, min_width=200)
            nsfw = gr.Checkbox(label="NSFW examples", value=False, scale=0, min_width=160)
            rewrite_btn = gr.Button("Rewrite", variant="primary", scale=1, elem_id="create-rewrite", min_width=140)
        steer = steering_panel()
        retrieved = gr.Dataframe(headers=RETRIEVED, label="Retrieved prompts (the LLM's examples)", wrap=True,
                                 interactive=False, column_widths=["90px", "480px", "70px", "220px"], max_height=260)
        prompt = gr.Textbox(label="Prompt", lines=3, buttons=["copy"], elem_id="create-prompt", max_length=MAX_PROMPT_CHARS,
                            placeholder="The rewrite streams in here; or type or paste a prompt (Ctrl+Enter generates)")
        with gr.Row():
            rewrite_note = gr.Markdown(elem_id="create-rewrite-note")
            tokens = gr.Markdown(token_line(""), elem_id="create-tokens")
            undo = gr.Button("↶ Undo rewrite", size="sm", scale=0, min_width=140, elem_id="create-undo")
        lora_picker(lambda: [lo["name"] for lo in studio.loras()], prompt)
        negative = gr.Textbox(label="Negative prompt", placeholder="blurry, low quality", elem_id="create-negative",
                              max_length=MAX_PROMPT_CHARS)
        last_seed_btn: list[gr.Button] = []
        with gr.Accordion("Settings", open=False, elem_id="create-settings"):
            panel = settings_panel(defaults, seed_extra=lambda: last_seed_btn.append(
                gr.Button("♻ Last seed", size="sm", scale=0, min_width=110, elem_id="create-last-seed")))
            with gr.Row():
                n = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
                suggest = gr.Button("Use suggested settings (from the retrieved neighbours)", size="sm")
        with gr.Row():
            blocked = sdxl_missing(studio)
            go = gr.Button("Generate (needs SDXL: see the note at the top)" if blocked else "Generate",
                           variant="primary", interactive=not blocked, elem_id="create-generate")
            stop = gr.Button("Cancel", variant="stop", elem_id="create-cancel")
        info = gr.Markdown(elem_id="create-info")
        with gr.Row():
            preview = gr.Image(label="Live preview", interactive=False, height=384, elem_id="create-preview")
            images = gr.Gallery(label="Results (saved to outputs/ and your library)", columns=2, height=384,
                                object_fit="contain", elem_id="create-gallery")
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        suggested, lineage = gr.State({}), gr.State({})
        rewritten = gr.State({})  # the last rewrite's lineage, for its candidates (the Prompt box may hold another's)
        controls = CreateControls(prompt, negative, panel, lineage, rewrite_note, steer)

        private = {"api_visibility": "private", "queue": False}
        rw_in = [idea, k, nsfw, steer.note, steer.n, steer.examples, steer.locked, steer.examples_for]
        rw_out = [retrieved, prompt, rewrite_note, raw, suggested, lineage, steer.result, steer.examples_for, rewritten]
        before = gr.State("")  # the Prompt box as it was when Rewrite was clicked: Undo brings it back
        for trigger in (rewrite_btn.click, idea.submit):
            trigger(lambda text: text, prompt, before, **private)
        undo.click(lambda text: text if text else gr.skip(), before, prompt, **private)
        last_seed_btn[0].click(lambda r: ((r or {}).get("seeds") or [gr.skip()])[0], raw, panel.seed, **private)
        prompt.change(token_line, prompt, tokens, trigger_mode="always_last", show_progress="hidden", **private)
        # A failed rewrite leaves the Prompt box as it was: progress and errors show on the note under it.
        for event in (rewrite_btn.click(handler(rewrite, gpu=True), rw_in, rw_out, api_name="rewrite",
                                        show_progress_on=[rewrite_note], **GPU),
                      idea.submit(handler(rewrite, gpu=True), rw_in, rw_out, api_visibility="private",
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
        said_in(steer.generate_all.click(handler(generate_all, gpu=True), look_in, [steer.looks, info],
                                         api_visibility="private", show_progress_on=[info], **GPU), info)
        suggest.click(suggested_settings, [suggested, panel.width, panel.height], [*controls.settings, rewrite_note],
                      **private)
        gen_in = [prompt, negative, panel.seed, panel.steps, panel.cfg, panel.width, panel.height, panel.sampler,
                  panel.profile, n, lineage]
        said_in(go.click(handler(generate, gpu=True), gen_in, [preview, images, info, raw], api_name="generate",
                         show_progress_on=[info], **GPU), info)
        stop.click(handler(cancel), None, info, api_name="cancel", queue=False)
    return controls
