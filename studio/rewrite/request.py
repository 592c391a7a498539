"""RewriteRequest: what a rewrite is asked, frozen and validated once, before any model loads."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from studio.errors import InputError
from studio.rewrite.prompting import MAX_K, check_counts, clean_idea
from studio.rewrite.steering import steer
from studio.rewrite.untrusted import one_line
from studio.search.results import Filters

MAX_EXAMPLE_TEXT_CHARS = 2_000  # a pasted example is one prompt; the model sees its first ~300 characters


@dataclass(frozen=True)
class RewriteRequest:
    """An idea -> n candidates in the style of the k closest stored prompts (NSFW-filtered as search is), or of
    the examples the user chose (example_ids: stored prompts; example_texts: prompts brought as text; k then
    does not apply). note: a wish the model follows ("warmer light, no people"); locked: terms every candidate
    carries verbatim, besides the idea's LoRA tags, weighted groups and quoted phrases."""

    idea: str
    k: int = 5
    n: int = 1
    filters: Filters = field(default_factory=Filters)
    seed: int | None = None
    max_tokens: int | None = None
    example_ids: tuple[str, ...] = ()
    example_texts: tuple[str, ...] = ()
    note: str | None = None
    locked: tuple[str, ...] = ()

    def validated(self) -> "RewriteRequest":
        """The request cleaned (the idea as one line; the chosen examples without blanks and repeats), or
        InputError saying what to change."""
        idea = clean_idea(self.idea)
        check_counts(self.k, self.n)
        ids, texts = chosen_inputs(self.example_ids, self.example_texts)
        locked = [self.locked] if isinstance(self.locked, str) else list(self.locked or ())
        steer(idea, self.note, locked)  # a note or a locked term it cannot use is refused here, too
        return replace(self, idea=idea, example_ids=tuple(ids), example_texts=tuple(texts), locked=tuple(locked))

    @property
    def chosen(self) -> bool:
        """The user chose the examples (no retrieval)."""
        return bool(self.example_ids or self.example_texts)


def chosen_inputs(ids: Sequence[str] | str | None, texts: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
    """The chosen ids and texts, blanks and repeats dropped; InputError for the wrong type or too many."""
    out: list[list[str]] = []
    for name, values in (("example_ids", ids), ("example_texts", texts)):
        values = [values] if isinstance(values, str) else list(values or [])
        if not all(isinstance(v, str) for v in values):
            raise InputError(f"{name} must be a list of strings, for example ['p-0123…'] or ['a castle, oil painting'].")
        out.append(list(dict.fromkeys(one_line(v) for v in values if v and v.strip())))
    if len(out[0]) + len(out[1]) > MAX_K:
        raise InputError(f"{len(out[0]) + len(out[1])} chosen examples; choose at most {MAX_K} (the model's "
                         "context holds about that many).")
    if too_long := [t for t in out[1] if len(t) > MAX_EXAMPLE_TEXT_CHARS]:
        raise InputError(f"An example text is {len(too_long[0]):,} characters; an example is one prompt (under "
                         f"{MAX_EXAMPLE_TEXT_CHARS:,} characters; the model sees its first 300 or so).")
    return out[0], out[1]
