"""Steering a rewrite: the user's note to the model and their locked terms, turned into what the model reads
(its idea line, the note in the user's turn) and what every candidate must honour; and what a candidate adds.

A chat model reads the note as written, in the user's turn after the examples (never in their data block).
A few-shot model (the starter) continues "Idea: … / Prompt: …" pairs and follows no instruction, so the
note is applied as words: its wishes ("warmer light") join the idea line it continues, and its exclusions
("no people") are enforced on every layout by leaving out a candidate's clauses that name them; the
result's notice says so."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from studio.errors import InputError
from studio.rewrite.locked import LockedTerm, locked_terms, model_view, plain
from studio.rewrite.untrusted import LORA_TAG, SPECIAL, one_line, strip_markup

MAX_NOTE_CHARS = 300  # a wish or two ("warmer light, no people"); past this it is a second idea
STOP_WORDS = frozenset("a an the of on in at to for with and or by from into onto over under is are was be its it "
                       "this that any some more much very".split())
# A clause of the note that excludes something: "no people", "without text", "avoid red", "don't add cars".
NEGATION = re.compile(r"^(?:no|not|without|avoid|exclude|remove|never|none|nothing|don'?t|do not)\b"
                      r"(?:\s+(?:add|include|show|use|put|have|want))?", re.I)
# Words that open a wish but say nothing of the picture: "make it warmer" -> "warmer".
LEAD_IN = re.compile(r"^(?:please|pls|kindly|also|but|and|i want|i'd like|i would like|make it|make them|make|"
                     r"give it|give|add|use|put|include|keep|let it be|it should be|should be|with|a bit|slightly)\b"
                     r"\s*", re.I)
LABEL = re.compile(r"\b(?:idea|prompt|note)s?\s*[:：]\s*", re.I)  # would forge the few-shot layout's lines


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[\w'-]+", plain(text).lower()) if w not in STOP_WORDS and not w.isdigit()]


def _forms(word: str) -> set[str]:
    return {word, word + "s", word[:-1] if word.endswith("s") and len(word) > 3 else word}


def clean_note(note: str | None) -> str | None:
    """The note as one line (None when blank); InputError when it is not text or too long."""
    if note is None:
        return None
    if not isinstance(note, str):
        raise InputError("The note must be text, for example: warmer light, no people.")
    text = one_line(SPECIAL.sub(" ", note))
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"That note is {len(text):,} characters; a note is a wish or two, such as \"warmer "
                         f"light, no people\". Shorten it to under {MAX_NOTE_CHARS} characters.")
    return text or None


def split_note(note: str) -> tuple[list[str], list[str]]:
    """(wishes as prompt words, the words it excludes): "warmer light, no people" -> (["warmer light"], ["people"])."""
    wants: list[str] = []
    avoid: list[str] = []
    for clause in re.split(r"[,;.!?]+", LABEL.sub(" ", note)):
        clause = clause.strip()
        if (neg := NEGATION.match(clause)) is not None:
            avoid += [w for w in content_words(clause[neg.end():]) if w not in avoid and not NEGATION.fullmatch(w)]
            continue
        while (shorter := LEAD_IN.sub("", clause, count=1)) != clause:
            clause = shorter
        if content_words(clause):
            wants.append(clause)
    return wants, avoid


@dataclass(frozen=True)
class Steering:
    """What the user asked beyond the idea, and how each layout honours it."""

    idea: str  # the idea as typed (cleaned), its syntax intact
    view: str  # the idea as the model reads it (locked terms as words, LoRA tags out)
    note: str | None = None
    wants: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()  # excluded words; a candidate's clause naming one is left out
    ignored: tuple[str, ...] = ()  # excluded words the idea itself names: the idea wins
    terms: tuple[LockedTerm, ...] = field(default_factory=tuple)

    @property
    def locked(self) -> list[str]:
        return [t.text for t in self.terms]

    @property
    def banned(self) -> frozenset[str]:
        return frozenset(f for w in self.avoid for f in _forms(w))

    def model_idea(self, layout: str) -> str:
        """The idea line the model continues: a few-shot model gets the note's wishes in it."""
        return ", ".join([self.view, *self.wants]) if layout == "fewshot" and self.wants else self.view

    def model_note(self, layout: str) -> str | None:
        """The note for the user's turn of a chat layout (a few-shot layout has no turn to put it in)."""
        return self.note if layout != "fewshot" else None

    def notice(self, layout: str) -> str | None:
        """How the note was honoured, said plainly where it could not be followed as written."""
        if not self.note:
            return None
        said: list[str] = []
        if layout == "fewshot":
            said.append("This model continues examples and does not follow instructions, so the note was applied "
                        "as words: " + (f"“{', '.join(self.wants)}” joined the idea it continues" if self.wants
                                        else "it held nothing to add to the idea"))
        if self.avoid:
            said.append(f"candidates leave out any clause naming {', '.join(self.avoid)} (put "
                        f"{'it' if len(self.avoid) == 1 else 'them'} in the negative prompt too: SDXL reads "
                        "exclusions there, not in the prompt)")
        if self.ignored:
            said.append(f"the idea itself names {', '.join(self.ignored)}, so that stays")
        if not said:
            return None
        tail = " A chat GGUF (STUDIO_LLM_MODEL) follows the note as written." if layout == "fewshot" else ""
        return "Note: " + "; ".join(said) + "." + tail


def steer(idea: str, note: str | None = None, locked: Sequence[str] = ()) -> Steering:
    """The plan for one rewrite of a cleaned idea; InputError for a bad note or locked term."""
    note = clean_note(note)
    terms = locked_terms(one_line(strip_markup(idea)), locked)  # a term is put back verbatim: never markup
    view = model_view(one_line(strip_markup(idea)), terms)
    if not view:
        raise InputError("The idea holds only LoRA tags; add words that describe the picture, for example: "
                         "a cat sleeping on a sofa <lora:NAME:0.8>.")
    wants, avoid = split_note(note) if note else ([], [])
    have = {f for w in content_words(idea) for f in _forms(w)}
    return Steering(idea, view, note, tuple(wants), tuple(w for w in avoid if w not in have),
                    tuple(w for w in avoid if w in have), tuple(terms))


def additions(text: str, idea: str, locked: Sequence[str] = ()) -> list[str]:
    """What a candidate adds to the idea, in its order: each clause none of whose words the idea (or a locked
    term) has, as written ("oil painting"), and the new words of a clause that repeats some ("velvet")."""
    have = {f for w in content_words(idea) + [w for t in locked for w in content_words(t)] for f in _forms(w)}
    out: list[str] = []
    for clause in re.split(r"[,;|]", LORA_TAG.sub(" ", text)):
        words = content_words(clause)
        new = [w for w in words if w not in have]
        for added in [plain(clause)] if new and len(new) == len(words) else new:
            if added not in out:
                out.append(added)
    return out
