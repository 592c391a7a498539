"""A grid as one labelled PNG sheet (like A1111's grid): prompts down the side, columns across, metadata inside."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

SHEET_KEY = "prompt-studio-grid"  # not our image chunk's key: a sheet is never taken for a generation
CELL_MAX, CELL_MIN, SIDE, HEAD, PAD = 256, 128, 320, 44, 8


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size)  # Pillow's own scalable font: no system font needed
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def row_label(result: Any, row: int, rank: int) -> str:
    r, s = result.plan.rows[row], result.row_scores()[row]
    score = "no score" if s.mean is None else f"CLIP {s.mean:.3f} ± {s.spread:.3f}"
    return f"#{rank} {r.kind} · {score}\n{r.prompt}"


def sheet_metadata(result: Any) -> dict[str, Any]:
    """What the sheet carries: the grid's id, idea, columns and every row's prompt and scores, each cell's seed."""
    p = result.plan
    return {"grid_id": p.grid_id, "idea": p.idea, "reference": p.reference, "axis": p.axis,
            "columns": [c.label for c in p.columns], "rows": [
                {"kind": r.kind, "prompt": r.prompt, "mean": s.mean, "spread": s.spread}
                for r, s in zip(p.rows, result.row_scores())],
            "ranking": [s.row for s in result.ranking()],
            "cells": [{"row": c.row, "col": c.col, "seed": c.request.seed, "score": c.score, "image_id": c.image_id,
                       "state": c.state} for c in result.cells]}


def render_sheet(result: Any) -> Image.Image:
    """Rows in ranked order (best on top), each labelled with its rank, kind, mean ± spread and prompt."""
    p = result.plan
    first = next((c.image for c in result.cells if c.image is not None), None)
    w, h = first.size if first is not None else (CELL_MIN, CELL_MIN)
    scale = min(CELL_MAX / max(w, h), max(1.0, CELL_MIN / max(w, h)))
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    order = [s.row for s in result.ranking()]
    sheet = Image.new("RGB", (SIDE + len(p.columns) * (cw + PAD) + PAD, HEAD + len(order) * (ch + PAD) + PAD),
                      "white")
    draw, small, head = ImageDraw.Draw(sheet), _font(12), _font(14)
    for c, column in enumerate(p.columns):
        draw.text((SIDE + c * (cw + PAD) + cw // 2, HEAD // 2), column.label, fill="black", font=head, anchor="mm")
    lines_fit = max(2, ch // 15)
    for rank, row in enumerate(order, 1):
        top = HEAD + (rank - 1) * (ch + PAD)
        head_line, prompt = row_label(result, row, rank).split("\n", 1)
        body = textwrap.wrap(prompt, 44)
        body = body[: lines_fit - 1] if len(body) < lines_fit else body[: lines_fit - 2] + ["…"]
        draw.text((PAD, top + 2), head_line, fill="black", font=head)
        draw.multiline_text((PAD, top + 22), "\n".join(body), fill="#333333", font=small, spacing=3)
        for c in range(len(p.columns)):
            cell = result.cell(row, c)
            left = SIDE + c * (cw + PAD)
            if cell.image is None:
                draw.rectangle((left, top, left + cw - 1, top + ch - 1), outline="#999999", fill="#eeeeee")
                draw.text((left + cw // 2, top + ch // 2), "not made", fill="#777777", font=small, anchor="mm")
                continue
            sheet.paste(cell.image.convert("RGB").resize((cw, ch)), (left, top))
            if cell.score is not None:
                draw.rectangle((left, top + ch - 18, left + 70, top + ch), fill="black")
                draw.text((left + 4, top + ch - 16), f"{cell.score:.3f}", fill="white", font=small)
    return sheet


def save_sheet(result: Any, path: Path) -> Path:
    """The sheet as a PNG: A1111's `parameters` of the best row's first cell (as A1111 writes its grids) and
    our JSON with every prompt, column and seed."""
    from studio.library.pngmeta import Parameters, format_parameters

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    best = result.ranking()[0].row if result.plan.rows else 0
    req = result.cell(best, 0).request if result.cells else None
    if req is not None:
        info.add_text("parameters", format_parameters(Parameters(req.prompt, req.negative_prompt, req.steps,
                                                                 req.scheduler, req.cfg, req.seed, req.width,
                                                                 req.height)))
    info.add_itxt(SHEET_KEY, json.dumps(sheet_metadata(result), ensure_ascii=False))
    tmp = path.with_name(f".partial-{path.name}")
    render_sheet(result).save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)
    return path
