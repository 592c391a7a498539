"""What the tabs show, as plain data: table rows, galleries and what a click on them picks, notes, diffs,
and a stored record's settings adapted for SDXL (with what changed, said)."""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from studio.errors import InputError
from studio.studio import (
    MAX_CFG, MAX_SIDE, MAX_STEPS, MIN_SIDE, MINE, SDXL_SIZES, SEED_RANGE, Hit, ImageInfo, SearchResult,
    open_image, scheduler_name,
)
from studio.ui.text import clipped, link_of, match, shown

COLUMNS = ["match", "prompt", "images", "seed", "cfg", "steps", "sampler", "size", "source"]
# Pixel widths, not shares: at 800 px a 5% column is 40 px and its header breaks into vertical letters.
WIDTHS = ["76px", "420px", "84px", "112px", "60px", "70px", "124px", "100px", "112px"]
# The Source filter: DiffusionDB by default, so the user's test generations do not crowd it out.
SOURCES: dict[str, str | tuple[str, ...] | None] = {"DiffusionDB": "diffusiondb", "mine": MINE, "all": None}
DEFAULT_SOURCE = "DiffusionDB"
MISSING = "—"  # a setting the record does not have (DiffusionDB's every-400th table has none)
SHOWN_SETTINGS = ("seed", "cfg", "steps", "sampler", "size")  # a row's columns (search.results.SETTING_KEYS: stored)


def cross_modal(result: SearchResult) -> bool:
    """Whether the scores compare a text with an image (CLIP's cosines are small there)."""
    return result.target == "images"


def rows(result: SearchResult) -> list[list[Any]]:
    """One table row a hit, most similar first (reverse search ranks by its fused score, kept as it is)."""
    out = []
    for hit in result.results:
        s = hit.settings[0] if hit.settings else {}
        across = cross_modal(result) or (result.target == "reverse" and not hit.metadata.get("from_images"))
        out.append([match(hit, across), clipped(hit.prompt), hit.metadata.get("image_count", MISSING),
                    *(cell(s.get(k), k) for k in SHOWN_SETTINGS), hit.metadata.get("source", MISSING)])
    return out


def cell(value: Any, key: str = "") -> Any:
    """A table cell; a seed as text, since the page's JavaScript rounds a number past 2**53
    (6952411511246973023 would read 6952411511246973000)."""
    if value in (None, ""):
        return MISSING
    return str(value) if key == "seed" else value


def info_pick(info: ImageInfo) -> dict[str, Any]:
    """A file's own prompt and settings (PNG Info) as a pick for Create (the seed as text: exact on the page)."""
    s = info.settings
    return {"prompt": info.prompt, "negative_prompt": info.negative_prompt or "",
            **{k: cell(s[k], k) for k in ("seed", "steps", "cfg", "sampler", "width", "height") if k in s}}


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
    return [(pic, clipped(hit.prompt, 120)) for hit in hits if (pic := picture(studio, hit)) is not None]


def gallery_picks(studio: Any, hits: list[Hit]) -> tuple[list[tuple[Image.Image | str, str]], list[dict[str, Any]]]:
    """gallery() and, in the same order, what clicking each picture picks: its prompt and settings."""
    pics, picks = [], []
    for hit in hits:
        if (pic := picture(studio, hit)) is not None:
            pics.append((pic, clipped(hit.prompt, 120)))
            picks.append(pick_of(hit))
    return pics, picks


def pick_of(hit: Hit) -> dict[str, Any]:
    """A search result as Create takes it: the prompt, and the settings of its image (never a missing one);
    and its web link when a prompt library gave one."""
    s = hit.settings[0] if hit.settings else {}
    picked = {"prompt": shown(hit.prompt), **{k: cell(s[k], k) for k in SHOWN_SETTINGS
                                              if s.get(k) not in (None, "", MISSING)}}
    return picked | ({"url": url} if (url := link_of(hit.metadata)) else {})


def row_picks(result: SearchResult) -> list[dict[str, Any]]:
    """What a click on each table row offers, in the rows' order: the whole prompt (the cell may be cut), its
    settings as stored (not as the page's cells read back) and its web link (or None)."""
    return [{"url": None, **pick_of(hit)} for hit in result.results]


