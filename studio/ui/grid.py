"""Grid: prompts x seeds (or one setting), CLIP-scored and ranked; styles and negatives mined from the library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.studio import MAX_IDEA_CHARS, Studio
from studio.ui.common import (
    GPU, Cancels, as_int, handler, plain_json, quiet, said_in, sdxl_missing, seed_or_none, session_of, streamed,
)
from studio.ui.defaults import UIDefaults
from studio.ui.limits import limited
from studio.ui.settings_panel import settings_panel
from studio.ui.text import inert

HEADERS = ["rank", "kind", "mean CLIP", "± spread", "cells", "prompt"]


@dataclass
class GridControls:
    """What Create takes from the grid: the best row's prompt with the grid's settings, and its button."""

    send: gr.Button
    winner: gr.State


def _gallery(result: Any) -> list[tuple[Any, str]]:
    """Cells row by row in ranked order, each captioned with its row's rank, its column and its score."""
    out = []
    for rank, s in enumerate(result.ranking(), 1):
        for c, column in enumerate(result.plan.columns):
            cell = result.cell(s.row, c)
            if cell.image is not None:
                score = "" if cell.score is None else f" · {cell.score:.3f}"
                out.append((cell.image, f"#{rank} {result.plan.rows[s.row].kind} · {column.label}{score}"
                                        + (" · reused" if cell.state == "reused" else "")))
    return out


def _table(result: Any) -> list[list[Any]]:
    rows = []
    for rank, s in enumerate(result.ranking(), 1):
        row = result.plan.rows[s.row]
        rows.append([rank, row.kind, None if s.mean is None else round(s.mean, 4),
                     None if s.spread is None else round(s.spread, 4), f"{s.scored}/{len(result.plan.columns)}",
                     row.prompt])
    return rows


def _winner(result: Any) -> dict[str, Any]:
    best = result.best
    if best is None:
        return {}
    base = result.plan.base
    return {"prompt": best.prompt, "negative_prompt": base.get("negative_prompt") or "", "seed": base.get("seed"),
            "steps": base.get("steps"), "cfg": base.get("cfg"), "width": base.get("width"),
            "height": base.get("height"), "sampler": base.get("scheduler"), "profile": base.get("profile")}


def _note(result: Any) -> str:
    p = result.plan
    lines = [f"Grid `{p.grid_id}` · {len(p.rows)} prompts × {len(p.columns)} ({p.axis}) · "
             f"**{result.made} made, {result.reused} reused, {result.missing} missing**"]
    lines += ["⏹️ Cancelled: the finished cells are kept; Reopen fills the rest."] if result.cancelled else []
    if result.best is not None:
        lines.append(f"Best row by mean CLIP score: **{result.best.kind}** “{inert(result.best.prompt[:120])}”")
    lines += [f"ℹ️ {inert(n)}" for n in p.notes + result.notes]
    return "  \n".join(lines)


