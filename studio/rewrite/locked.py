"""Locked terms: what every candidate carries verbatim. Found in the idea (LoRA tags, A1111 weighted and
emphasised groups "(…:1.3)" "((…))" "[…]", quoted phrases) or locked by the user; shown to the LLM as plain
words (a LoRA tag not at all); put back after cleaning where the model kept or paraphrased their words, or
appended where it dropped them.

Why the LLM never sees the syntax: a small model mangles "(red hair:1.3)" into "(red hair:1.3" or "red hair 1.3",
and our output cleaning removes quotes and every LoRA tag (a model's own, or one copied from an example, is not
the user's to load). So the model reads the words it should build on, and the syntax is ours to restore.
A LoRA tag's name is a file handle ("add_detail_xl"), not a description, and A1111 takes it out of the prompt
wherever it stands, so it is withheld from the model and re-attached at the end."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from studio.errors import InputError
from studio.rewrite.untrusted import LORA_TAG, SPECIAL, one_line, strip_markup

MAX_LOCKED = 16
MAX_TERM_CHARS = 200
_CLOSE = {"(": ")", "[": "]"}
_QUOTES = {'"': '"', "“": "”", "„": "“", "«": "»"}
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")  # "(x:1.3)", "[a:b:10]"
_SYNTAX = re.compile(r'[()\[\]{}"“”„«»|:\\]')


@dataclass(frozen=True)
class LockedTerm:
    """One locked term: `text` verbatim as the user wrote it; `words`, what the LLM is shown of it."""

    text: str
    words: str  # "" for a LoRA tag: the model never sees one
    kind: str  # "lora" | "group" | "quoted" | "user"


def plain(text: str) -> str:
    """A term's words without its syntax: "(red hair:1.3)" -> "red hair", '"OPEN"' -> "OPEN"."""
    return " ".join(_SYNTAX.sub(" ", _WEIGHT.sub(" ", LORA_TAG.sub(" ", text))).split())


def _closing(text: str, start: int) -> int | None:
    """The index after the bracket that closes the one at `start` (both kinds nest); None: unbalanced."""
    stack: list[str] = []
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # "\(": a literal bracket in A1111
            continue
        if c in _CLOSE:
            stack.append(_CLOSE[c])
        elif c in (")", "]"):
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return i + 1
        i += 1
    return None


def find_terms(idea: str) -> list[LockedTerm]:
    """The outermost LoRA tags, bracket groups and quoted phrases of the idea, in order (an empty or
    unbalanced group is left as text)."""
    found: list[LockedTerm] = []
    i = 0
    while i < len(idea):
        c, end, kind = idea[i], None, ""
        if c == "\\":
            i += 2
            continue
        if (tag := LORA_TAG.match(idea, i)) is not None:
            end, kind = tag.end(), "lora"
        elif c in _CLOSE:
            end, kind = _closing(idea, i), "group"
        elif c in _QUOTES and (close := idea.find(_QUOTES[c], i + 1)) > i + 1:
            end, kind = close + 1, "quoted"
        if end is not None and (kind == "lora" or plain(idea[i:end])):
            text = idea[i:end]
            found.append(LockedTerm(text, "" if kind == "lora" else plain(text), kind))
            i = end
        else:
            i += 1
    return found


def clean_terms(terms: Sequence[str] | str | None) -> list[str]:
    """The user's locked terms as one line each, blanks dropped; InputError past the limits."""
    if terms is None:
        return []
    if isinstance(terms, str):
        terms = [terms]
    out: list[str] = []
    for term in terms:
        if not isinstance(term, str):
            raise InputError(f"Locked terms must be text, for example: ['red hair', '<lora:film:0.7>']; got {term!r}.")
        term = one_line(strip_markup(SPECIAL.sub(" ", term)))  # put back verbatim, after the cleaning: no markup
        if len(term) > MAX_TERM_CHARS:
            raise InputError(f"A locked term is {len(term):,} characters; lock words or phrases of under "
                             f"{MAX_TERM_CHARS} characters (the idea itself is kept in spirit anyway).")
        if term and term not in out:
            out.append(term)
    return out


