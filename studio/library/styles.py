"""Styles mined from the library: modifier phrases counted in streaming passes, grouped by how they co-occur."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

MAX_WORDS, MAX_CHARS = 6, 48  # longer segments are descriptions, not modifiers
CAP = 300_000  # distinct phrases held in pass 1; past it the rarest are dropped (lossy counting)
CANDIDATES = 4_000  # phrases counted exactly in pass 2
PAIRED = 400  # the most common of them, whose co-occurrences are counted
MIN_LIFT, MIN_SHARE = 1.5, 0.15  # a phrase joins a style when it comes with the anchor this much more than chance
STYLE_SIZE = 5
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")
_JUNK = re.compile(r"[()\[\]{}<>\"“”]+")
_SPLIT = re.compile(r"[,|\n]")


def phrase_of(segment: str) -> str | None:
    """One comma-separated segment as a modifier phrase (lower case, weights and brackets gone), or None."""
    text = " ".join(_JUNK.sub(" ", _WEIGHT.sub(" ", segment)).split()).strip(" .;:!-_*").lower()
    if not text or len(text) > MAX_CHARS or len(text.split()) > MAX_WORDS or not re.search(r"[a-z]", text):
        return None
    return text


# DiffusionDB's segments repeat: 50k prompts hold ~425k segments but ~11k distinct ones. Remembering the newest
# SEGMENTS of them turns most of the three passes' regex work into a lookup (mining 300k stand-in prompts: 14.9 s
# before, 5.7 s after, on this 2-core machine; the cache holds ~60 MB at most).
SEGMENTS = 1 << 18
_phrase = lru_cache(maxsize=SEGMENTS)(phrase_of)


def modifiers(prompt: str) -> list[str]:
    """The prompt's modifier phrases, each once: every comma-separated segment after the first (the subject)."""
    out: list[str] = []
    for segment in _SPLIT.split(prompt or "")[1:]:
        phrase = _phrase(segment)
        if phrase and phrase not in out:
            out.append(phrase)
    return out


@dataclass
class Style:
    """A group of phrases that occur together; `prompts`: how many stored prompts use the anchor with another."""

    name: str
    phrases: list[str]
    prompts: int
    counts: dict[str, int] = field(default_factory=dict)  # each phrase's prompt count
    thumbnail: str | None = None  # a stored image's file whose prompt used the style
    image_id: str | None = None
    kind: str = "mined"  # "mined" | "favourites"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Mined:
    """What a mining run found: every counted phrase's exact count, and the styles."""

    prompts: int
    counts: dict[str, int]
    styles: list[Style]
    passes: int
    pruned: bool  # pass 1 dropped rare phrases (held CAP distinct ones at most)

    def to_dict(self, top: int = 200) -> dict[str, Any]:
        common = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return {"prompts": self.prompts, "passes": self.passes, "pruned": self.pruned,
                "phrases": [{"phrase": p, "count": c} for p, c in common],
                "styles": [s.to_dict() for s in self.styles]}


def _pass_one(texts: Iterable[str]) -> tuple[Counter[str], int, bool]:
    counts: Counter[str] = Counter()
    floor, total, pruned = 1, 0, False
    for prompt in texts:
        total += 1
        counts.update(modifiers(prompt))
        if len(counts) > CAP:  # lossy: the rarest go; a heavy phrase is counted again exactly in pass 2
            counts = Counter({p: c for p, c in counts.items() if c > floor})
            floor, pruned = floor + 1, True
    return counts, total, pruned


