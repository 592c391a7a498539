"""What the tabs show, as plain data: table rows, galleries, notes, diffs, settings and status text."""

from __future__ import annotations

import difflib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from studio.images import open_image
from studio.search.results import Hit, SearchResult

COLUMNS = ["similarity", "prompt", "images", "seed", "cfg", "steps", "sampler", "size", "source"]
WIDTHS = ["7%", "47%", "6%", "10%", "5%", "5%", "8%", "7%", "5%"]
SOURCES = {"all": None, "DiffusionDB": "diffusiondb", "mine": "generated"}
MISSING = "—"  # a setting the record does not have (DiffusionDB's every-400th table has none)
MODEL_ROLES = {"clip": "CLIP (search)", "llm": "LLM (rewrite)", "sdxl": "SDXL (generate)",
               "multilingual": "Multilingual (ideas in other languages)"}


def rows(result: SearchResult) -> list[list[Any]]:
    """One table row a hit, most similar first (reverse search ranks by its fused score, kept as it is)."""
    out = []
    for hit in result.results:
        s = hit.settings[0] if hit.settings else {}
        out.append([round(1 - hit.distance, 3), hit.prompt, hit.metadata.get("image_count", MISSING),
                    *(cell(s.get(k)) for k in ("seed", "cfg", "steps", "sampler", "size")),
                    hit.metadata.get("source", MISSING)])
    return out


def cell(value: Any) -> Any:
    return MISSING if value in (None, "") else value


def served_path(hit: Hit, served: tuple[Path, ...]) -> str | None:
    """A hit's file when it is a plain file in a folder the app serves: Gradio sends it as it is,
    instead of decoding it and re-encoding it to WebP (~20 ms an image)."""
    if not hit.file or "::" in hit.file:  # a member of a part zip: only its pixels can be shown
        return None
    try:
        path = Path(hit.file).resolve()
        return str(path) if path.is_file() and any(path.is_relative_to(d.resolve()) for d in served) else None
    except (OSError, ValueError):
        return None


def picture(studio: Any, hit: Hit) -> Image.Image | str | None:
    """What a gallery shows for an image hit: its file where the app serves it, else its decoded
    pixels; None when they are gone or damaged (it drops out of the gallery, not the search)."""
    if (path := served_path(hit, studio.settings.served_dirs)) is not None:
        return path
    data = studio.image_bytes(hit)
    if data is None:
        return None
    try:
        return open_image(data, name=hit.id)
    except Exception:
        return None


def gallery(studio: Any, hits: list[Hit]) -> list[tuple[Image.Image | str, str]]:
    """The hits whose pixels are still on disk, captioned with the start of their prompt."""
    return [(pic, hit.prompt[:120]) for hit in hits if (pic := picture(studio, hit)) is not None]


def note(result: SearchResult) -> str:
    if not result.results:
        return "No results." + (" Some were hidden by the filters." if result.hidden else "")
    return f"{len(result.results)} results" + (f" ({result.hidden} hidden by the filters)" if result.hidden else "")


_WORD = re.compile(r"\S+")


def diff_spans(idea: str, prompt: str) -> list[tuple[str, str | None]]:
    """The prompt word by word against the idea, for gr.HighlightedText: words the prompt adds are
    "added", idea words it leaves out are "dropped", shared words carry no label."""
    a, b = _WORD.findall(idea or ""), _WORD.findall(prompt or "")
    norm = [w.lower().strip(",.;:!()[]{}") for w in a], [w.lower().strip(",.;:!()[]{}") for w in b]
    spans: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, *norm, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            spans.append((" ".join(a[i1:i2]) + " ", "dropped"))
        if op in ("insert", "replace"):
            spans.append((" ".join(b[j1:j2]) + " ", "added"))
        if op == "equal":
            spans.append((" ".join(b[j1:j2]) + " ", None))
    return spans


