"""Compare: the idea as typed, the best retrieved prompt and the rewrite, same seed, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.studio import MAX_IDEA_CHARS, VARIANTS, Hit, Studio, settings_of
from studio.ui.common import (
    GPU, Cancels, as_int, handler, message_for, plain_json, quiet, said_in, sdxl_missing, seed_or_none, session_of,
    streamed,
)
from studio.ui.defaults import UIDefaults
from studio.ui.jobs import Job, Jobs, after_reload
from studio.ui.limits import limited
from studio.ui.settings_panel import settings_panel
from studio.ui.text import clip_percent, inert
from studio.ui.views import comparison_choices, diff_spans, for_sdxl, picture

TITLES = {"original": "Your idea, as typed", "retrieved": "Best retrieved prompt", "rewritten": "Rewritten prompt"}
COLORS = {"added": "#9be7a8", "dropped": "#f4a7a7"}


def _label(variant: str, score: float | None, best: bool) -> str:
    clip = "" if score is None else f" · match {clip_percent(score)}"  # the % Explore and Reverse show
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


@dataclass
class CompareControls:
    """What Create takes from Compare: the winner (★) of the comparison on screen, and its button."""

    send: gr.Button
    winner: gr.State  # {"prompt", "seed", "steps", "cfg", "width", "height", "sampler", "profile"}
    remembered: dict[str, Any]  # the inputs a reload keeps (remember.remember / restore, wired in build_ui)


def _winner(raw: dict[str, Any]) -> dict[str, Any]:
    """The comparison's closest-to-the-idea entry (CLIP) as Create takes it, with every setting it used."""
    entries = [e for e in (raw or {}).get("entries") or [] if e.get("score") is not None]
    if not entries:
        return {}
    best = max(entries, key=lambda e: e["score"])
    req = best.get("request") or {}
    return {"prompt": best.get("prompt") or req.get("prompt"), "variant": best.get("variant"),
            "seed": req.get("seed"), "steps": req.get("steps"), "cfg": req.get("cfg"), "width": req.get("width"),
            "height": req.get("height"), "sampler": req.get("scheduler"), "profile": req.get("profile"),
            "negative_prompt": req.get("negative_prompt") or ""}


def _recorded(studio: Studio, job: Job | None, emit: Any, idea: str, seed: Any, flag: Any,
              fields: dict[str, Any]) -> Any:
    """Studio.compare in the worker thread, its progress and end written to `job` as they happen (the worker goes
    on after a reload stops the page's handler)."""
    def seen(variant: str, p: Any) -> None:
        if job is not None:
            job.line = f"⏳ {TITLES[variant]}: {p.describe()}…"
        emit(variant, p)

    try:
        result = studio.compare(idea, seed_or_none(seed), on_preview=seen, cancel=flag, **fields)
    except Exception as exc:
        if job is not None:
            job.state, job.line = "failed", message_for(exc)
        raise
    if job is not None:
        job.ref, job.line = result.comparison_id, f"seed **{result.seed}** · comparison `{result.comparison_id}`"
        job.state = "cancelled" if result.cancelled else "done"
    return result