def page_json(value: Any) -> Any:
    """A result for gr.JSON on the page: every whole number past 2**53 as text (the page's JavaScript would round
    it: a seed of 6952411511246973023 shown as 6952411511246973000)."""
    if isinstance(value, dict):
        return {k: page_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [page_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


def note(result: SearchResult, empty: str | None = None) -> str:
    """The line above the results. `empty`: what is true when there are none (the caller knows: the sample
    still loading, nothing generated yet, no records of that source)."""
    if not result.results:
        if result.hidden:
            return f"No results: the {result.hidden} closest were hidden by the NSFW filter (tick *Show NSFW*)."
        return empty or "No results."
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


def fitted(shape: tuple[int, int], current: tuple[int, int]) -> tuple[int, int]:
    """`shape`'s aspect ratio at no more pixels than `current` (a size this machine was set to serve), sides in
    multiples of 8 within SDXL's range."""
    (w, h), area = shape, current[0] * current[1]
    if w * h <= area:
        return w, h
    scale = (area / (w * h)) ** 0.5
    side = lambda v: int(min(MAX_SIDE, max(MIN_SIDE, v * scale // 8 * 8)))  # noqa: E731 - rounded down: never more
    out = side(w), side(h)
    return out if out[0] * out[1] <= area else current  # SDXL's smallest side forced it up: the size set stays


def for_sdxl(settings: dict[str, Any], exact: bool = False, sizes: bool | None = None,
             current: tuple[Any, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """A stored record's settings as Create can use them with SDXL, and what had to change, in words.
    exact (History's own generations, a dropped image's own settings): the seed is used (a seed past SDXL's range
    is said); sizes (default: exact) are kept as they are, to make the same picture again.
    current: the size the panel is set to; a suggested size never has more pixels than it (a CPU set to 64×64
    keeps small pictures: the neighbours' shape is taken, not their 1024×1024)."""
    sizes = exact if sizes is None else sizes
    s, out, changed = dict(settings or {}), {}, []
    if s.get("size") and not s.get("width"):
        w, _, h = str(s["size"]).partition("x")
        s["width"], s["height"] = w, h
    if str(s.get("seed", "")).isdigit():
        if int(s["seed"]) < SEED_RANGE:
            out["seed"] = int(s["seed"])
        elif exact:  # ComfyUI's and Fooocus' 64-bit seeds: SDXL here takes A1111's 32-bit ones
            changed.append(f"seed {s['seed']} is past the {SEED_RANGE - 1} the studio's SDXL takes: not used")
    if isinstance(s.get("steps"), (int, float)) and 1 <= s["steps"] <= MAX_STEPS:
        out["steps"] = int(s["steps"])
    if isinstance(s.get("cfg"), (int, float)) and 0 <= s["cfg"] <= MAX_CFG:
        out["cfg"] = float(s["cfg"])
    try:
        w, h = int(s.get("width") or 0), int(s.get("height") or 0)
    except (TypeError, ValueError):
        w = h = 0
    if w and h:
        if sizes and MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE:
            out["width"], out["height"] = w // 8 * 8, h // 8 * 8
        else:
            # DiffusionDB's images are SD 1.x sizes (512 px): SDXL draws badly far from its ~1 MP buckets,
            # so the SDXL size of the nearest aspect ratio is used instead.
            bw, bh = min(SDXL_SIZES, key=lambda wh: abs(wh[0] / wh[1] - w / h))
            why = "SDXL's size for that shape"
            now = _size(current)
            if now is not None and (fw := fitted((bw, bh), now)) != (bw, bh):
                bw, bh = fw
                why = f"that shape within your {now[0]}×{now[1]}'s pixels"
            out["width"], out["height"] = bw, bh
            if (bw, bh) != (w, h):
                changed.append(f"{w}×{h} → {bw}×{bh} ({why})")
    if s.get("sampler"):
        try:
            name = scheduler_name(s["sampler"])
            out["sampler"] = name
            if name != s["sampler"]:
                changed.append(f"sampler {s['sampler']} → {name}")
        except InputError:
            changed.append(f"sampler {s['sampler']} has no diffusers scheduler here: the current one is kept")
    for key in ("profile", "negative_prompt"):
        if s.get(key) is not None:
            out[key] = s[key]
    return out, changed


def _size(current: tuple[Any, Any] | None) -> tuple[int, int] | None:
    try:
        w, h = int(current[0]), int(current[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    return (w, h) if w > 0 and h > 0 else None


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
