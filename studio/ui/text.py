"""What the page says in words: stored text made inert for Markdown, readable scores and times, the
missing-models banner, a generation's settings and lineage, the library's statistics."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from studio.studio import TOKEN_LIMIT, Hit, ImageInfo, Lineage, StoreStats, count_tokens, token_chunks

MODEL_ROLES = {"clip": "CLIP (search)", "llm": "LLM (rewrite)", "sdxl": "SDXL (generate)",
               "multilingual": "Multilingual (ideas in other languages)"}
# What each model makes possible, for the banner: what cannot work without it.
NEEDED_FOR = {"clip": "search, the library and grounded rewrites", "sdxl": "Generate and Compare"}
ENV = {"clip": "STUDIO_CLIP_MODEL", "llm": "STUDIO_LLM_MODEL", "sdxl": "STUDIO_SDXL_MODEL"}
OFFLINE_EXAMPLE = {"clip": "/path/to/clip-vit-base-patch32", "sdxl": "/path/to/sdxl-base-1.0 (or a .safetensors)"}
# What can start markup in Markdown/HTML (links, images, tags, code, emphasis, tables, formulas, entities):
# escaped; the rest ('/', '.', '-') stays as it is, so the text an API client reads stays readable.
_PUNCT = re.compile(r"([\\`*_{}\[\]()#!|~<>$&])")
# The page's Markdown is GitHub-flavoured: it links bare urls, "www." hosts and emails. Their ':', '.' and '@'
# are escaped there only, so "13 images: 10 with a prompt" still reads as it is through the API.
_BARE = re.compile(r"\b([a-z][a-z0-9+.-]*):(?=//)|\b(www)\.|(?<=\w)@(?=\w)", re.I)
# Bidirectional controls (embeddings, overrides, isolates, marks): a stored U+202E would reorder everything after
# it on the page ("gpj.exe" read backwards). Shown text drops them; what is stored stays as it was.
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
TABLE_CHARS = 300  # a prompt's cell in a table: longer ones are cut (a click on the row shows the whole text)
# CLIPScore (Hessel et al. 2021): 2.5 x max(cosine, 0) puts CLIP's text-image cosines (~0.15-0.4) on 0..1.
CLIPSCORE_W = 2.5


def shown(text: Any) -> str:
    """Stored text as the page shows it: the bidirectional controls that could reorder it taken out."""
    return BIDI.sub("", str(text if text is not None else ""))


def clipped(text: Any, limit: int = TABLE_CHARS) -> str:
    """A prompt for a table cell or a caption: shown(), cut to `limit` characters with an ellipsis."""
    flat = shown(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def inert(text: Any) -> str:
    """Stored or typed text for a Markdown component, shown as the characters it is: no link, image, HTML
    tag, formula or emphasis can form (a stored `![x](http://host/beacon.png)` must never make the page
    fetch anything), and no bare url or email becomes a link: each character that could open markup is
    backslash-escaped, as CommonMark allows."""
    flat = " ".join(shown(text or "").split())
    escaped = _PUNCT.sub(r"\\\1", html.unescape(flat))
    return _BARE.sub(lambda m: f"{m[1]}\\:" if m[1] else f"{m[2]}\\." if m[2] else "\\@", escaped)


def quoted(text: Any, limit: int = 300) -> str:
    """A prompt inside a sentence: inert, cut to `limit` characters with an ellipsis."""
    flat = " ".join(shown(text or "").split())
    return inert(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def match(hit: Hit, cross_modal: bool) -> str:
    """How close a result is, as a percentage a person can read: the cosine for text-to-text and
    image-to-image; CLIPScore for text-to-image and image-to-text, whose raw cosines are small and can be
    negative (a 0.3 cosine there is a good match)."""
    sim = 1.0 - float(hit.distance)
    return clip_percent(sim) if cross_modal else f"{round(100 * max(sim, 0.0))}%"


def clip_percent(cosine: float) -> str:
    """A text-image CLIP cosine (an image against an idea) as the percentage every tab shows: CLIPScore."""
    return f"{round(100 * min(1.0, CLIPSCORE_W * max(float(cosine), 0.0)))}%"


def ago(epoch: Any, now: float | None = None) -> str:
    """'just now', '5 minutes ago', '2 hours ago', 'yesterday', '3 days ago', else the date."""
    try:
        then = float(epoch)
    except (TypeError, ValueError):
        return "at an unknown time"
    if then <= 0:
        return "at an unknown time"
    s = max(0.0, (now or time.time()) - then)
    for limit, unit, size in ((60, None, 1), (3600, "minute", 60), (86400, "hour", 3600)):
        if s < limit:
            if unit is None:
                return "just now"
            n = int(s // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    days = int(s // 86400)
    if days == 1:
        return "yesterday"
    if days < 30:
        return f"{days} days ago"
    return time.strftime("on %Y-%m-%d", time.localtime(then))


def settings_line(settings: dict[str, Any]) -> str:
    keys = ("seed", "cfg", "steps", "sampler", "size")
    return " · ".join(f"{k} {settings[k]}" for k in keys if settings.get(k) not in (None, ""))


def info_markdown(info: ImageInfo) -> str:
    """A dropped image's own metadata (PNG Info) in words: the tool, prompt, negative prompt and settings (the
    seed as text, exactly as the file wrote it)."""
    s = info.settings
    size = f"{s['width']}x{s['height']}" if s.get("width") and s.get("height") else None
    model = f", model {inert(info.model)}" if info.model else ""
    lines = [f"**This image says how it was made** ({inert(info.tool)}{model}):",
             f"**Prompt:** {inert(info.prompt)}"]
    if info.negative_prompt:
        lines.append(f"**Negative:** {inert(info.negative_prompt)}")
    if line := settings_line({**s, "size": size}):
        lines.append(f"**Settings:** {inert(line)}")
    return "\n\n".join(lines)


LINK_KEYS = ("url", "image_url", "img_url", "link", "source_url")  # a prompt library's link to its image
_SAFE_URL = re.compile(r"https?://[^\s<>\\\x00-\x1f]+", re.I)


def link_of(meta: dict[str, Any]) -> str | None:
    """A record's web link (a prompt library's image url), when it is a plain http(s) URL."""
    for key in LINK_KEYS:
        value = str(meta.get(key) or "").strip()
        if _SAFE_URL.fullmatch(value):
            return value
    return None


def link_markdown(url: str | None) -> str:
    """The link as a link, never an image: the page fetches nothing from it unless the user clicks."""
    if not url or not _SAFE_URL.fullmatch(url):
        return ""
    host = re.sub(r"^https?://", "", url, flags=re.I).split("/", 1)[0]
    return f"[Open its image on {inert(host)} ↗](<{url}>) (another site: nothing is loaded from it unless you click)"


def token_line(text: str) -> str:
    """The live count under a prompt: SDXL's CLIP tokens (start and end included), and how many 75-token
    chunks its text encoders will read it in (A1111's way: past 77 the rest is read, not dropped)."""
    n = count_tokens(text or "") if (text or "").strip() else 0
    if n <= TOKEN_LIMIT:
        return f"{n} / {TOKEN_LIMIT} CLIP tokens"
    return f"{n} CLIP tokens: read in {token_chunks(text)} chunks of 75"


def missing_banner(models: list[dict[str, Any]]) -> str:
    """One banner for every model that is missing or unreadable: what cannot work, the exact command that
    fetches it (once, online) and the offline way. Empty when all are there (the LLM always has its
    starter model)."""
    lines = []
    for m in models:
        role = m["role"]
        if role not in NEEDED_FOR or (m["found"] and not m.get("problem")):
            continue
        what = "unreadable" if m.get("problem") else "missing"
        lines.append(f"⚠️ **{MODEL_ROLES[role]} is {what}**, so {NEEDED_FOR[role]} cannot work yet. Get it once "
                     f"while online with `.venv/bin/python -m studio models --download {role}`, or point the studio "
                     f"at a copy on this machine: `{ENV[role]}={OFFLINE_EXAMPLE[role]} .venv/bin/python launch.py`. "
                     "Then restart the studio.")
    return "  \n".join(lines)


def details_markdown(hit: Hit, retrieved: list[str] | None = None, now: float | None = None) -> str:
    """A generated image's settings and lineage, in words (History). `retrieved`: the texts of the stored
    prompts the LLM was shown (looked up by the caller from the lineage's ids)."""
    m = hit.metadata
    lines = [f"**Prompt:** {inert(hit.prompt)}"]
    if m.get("negative_prompt"):
        lines.append(f"**Negative:** {inert(m['negative_prompt'])}")
    size = f"{m.get('width')}×{m.get('height')}" if m.get("width") else None
    extra = f" · profile {m['profile']}" if m.get("profile") else ""
    lines.append("**Settings:** " + inert(settings_line({**m, "size": size})) + extra)
    made = f"Made {ago(m.get('created'), now)} with {inert(m.get('sdxl_model') or 'an unknown model')}"
    lines.append(made + (" · ★ favourite" if m.get("favourite") else ""))
    if m.get("idea"):
        rewrite = f", rewritten by {inert(m['llm_model'])}" if m.get("llm_model") else ""
        lines.append(f"**From the idea:** “{quoted(m['idea'])}”{rewrite}")
    if m.get("note"):
        lines.append(f"**Your note to the LLM:** “{quoted(m['note'])}”")
    lineage = Lineage.from_metadata(m)
    if locked := lineage.locked:
        lines.append("**Kept exactly:** " + ", ".join(f"“{quoted(t, 80)}”" for t in locked))
    brought = lineage.example_texts
    shown_all = [*(retrieved or []), *brought]
    if shown_all:
        whose = "you chose" if m.get("examples_chosen") else "the LLM was shown"
        shown = "\n".join(f"{i}. {quoted(t, 160)}" for i, t in enumerate(shown_all[:8], 1))
        lines.append(f"**Examples {whose} ({len(shown_all)}):**\n\n{shown}")
    if m.get("comparison_id"):
        score = f", CLIP {m['score']:.3f}" if isinstance(m.get("score"), (int, float)) else ""
        lines.append(f"**Compare:** the {inert(m.get('variant') or '?')} column{score}")
    if not (m.get("idea") or m.get("comparison_id") or shown_all):
        lines.append("Typed directly (no rewrite).")
    return "\n\n".join(lines)


def stats_markdown(stats: StoreStats) -> str:
    lines = [f"**Store:** `{stats.store}`", "", "| index | CLIP model | records | by source |", "|---|---|---|---|"]
    for ix in stats.indexes:
        by = ", ".join(f"{inert(k)}: {v:,}" for k, v in sorted(ix.by_source.items())) or "-"
        if not ix.exact:
            by += " (recounting after an interrupted write…)"
        lines.append(f"| {ix.kind} | {inert(ix.clip_model or '?')} | {ix.count:,} | {by} |")
    if not stats.indexes:
        lines.append("| (empty) | | 0 | ingest the sample or a DiffusionDB part below |")
    return "\n".join(lines)


def models_markdown(models: list[dict[str, Any]]) -> str:
    lines = ["| model | status |", "|---|---|"]
    for m in models:
        mark = ("**off**" if m.get("unset") else "**unreadable**" if m.get("problem")
                else "**ready**" if m["found"] and not m["starter"] else "**starter**" if m["found"] else "**missing**")
        # the mark says it already
        status = m["status"].removeprefix("missing. ").removeprefix("unreadable: ").removeprefix("off ")
        lines.append(f"| {MODEL_ROLES.get(m['role'], m['role'])} | {mark} {status} |")
    return "\n".join(lines)
