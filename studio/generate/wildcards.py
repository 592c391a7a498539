"""Wildcards and combinations through dynamicprompts: {a|b} variants and __name__ lists, A1111 syntax kept."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from studio.errors import InputError

MODES = ("random", "combinatorial")
MAX_EXPANSIONS = 64  # a grid row or a Create image each: past this it is a batch job, not a comparison
LIBRARY = "library/"  # __library/favourites__, __library/SOURCE__: the user's own prompts as a list
# What dynamicprompts must never read: a LoRA tag's name may hold "__" (add__detail) or "|", and a locked
# term is the user's verbatim. Each is swapped for a private-use token before expansion and put back after.
_PROTECTED = re.compile(r"<(?:lora|lyco|hypernet):[^<>]*>", re.IGNORECASE)
_WILDCARD = re.compile(r"__([\w./\-*]+?)__")
_VARIANT = re.compile(r"\{[^{}]*\|[^{}]*\}|\{[^{}]*\$\$[^{}]*\}")


@dataclass
class Expansion:
    """What a template gave: the prompts in order, how they were drawn, and any note for the user."""

    template: str
    prompts: list[str]
    mode: str
    seed: int | None
    capped: bool = False  # combinatorial: more combinations existed than the cap let through
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"template": self.template, "prompts": self.prompts, "mode": self.mode, "seed": self.seed,
                "capped": self.capped, "notes": self.notes}


def has_syntax(text: str) -> bool:
    """True when the text holds a {a|b} variant or a __name__ wildcard (LoRA tags do not count)."""
    bare = _PROTECTED.sub(" ", text or "")
    return bool(_VARIANT.search(bare) or _WILDCARD.search(bare))


def wildcard_names(text: str) -> list[str]:
    return [m.group(1) for m in _WILDCARD.finditer(_PROTECTED.sub(" ", text or ""))]


def _protect(text: str, locked: Sequence[str]) -> tuple[str, list[str]]:
    kept: list[str] = []

    def hold(value: str) -> str:
        kept.append(value)
        return f"\ue000{len(kept) - 1}\ue001"

    for term in sorted({t for t in locked if t and t.strip()}, key=len, reverse=True):  # longest first
        text = text.replace(term, hold(term))
    return _PROTECTED.sub(lambda m: hold(m.group(0)), text), kept


def _restore(text: str, kept: Sequence[str]) -> str:
    return re.sub("\ue000(\\d+)\ue001", lambda m: kept[int(m.group(1))], text)


def _manager(folder: Path | None, library: Callable[[str], list[str] | None] | None, names: list[str]) -> object:
    from dynamicprompts.wildcards import WildcardManager

    lists: dict[str, list[str]] = {}
    for name in names:
        if name.startswith(LIBRARY) and library is not None and name not in lists:
            values = library(name[len(LIBRARY):])
            if values:
                lists[name] = [" ".join(v.split()) for v in values if v and v.strip()]
    roots: list[object] = [Path(folder)] if folder is not None and Path(folder).is_dir() else []
    if lists:
        roots.append(lists)
    return WildcardManager(root_map={"": roots})  # type: ignore[dict-item]


def expand(template: str, *, mode: str = "random", n: int = 4, seed: int | None = 0,
           folder: Path | None = None, library: Callable[[str], list[str] | None] | None = None,
           locked: Sequence[str] = (), repeats: bool = False) -> Expansion:
    """The template's prompts: `random` draws n with the seed (the same seed, the same prompts; repeats
    dropped unless `repeats`: Create's batch keeps one image per draw, each at its own seed), `combinatorial` lists every combination up to n (capped says when there were more).
    `folder`: models/wildcards (NAME.txt, one value a line, subfolders as NAME/SUB). `library(name)`: the
    values of __library/NAME__ (a source's prompts, or "favourites"). A1111's weights, BREAK and LoRA tags
    pass through as written; each `locked` term comes back verbatim. A wildcard with no list is refused,
    with the names there are."""
    if mode not in MODES:
        raise InputError(f"Unknown wildcard mode {mode!r}: use one of {', '.join(MODES)}.")
    if not isinstance(n, int) or not 1 <= n <= MAX_EXPANSIONS:
        raise InputError(f"n={n!r}: expand into 1 to {MAX_EXPANSIONS} prompts.")
    from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator

    text, kept = _protect(template, locked)
    names = wildcard_names(text)
    manager = _manager(folder, library, names)
    known = set(manager.get_collection_names())  # type: ignore[attr-defined]
    missing = [name for name in names if name not in known and not any(c.startswith(name.rstrip("*")) for c in known
                                                                         if "*" in name)]
    if missing:
        have = ", ".join(f"__{k}__" for k in sorted(known)) or "none yet"
        raise InputError(f"No wildcard list for {', '.join(f'__{m}__' for m in missing)}. Put a {missing[0]}.txt "
                         f"(one value a line) in {folder or 'models/wildcards'}, or use __library/favourites__ or "
                         f"__library/SOURCE__. Lists here: {have}.")
    notes: list[str] = []
    if mode == "combinatorial":
        out = CombinatorialPromptGenerator(manager).generate(text, max_prompts=n + 1)
        capped = len(out) > n
        out = out[:n]
        if capped:
            notes.append(f"More than {n} combinations: the first {n} are used (raise the cap for more).")
    else:
        out = RandomPromptGenerator(wildcard_manager=manager, seed=seed).generate(text, n)
        capped = False
    prompts: list[str] = []
    for prompt in out:
        prompt = _restore(" ".join(str(prompt).split()), kept)
        if repeats or prompt not in prompts:  # a random draw can repeat itself; one row each
            prompts.append(prompt)
    if mode == "random" and len(prompts) < len(out):
        notes.append(f"{len(out) - len(prompts)} repeated draws left out: {len(prompts)} different prompts.")
    return Expansion(template, prompts, mode, seed, capped, notes)