def _pass_two(texts: Iterable[str], candidates: set[str], paired: set[str]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    exact: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for prompt in texts:
        found = [p for p in modifiers(prompt) if p in candidates]
        exact.update(found)
        top = sorted(p for p in found if p in paired)
        for i, a in enumerate(top):
            for b in top[i + 1:]:
                pairs[(a, b)] += 1
    return exact, pairs


def group(counts: dict[str, int], pairs: Counter[tuple[str, str]], total: int, paired: Sequence[str],
          limit: int) -> list[tuple[str, list[str]]]:
    """Anchors by count; each takes the unclaimed phrases that come with it most (lift and share of the anchor)."""
    claimed: set[str] = set()
    out = []
    for anchor in paired:
        if anchor in claimed or len(out) >= limit:
            continue
        mates = []
        for other in paired:
            if other == anchor or other in claimed:
                continue
            both = pairs.get((min(anchor, other), max(anchor, other)), 0)
            if not both:
                continue
            lift = both * total / (counts[anchor] * counts[other])
            # Lift alone misses phrases in nearly every prompt (lift ~1): those join when each mostly has the other.
            if both / counts[anchor] >= MIN_SHARE and (lift >= MIN_LIFT or both / counts[other] >= 0.5):
                mates.append((both, other))
        mates.sort(reverse=True)
        members = [anchor] + [m for _, m in mates[: STYLE_SIZE - 1]]
        if len(members) < 2:
            continue
        claimed.update(members)
        out.append((anchor, members))
    return out


def mine(texts: Callable[[], Iterator[str]], images: Callable[[], Iterator[tuple[str, str, str]]] | None = None,
         limit: int = 24) -> Mined:
    """Styles of the prompts `texts()` yields (called once per pass: three passes, memory bounded by CAP
    phrases, not by the prompts). `images()`: (prompt, image id, file) of stored images, for thumbnails."""
    first, total, pruned = _pass_one(texts())
    candidates = {p for p, c in first.most_common(CANDIDATES) if c > 1}
    paired = [p for p, _ in first.most_common(PAIRED) if p in candidates]
    exact, pairs = _pass_two(texts(), candidates, set(paired))
    # Not pruned: pass 1 counted every phrase exactly (the rare ones too).
    counts = dict(first) if not pruned else dict(exact)
    counts.update(exact)
    groups = group(counts, pairs, max(total, 1), sorted(paired, key=lambda p: (-counts[p], p)), limit)
    behind = Counter[str]()
    sets = {anchor: set(members) for anchor, members in groups}
    for prompt in texts():  # pass 3: the prompts behind each style (its anchor and at least one more)
        found = set(modifiers(prompt))
        for anchor, members in sets.items():
            if anchor in found and len(found & members) >= 2:
                behind[anchor] += 1
    styles = [Style(", ".join(members[:2]), members, behind[anchor], {m: counts[m] for m in members})
              for anchor, members in groups]
    if images is not None:
        thumbnails(styles, images())
    styles.sort(key=lambda s: -s.prompts)
    return Mined(total, counts, styles, 3, pruned)


def thumbnails(styles: list[Style], images: Iterable[tuple[str, str, str]]) -> None:
    """Each style's picture: the stored image whose prompt shares the most of its phrases (two at least)."""
    best: dict[int, int] = {}
    for prompt, image_id, file in images:
        if not file:
            continue
        found = set(modifiers(prompt))
        for i, style in enumerate(styles):
            hits = len(found & set(style.phrases))
            if hits >= 2 and hits > best.get(i, 0):
                best[i], style.thumbnail, style.image_id = hits, file, image_id


def favourites_style(prompts: Sequence[tuple[str, str, str]], size: int = 6) -> Style | None:
    """Your ★ favourites' most used modifiers as a style of their own, pictured by a favourite."""
    counts = Counter(p for prompt, _, _ in prompts for p in modifiers(prompt))
    if not counts:
        return None
    phrases = [p for p, _ in counts.most_common(size)]
    style = Style("★ your favourites", phrases, len(prompts), dict(counts.most_common(size)), kind="favourites")
    thumbnails([style], prompts)
    if style.thumbnail is None and prompts:
        style.thumbnail, style.image_id = prompts[0][2], prompts[0][1]
    return style


def apply_style(idea: str, phrases: Sequence[str]) -> dict[str, Any]:
    """The idea with the style's phrases appended, those it already holds left out, and its CLIP token count."""
    from studio import tokens

    idea = (idea or "").strip().rstrip(",")
    have = {phrase_of(s) for s in _SPLIT.split(idea)} | {phrase_of(idea)}
    added = [p for p in phrases if phrase_of(p) not in have]
    text = ", ".join([idea, *added]) if idea else ", ".join(added)
    count = tokens.count(text)
    return {"prompt": text, "added": added, "skipped": [p for p in phrases if p not in added], "tokens": count,
            "over": count > 77}
