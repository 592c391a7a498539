"""Compare: the idea as typed, the best retrieved prompt and the rewrite, same seed, side by side."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.library.compare import VARIANTS
from studio.generate.request import MAX_CFG, MAX_SIDE, MAX_STEPS, MIN_SIDE, PROFILES, SCHEDULERS
from studio.search.results import Hit
from studio.studio import Studio
from studio.ui.common import GPU, Cancels, as_int, handler, plain_json, said_in, seed_or_none, session_of, streamed
from studio.ui.defaults import UIDefaults
from studio.ui.views import comparison_choices, diff_spans, picture

TITLES = {"original": "Your idea, as typed", "retrieved": "Best retrieved prompt", "rewritten": "Rewritten prompt"}
COLORS = {"added": "#9be7a8", "dropped": "#f4a7a7"}


def _label(variant: str, score: float | None, best: bool) -> str:
    clip = "" if score is None else f" · CLIP {score:.3f}"
    return f"{TITLES[variant]}{clip}{' ★' if best else ''}"


def _columns(idea: str, entries: list[tuple[str, str, Any, float | None]]) -> list[Any]:
    """(variant, prompt, image, score) per entry -> three image updates then three diff values."""
    scored = [e for e in entries if e[3] is not None]
    best = max(scored, key=lambda e: e[3])[0] if scored else None
    by = {e[0]: e for e in entries}
    images, diffs = [], []
    for v in VARIANTS:
        if v in by:
            _, prompt, image, score = by[v]
            images.append(gr.update(value=image, label=_label(v, score, v == best)))
            diffs.append(diff_spans(idea, prompt))
        else:
            images.append(gr.update(value=None, label=f"{TITLES[v]} (not available)"))
            diffs.append([])
    return images + diffs


def compare_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels) -> None:
    def compare(idea: str, seed: Any, steps: float, cfg: float, width: float, height: float, sampler: str,
                profile: str, request: gr.Request = None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:
        fields = {"steps": as_int(steps, "steps"), "cfg": float(cfg), "width": as_int(width, "width"),
                  "height": as_int(height, "height"), "scheduler": sampler or None, "profile": profile or "standard"}
        flag = cancels.new(session_of(request))
        progress(0, desc="Rewriting the idea…")
        skip6 = [gr.skip()] * 6
        yield *skip6, "⏳ Rewriting the idea, then three images with one seed…", gr.skip(), gr.skip()
        done: list[str] = []
        result = None
        work = streamed(lambda emit: studio.compare(idea, seed_or_none(seed), on_preview=emit, cancel=flag, **fields))
        for kind, item in work:
            if kind == "event":
                variant, p = item
                done = done if variant in done else done + [variant]
                progress(((len(done) - 1) * p.total + p.step, 3 * p.total), desc=f"{variant}", unit="steps")
                out = skip6.copy()
                out[VARIANTS.index(variant)] = gr.update(value=p.images[0] if p.images else None,
                                                         label=f"{TITLES[variant]} · step {p.step}/{p.total}")
                yield *out, f"⏳ {TITLES[variant]}: step {p.step} of {p.total}…", gr.skip(), gr.skip()
            else:
                result = item
        entries = [(e.variant, e.prompt, e.result.images[0] if e.result.images else None, e.score)
                   for e in result.entries]
        lines = [f"Seed **{result.seed}** · comparison `{result.comparison_id}`"]
        lines += ["⏹️ Cancelled: the rest was not generated."] if result.cancelled else []
        lines += [f"ℹ️ {n}" for n in result.notes]
        if result.best:
            lines.append(f"Closest to the idea by CLIP: **{TITLES[result.best.variant]}** "
                         "(CLIP scores compare images with the idea's words; your eye decides).")
        yield (*_columns(result.idea, entries), "  \n".join(lines), plain_json(result.to_dict()),
               gr.update(choices=earlier()))

    def earlier() -> list[tuple[str, str]]:
        try:
            return comparison_choices(studio.history(None, limit=500).results)
        except Exception:  # no store yet, no CLIP yet: nothing to reopen
            return []

    def reopen(comparison_id: str) -> Any:
        if not comparison_id:
            raise InputError("Pick one of the earlier comparisons in the list first, then Reopen.")
        hits: list[Hit] = studio.comparison(comparison_id)
        if not hits:
            raise gr.Error("That comparison is not in the library any more.", print_exception=False)
        idea = hits[0].metadata.get("idea") or ""
        entries = [(h.metadata.get("variant"), h.prompt, picture(studio, h), h.metadata.get("score")) for h in hits]
        entries = [e for e in entries if e[0] in VARIANTS]
        m = hits[0].metadata
        msg = f"Reopened: “{idea}” · seed **{m.get('seed')}** · comparison `{comparison_id}`"
        return *_columns(idea, entries), msg, {"comparison_id": comparison_id, "idea": idea,
                                               "entries": [h.to_dict() for h in hits]}

    def cancel(request: gr.Request = None) -> str:
        return "⏹️ Cancelling at the next step…" if cancels.cancel(session_of(request)) else "Nothing is running."

    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown("One idea, three prompts, **one seed**: what retrieval and the rewrite add. Words the prompt "
                    "adds to your idea are green, words it drops are red.")
        with gr.Row():
            idea = gr.Textbox(label="Idea", placeholder="a lighthouse in a storm, oil painting", scale=4,
                              elem_id="compare-idea")
            go = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-go")
            stop = gr.Button("Cancel", variant="stop", scale=0, min_width=100)
        with gr.Accordion("Settings (the same for all three)", open=False, elem_id="compare-settings"):
            with gr.Row():
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                profile = gr.Radio(list(PROFILES), value=defaults.profile, label="Profile")
                sampler = gr.Dropdown(list(SCHEDULERS), value=defaults.sampler, label="Sampler")
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=defaults.steps, step=1, label="Steps")
                cfg = gr.Slider(0, MAX_CFG, value=defaults.cfg, step=0.5, label="CFG")
                width = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.width, step=8, label="Width")
                height = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.height, step=8, label="Height")
        msg = gr.Markdown(elem_id="compare-note")
        images, diffs = [], []
        with gr.Row(equal_height=True):
            for v in VARIANTS:
                with gr.Column():
                    images.append(gr.Image(label=TITLES[v], interactive=False, height=320,
                                           elem_classes="compare-image"))
                    diffs.append(gr.HighlightedText(label="Prompt vs your idea", color_map=COLORS, show_legend=False,
                                                    show_inline_category=False, combine_adjacent=True))
        with gr.Row():
            history = gr.Dropdown(choices=[], label="Earlier comparisons", scale=4)
            open_btn = gr.Button("Reopen", scale=1)
        with gr.Accordion("Raw result (JSON)", open=False):
            raw = gr.JSON()
        said_in(go.click(handler(compare, gpu=True), [idea, seed, steps, cfg, width, height, sampler, profile],
                         [*images, *diffs, msg, raw, history], api_name="compare", show_progress_on=[msg], **GPU), msg)
        stop.click(handler(cancel), None, msg, api_visibility="private", queue=False)
        said_in(open_btn.click(handler(reopen), history, [*images, *diffs, msg, raw], api_name="reopen_comparison",
                               show_progress_on=[msg]), msg)
        tab.select(lambda: gr.update(choices=earlier()), None, history, api_visibility="private")
        profile.change(lambda p: (PROFILES[p].steps, PROFILES[p].cfg, PROFILES[p].scheduler), profile,
                       [steps, cfg, sampler], api_visibility="private")