def compare_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels, visitor: gr.State | None = None,
                loaded: Any = None) -> CompareControls:
    """visitor, loaded: this browser's id and the page-load event that sets it (remember.visitor_id): a comparison
    running, waiting or finished at a reload is said when the page is back (and shown, once finished)."""
    jobs = Jobs()

    def compare(idea: str, seed: Any, steps: float, cfg: float, width: float, height: float, sampler: str,
                profile: str, vid: str = "", request: gr.Request = None,
                progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:
        with jobs.running(vid) as job, cancels.job(session_of(request)) as flag:
            if job is not None:
                job.stop = flag
            fields = {"steps": as_int(steps, "steps"), "cfg": float(cfg), "width": as_int(width, "width"),
                      "height": as_int(height, "height"), "scheduler": sampler or None,
                      "profile": profile or "standard"}
            progress(0, desc="Rewriting the idea…")
            skip6 = [gr.skip()] * 6
            yield *skip6, "⏳ Rewriting the idea, then three images with one seed…", *[gr.skip()] * 3
            done: list[str] = []
            result = None
            work = streamed(lambda emit: _recorded(studio, job, emit, idea, seed, flag, fields))
            for kind, item in work:
                if kind == "event":
                    variant, p = item
                    done = done if variant in done else done + [variant]
                    progress(((len(done) - 1) * p.total + p.step, 3 * p.total), desc=f"{variant}", unit="steps")
                    out = skip6.copy()
                    if p.images:
                        out[VARIANTS.index(variant)] = gr.update(value=p.images[0],
                                                                 label=f"{TITLES[variant]} · step {p.step}/{p.total}")
                    yield *out, f"⏳ {TITLES[variant]}: {p.describe()}…", *[gr.skip()] * 3
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
            found = _winner(result.to_dict())
            if job is not None:  # the page that started it sees its end
                job.shown = True
            yield (*_columns(result.idea, entries), "  \n".join(lines), plain_json(result.to_dict()),
                   gr.update(choices=earlier(), value=result.comparison_id), found)

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
            raise InputError("That comparison is not in the library any more (its images were deleted).")
        idea = hits[0].metadata.get("idea") or ""
        entries = [(h.metadata.get("variant"), h.prompt, picture(studio, h), h.metadata.get("score")) for h in hits]
        entries = [e for e in entries if e[0] in VARIANTS]
        m = hits[0].metadata
        msg = f"Reopened: “{inert(idea)}” · seed **{m.get('seed')}** · comparison `{comparison_id}`"
        raw = {"comparison_id": comparison_id, "idea": idea, "seed": m.get("seed"),
               "entries": [h.to_dict() | {"variant": h.metadata.get("variant"), "score": h.metadata.get("score"),
                                          "request": _request_of(h)} for h in hits]}
        values, _ = for_sdxl(settings_of(m) | {"profile": m.get("profile")}, exact=True)
        found = _winner(raw)
        return (*_columns(idea, entries), msg, raw, idea, *panel.fill_values(values), found)

    def cancel(vid: str = "", request: gr.Request = None) -> str:
        if cancels.cancel(session_of(request)):
            return "⏹️ Cancelling at the next step…"
        job = jobs.get(vid)  # one started before a reload: this page's session is a new one
        if job is not None and job.state == "running" and job.stop is not None:
            job.stop.set()
            return "⏹️ Cancelling the comparison started before the reload, at its next step…"
        return "Nothing is running."

    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown("One idea, three prompts, **one seed**: what retrieval and the rewrite add. Words the prompt "
                    "adds to your idea are green, words it drops are red.")
        with gr.Row():
            idea = gr.Textbox(label="Idea (Enter compares)", placeholder="a lighthouse in a storm, oil painting",
                              scale=4, elem_id="compare-idea")
            blocked = sdxl_missing(studio)
            go = gr.Button("Compare (needs SDXL)" if blocked else "Compare", variant="primary", scale=1,
                           interactive=not blocked, elem_id="compare-go")
            stop = gr.Button("Cancel", variant="stop", scale=0, min_width=100)
        with gr.Accordion("Settings (the same for all three)", open=False, elem_id="compare-settings"):
            panel = settings_panel(defaults)
        msg = gr.Markdown(elem_id="compare-note")
        images, diffs = [], []
        with gr.Row(equal_height=True):
            for v in VARIANTS:
                with gr.Column():
                    images.append(gr.Image(label=TITLES[v], interactive=False, height=320,
                                           elem_classes="compare-image"))
                    diffs.append(gr.HighlightedText(label="Prompt vs your idea", color_map=COLORS, show_legend=False,
                                                    show_inline_category=False, combine_adjacent=True,
                                                    elem_classes="compare-diff"))
        send = gr.Button("Use the closest (★) in Create →", elem_id="compare-send", interactive=False)
        with gr.Row():
            history = gr.Dropdown(choices=[], label="Earlier comparisons", scale=4, elem_id="compare-earlier")
            open_btn = gr.Button("Reopen", scale=1, elem_id="compare-reopen")
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        limited(idea, MAX_IDEA_CHARS, "Idea", msg)
        winner = gr.State({})
        inputs = [idea, panel.seed, panel.steps, panel.cfg, panel.width, panel.height, panel.sampler, panel.profile,
                  visitor or gr.State("")]
        outputs = [*images, *diffs, msg, raw, history, winner]  # the ★ winner kept in a State, not read from raw
        if visitor is not None:  # waiting for its turn at the GPU: a reload before it starts is said
            for trigger in (go.click, idea.submit):
                trigger(jobs.queue, visitor, None, show_progress="hidden", api_visibility="private", queue=False)
        for event in (go.click(handler(compare, gpu=True, toast=False), inputs, outputs, api_name="compare",
                               show_progress_on=[msg], **GPU),
                      idea.submit(handler(compare, gpu=True, toast=False), inputs, outputs, api_visibility="private",
                                  show_progress_on=[msg], **GPU)):
            said_in(event, msg)  # errors are said once, in the tab's line (toast=False)
        stop.click(handler(cancel), visitor or gr.State(""), msg, api_visibility="private", queue=False)
        said_in(open_btn.click(quiet(reopen), history, [*images, *diffs, msg, raw, idea, *panel.fillable, winner],
                               api_name="reopen_comparison", show_progress_on=[msg]), msg)
        tab.select(lambda: gr.update(choices=earlier()), None, history, api_visibility="private")
        winner.change(lambda w: gr.update(interactive=bool(w)), winner, send, api_visibility="private", queue=False)
        if visitor is not None and loaded is not None:
            watch = gr.Timer(1.0, active=False)
            shown = [*images, *diffs, msg, raw, idea, *panel.fillable, winner]

            def resume(vid: str) -> list[Any]:
                """After a reload: the comparison this browser had waiting or running, then its end, reopened."""
                job = jobs.get(vid)
                said, more = after_reload(job, "comparison", "Compare")
                if said is None or job is None:
                    return [gr.skip()] * len(shown) + [gr.Timer(active=False)]
                if job.state == "done" and job.ref:
                    try:
                        out = list(reopen(job.ref))
                        out[shown.index(msg)] = said
                        return out + [gr.Timer(active=False)]
                    except Exception:  # its images were deleted since: the words are enough
                        pass
                at = shown.index(msg)
                return [said if i == at else gr.skip() for i in range(len(shown))] + [gr.Timer(active=more)]
            loaded.then(resume, visitor, [*shown, watch], show_progress="hidden", api_visibility="private")
            watch.tick(resume, visitor, [*shown, watch], show_progress="hidden", api_visibility="private")
    remembered = {"idea": idea} | {name: getattr(panel, name) for name in
                                   ("profile", "sampler", "seed", "preset", "width", "height", "steps", "cfg")}
    return CompareControls(send, winner, remembered)


def _request_of(hit: Hit) -> dict[str, Any]:
    """A stored image's settings in a GenerationRequest's words (the winner's settings after a reopen)."""
    m = hit.metadata
    return {"prompt": hit.prompt, "seed": m.get("seed"), "steps": m.get("steps"), "cfg": m.get("cfg"),
            "width": m.get("width"), "height": m.get("height"), "scheduler": m.get("sampler"),
            "profile": m.get("profile"), "negative_prompt": m.get("negative_prompt") or ""}