def settings_line(settings: dict[str, Any]) -> str:
    keys = ("seed", "cfg", "steps", "sampler", "size")
    return " · ".join(f"{k} {settings[k]}" for k in keys if settings.get(k) not in (None, ""))


def details_markdown(hit: Hit) -> str:
    """A generated image's full settings and lineage (History)."""
    m = hit.metadata
    lines = [f"**Prompt:** {hit.prompt}"]
    if m.get("negative_prompt"):
        lines.append(f"**Negative:** {m['negative_prompt']}")
    size = f"{m.get('width')}x{m.get('height')}" if m.get("width") else None
    lines.append("**Settings:** " + settings_line({**m, "size": size}) + (f" · profile {m['profile']}"
                                                                            if m.get("profile") else ""))
    lines.append(f"**Model:** {m.get('sdxl_model') or '?'} · **made** {m.get('timestamp') or '?'}")
    lineage = []
    if m.get("idea"):
        lineage.append(f"idea “{m['idea']}”")
    ids = json.loads(m.get("retrieved_ids") or "[]") if isinstance(m.get("retrieved_ids"), str) else []
    if ids:
        lineage.append(f"{len(ids)} retrieved prompts as context")
    if m.get("llm_model"):
        lineage.append(f"rewritten by {m['llm_model']}")
    if m.get("comparison_id"):
        score = f", CLIP {m['score']:.3f}" if isinstance(m.get("score"), (int, float)) else ""
        lineage.append(f"comparison {m['comparison_id']} ({m.get('variant')}{score})")
    if m.get("parent"):
        lineage.append(f"parent {m['parent']}")
    lines.append("**Lineage:** " + ("; ".join(lineage) if lineage else "typed directly"))
    if hit.file:
        lines.append(f"**File:** `{hit.file}`")
    return "\n\n".join(lines)


def stats_markdown(stats: dict[str, Any]) -> str:
    lines = [f"**Store:** `{stats['store']}`", "", "| index | CLIP model | records | by source |", "|---|---|---|---|"]
    for ix in stats["indexes"]:
        by = ", ".join(f"{k}: {v:,}" for k, v in sorted(ix["by_source"].items())) or "-"
        if not ix.get("exact", True):
            by += " (recounting after an interrupted write…)"
        lines.append(f"| {ix['kind']} | {ix.get('clip_model') or '?'} | {ix['count']:,} | {by} |")
    if not stats["indexes"]:
        lines.append("| (empty) | | 0 | ingest the sample or a DiffusionDB part below |")
    return "\n".join(lines)


def models_markdown(models: list[dict[str, Any]]) -> str:
    lines = ["| model | status |", "|---|---|"]
    for m in models:
        mark = ("**off**" if m.get("unset") else "**unreadable**" if m.get("problem")
                else "**ready**" if m["found"] and not m["starter"]
                else "**starter**" if m["found"] else "**missing**")
        status = m["status"].removeprefix("missing. ").removeprefix("unreadable: ").removeprefix("off ")  # the mark says it already
        lines.append(f"| {MODEL_ROLES.get(m['role'], m['role'])} | {mark} {status} |")
    return "\n".join(lines)


def missing_note(models: list[dict[str, Any]], role: str) -> str:
    """One line for a tab that needs `role`, empty when the model is there."""
    for m in models:
        if m["role"] == role and (not m["found"] or m.get("problem")):
            return f"⚠️ {m['status']}"
    return ""


def comparison_choices(hits: list[Hit]) -> list[tuple[str, str]]:
    """Earlier comparisons among our generations, newest first: (label, comparison id)."""
    seen: dict[str, tuple[float, str]] = {}
    for hit in hits:
        cid = hit.metadata.get("comparison_id")
        if cid and cid not in seen:
            when = float(hit.metadata.get("created") or 0.0)
            stamp = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M") if when else "?"
            seen[cid] = (when, f"{stamp} · {(hit.metadata.get('idea') or hit.prompt)[:60]}")
    return [(label, cid) for cid, (_, label) in sorted(seen.items(), key=lambda kv: -kv[1][0])]