def grid_tab(studio: Studio, defaults: UIDefaults, cancels: Cancels) -> GridControls:
    def outputs_of(result: Any) -> tuple[Any, ...]:
        sheet = str(studio.grid_sheet(result))
        raw = plain_json(result.to_dict() | {"sheet": sheet})
        return (gr.update(value=_gallery(result), columns=len(result.plan.columns)), _table(result), _note(result),
                raw, sheet, gr.update(choices=earlier(), value=result.plan.grid_id), _winner(result))

    def run(work: Any, start: str, request: gr.Request | None, progress: gr.Progress) -> Any:
        with cancels.job(session_of(request)) as flag:
            yield gr.skip(), gr.skip(), start, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            for kind, item in streamed(lambda emit: work(emit, flag)):
                if kind == "event":
                    done, total, cell = item
                    progress((done, total), desc="cells", unit="cells")
                    yield (gr.skip(), gr.skip(), f"⏳ {done} of {total} cells ({cell.state})…", *[gr.skip()] * 4)
                else:
                    yield outputs_of(item)

    def grid(idea: str, variants: str, candidates: float, seeds: float, axis: str, wildcards: bool, negative: str,
             seed: Any, steps: float, cfg: float, width: float, height: float, sampler: str, profile: str,
             mode: str = "random", expansions: float = 4, request: gr.Request = None,
             progress: gr.Progress = gr.Progress()) -> Any:
        fields = {"negative_prompt": negative or "", "seed": seed_or_none(seed), "steps": as_int(steps, "steps"),
                  "cfg": float(cfg), "width": as_int(width, "width"), "height": as_int(height, "height"),
                  "scheduler": sampler or None, "profile": profile or "standard"}
        typed = [line for line in (variants or "").splitlines() if line.strip()]
        yield from run(lambda emit, flag: studio.grid(
            idea, seeds=as_int(seeds, "seeds"), candidates=as_int(candidates, "candidates"), axis=axis or None,
            variants=typed, wildcards=bool(wildcards), wildcard_mode=mode or "random",
            expansions=as_int(expansions, "expansions"), on_cell=emit, cancel=flag, **fields),
            "⏳ Planning the grid…", request, progress)

    def reopen(grid_id: str, request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> Any:
        if not grid_id:
            raise InputError("Pick one of the earlier grids in the list first, then Reopen.")
        yield from run(lambda emit, flag: studio.reopen_grid(grid_id, on_cell=emit, cancel=flag),
                       "⏳ Reopening: stored cells first, then only the missing ones…", request, progress)

    def earlier() -> list[tuple[str, str]]:
        try:
            return [(f"{p.created[:16].replace('T', ' ')} · {p.idea[:60]}", p.grid_id) for p in studio.grid_list()]
        except Exception:  # no home yet: nothing to reopen
            return []

    def cancel(request: gr.Request = None) -> str:
        return "⏹️ Cancelling after this cell…" if cancels.cancel(session_of(request)) else "Nothing is running."

    def load_styles() -> tuple[Any, Any]:
        mined = studio.styles()
        choices = [(f"{s.name} ({s.prompts} prompts): {', '.join(s.phrases)}", i) for i, s in enumerate(mined.styles)]
        return gr.update(choices=choices, value=choices[0][1] if choices else None), [s.to_dict() for s in mined.styles]

    def apply(idea: str, index: Any, styles: list[dict[str, Any]]) -> tuple[Any, str]:
        if index is None or not styles or int(index) >= len(styles):
            raise InputError("Load the styles and pick one first.")
        out = studio.apply_style(idea or "", styles[int(index)]["phrases"])
        said = f"Added: {', '.join(out['added']) or 'nothing new'} · {out['tokens']} CLIP tokens" + (
            " (over 77: SDXL reads the rest in another chunk)" if out["over"] else "")
        return out["prompt"], said

    def suggest(idea: str) -> tuple[Any, str]:
        found = studio.negatives(idea)
        if not found.terms:
            return gr.update(choices=[], value=[]), (f"None of the {found.neighbours} nearest stored images carries a "
                                                     "negative prompt (DiffusionDB's have none; ingest A1111/ComfyUI images).")
        choices = [(f"{t} ({c} of {found.with_negative})", t) for t, c in found.terms]
        return gr.update(choices=choices, value=[]), f"{found.with_negative} of {found.neighbours} neighbours had a negative prompt."

    def add(negative: str, picked: list[str]) -> str:
        return studio.add_negatives(negative or "", picked or [])

    with gr.Tab("Grid", id="grid") as tab:
        gr.Markdown("Judge prompts across seeds, not on one: rows are prompts (your idea, the best retrieved, rewrite "
                    "candidates, your variants, wildcard expansions), columns are seeds or one setting. Each cell is "
                    "made once and scored by CLIP against the idea; rows are ranked by their mean.")
        with gr.Row():
            idea = gr.Textbox(label="Idea ({a|b} and __name__ wildcards welcome)", scale=4, elem_id="grid-idea",
                              placeholder="a lighthouse in a {storm|fog}, oil painting")
            blocked = sdxl_missing(studio)
            go = gr.Button("Make the grid (needs SDXL)" if blocked else "Make the grid", variant="primary", scale=1,
                           interactive=not blocked, elem_id="grid-go")
            stop = gr.Button("Cancel", variant="stop", scale=0, min_width=100, elem_id="grid-cancel")
        with gr.Row():
            variants = gr.Textbox(label="Your variants (one prompt a line)", lines=2, scale=3, elem_id="grid-variants")
            with gr.Column(scale=2):
                candidates = gr.Slider(0, 8, value=0, step=1, label="Rewrite candidates (0: no LLM)",
                                       elem_id="grid-candidates")
                seeds = gr.Slider(1, 8, value=4, step=1, label="Seed columns", elem_id="grid-seeds")
            with gr.Column(scale=2):
                axis = gr.Textbox(label="Or one setting as columns", placeholder="cfg=4,6,8", elem_id="grid-axis")
                wildcards = gr.Checkbox(label="Expand wildcards into rows", elem_id="grid-wildcards")
                with gr.Row():
                    mode = gr.Radio([("random draws", "random"), ("every combination", "combinatorial")],
                                    value="random", label="Wildcards as", elem_id="grid-wildcard-mode")
                    expansions = gr.Slider(1, 16, value=4, step=1, label="Rows from wildcards (at most)",
                                           elem_id="grid-expansions")
        negative = gr.Textbox(label="Negative prompt", elem_id="grid-negative")
        with gr.Accordion("Settings (the same for every cell)", open=False, elem_id="grid-settings"):
            panel = settings_panel(defaults)
        with gr.Accordion("Styles and negatives from your library", open=False, elem_id="grid-library"):
            with gr.Row():
                load = gr.Button("Load styles", scale=0, min_width=140, elem_id="grid-styles-load")
                style = gr.Dropdown(choices=[], label="Style", scale=4, elem_id="grid-style")
                use = gr.Button("Apply to the idea", scale=0, min_width=160, elem_id="grid-style-apply")
            with gr.Row():
                neg_go = gr.Button("Suggest negatives", scale=0, min_width=160, elem_id="grid-negatives")
                neg_terms = gr.CheckboxGroup(choices=[], label="Neighbours' negative terms", scale=4,
                                             elem_id="grid-negative-terms")
                neg_add = gr.Button("Add to the negative", scale=0, min_width=160, elem_id="grid-negatives-add")
            said = gr.Markdown(elem_id="grid-library-note")
        msg = gr.Markdown(elem_id="grid-note")
        limited(idea, MAX_IDEA_CHARS, "Idea", msg)  # a longer paste is cut at a word, and said (limits.py)
        table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="grid-ranking",
                             column_widths=["6%", "10%", "10%", "10%", "8%", "56%"])
        cells = gr.Gallery(label="Cells (best row first)", columns=4, height="auto", object_fit="contain",
                           elem_id="grid-cells")
        with gr.Row():
            send = gr.Button("Use the best row in Create →", elem_id="grid-send", interactive=False)
            sheet = gr.File(label="Sheet (labelled PNG)", elem_id="grid-sheet", scale=2)
        with gr.Row():
            history = gr.Dropdown(choices=[], label="Earlier grids", scale=4, elem_id="grid-earlier")
            open_btn = gr.Button("Reopen", scale=1, elem_id="grid-reopen")
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        winner, styles = gr.State({}), gr.State([])
        inputs = [idea, variants, candidates, seeds, axis, wildcards, negative, panel.seed, panel.steps, panel.cfg,
                  panel.width, panel.height, panel.sampler, panel.profile, mode, expansions]
        outs = [cells, table, msg, raw, sheet, history, winner]
        for event in (go.click(handler(grid, gpu=True, toast=False), inputs, outs, api_name="grid",
                               show_progress_on=[msg], **GPU),
                      idea.submit(handler(grid, gpu=True, toast=False), inputs, outs, api_visibility="private",
                                  show_progress_on=[msg], **GPU)):
            said_in(event, msg)  # errors are said once, in the tab's line (toast=False)
        said_in(open_btn.click(handler(reopen, gpu=True, toast=False), history, outs, api_name="reopen_grid",
                               show_progress_on=[msg], **GPU), msg)
        stop.click(handler(cancel), None, msg, api_visibility="private", queue=False)
        tab.select(lambda: gr.update(choices=earlier()), None, history, api_visibility="private")
        winner.change(lambda w: gr.update(interactive=bool(w)), winner, send, api_visibility="private", queue=False)
        said_in(load.click(quiet(load_styles), None, [style, styles], api_name="styles"), said)
        said_in(use.click(quiet(apply), [idea, style, styles], [idea, said], api_name="apply_style"), said)
        said_in(neg_go.click(quiet(suggest), idea, [neg_terms, said], api_name="negatives"), said)
        neg_add.click(add, [negative, neg_terms], negative, api_visibility="private", queue=False)
    return GridControls(send, winner)