def locked_terms(idea: str, extra: Sequence[str] = ()) -> list[LockedTerm]:
    """Every term a candidate must carry: those found in the idea, then the user's own (a term inside
    another is covered by it). InputError past MAX_LOCKED."""
    terms = find_terms(idea)
    for text in clean_terms(extra):
        if any(_verbatim(t.text, text) for t in terms):
            continue
        terms = [t for t in terms if not _verbatim(text, t.text)]
        own = find_terms(text)
        kind = own[0].kind if len(own) == 1 and own[0].text == text else "user"
        terms.append(LockedTerm(text, "" if kind == "lora" else plain(text), kind))
    if len(terms) > MAX_LOCKED:
        raise InputError(f"{len(terms)} locked terms (LoRA tags, weighted groups, quoted phrases and the ones "
                         f"you locked); lock at most {MAX_LOCKED}.")
    return terms


def tidy(text: str) -> str:
    """Spaces and commas left behind where a term was taken out or put in."""
    text = re.sub(r"\s+([,;])", r"\1", " ".join(text.split()))
    return re.sub(r"([,;])(?:\s*[,;])+", r"\1", text).strip(" ,;")


def model_view(idea: str, terms: Sequence[LockedTerm]) -> str:
    """The idea as the LLM reads it: each locked term as its words, LoRA tags left out, and the words of
    the user's terms that the idea lacks added at its end."""
    view = idea
    for term in sorted(terms, key=lambda t: len(t.text), reverse=True):
        view = view.replace(term.text, f" {term.words} " if term.words else " ")
    view = tidy(view)
    extra = [t.words for t in terms if t.words and _phrase(t.words).search(view) is None]
    return tidy(", ".join([view, *extra]))


def _phrase(words: str) -> re.Pattern[str]:
    """The words as a phrase: any spacing, any case, not inside a longer word."""
    body = r"\s+".join(re.escape(w) for w in words.split())
    return re.compile((r"(?<!\w)" if words[:1].isalnum() else "") + body + (r"(?!\w)" if words[-1:].isalnum() else ""),
                      re.I)


def _verbatim(text: str, term: str) -> list[tuple[int, int]]:
    """Where `term` stands in `text` exactly (a word not inside a longer word)."""
    pattern = re.escape(term)
    if term[:1].isalnum():
        pattern = r"(?<!\w)" + pattern
    if term[-1:].isalnum():
        pattern += r"(?!\w)"
    return [m.span() for m in re.finditer(pattern, text)]


def _paraphrase(text: str, term: LockedTerm, held: list[tuple[int, int]]) -> tuple[int, int] | None:
    """Where the candidate holds the term's words (in any case, in a weight or brackets of its own), outside
    the spans other terms hold; None when it dropped them."""
    words = _phrase(term.words).pattern
    around = re.compile(r"[(\[]+\s*(?:" + words + r")(?:\s*:\s*-?\d+(?:\.\d+)?)?\s*[)\]]+|" + words, re.I)
    for m in around.finditer(text):
        if not any(m.start() < e and s < m.end() for s, e in held):
            return m.span()
    return None


def restore(text: str, terms: Sequence[LockedTerm]) -> tuple[str, list[str]]:
    """(the candidate with every locked term verbatim, the terms the model dropped or changed). A term whose
    words the model kept as shown gets its syntax back in place, unreported; one it changed (case, its own
    weight) is put back in place; one it dropped is appended. LoRA tags go last, as A1111 users write them."""
    restored: list[str] = []
    for term in (t for t in terms if t.kind != "lora"):
        if _verbatim(text, term.text):
            continue
        held = [span for other in terms if other is not term for span in _verbatim(text, other.text)]
        span = _paraphrase(text, term, held) if term.words else None
        if span is None:
            text = tidy(f"{text}, {term.text}")
            restored.append(term.text)
            continue
        if text[span[0]:span[1]] != term.words:
            restored.append(term.text)
        text = text[: span[0]] + term.text + text[span[1]:]
    loras = [t.text for t in terms if t.kind == "lora" and not _verbatim(text, t.text)]
    return (tidy(", ".join([text, *loras])) if loras else text), restored
