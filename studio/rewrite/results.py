"""A rewrite's typed results: each Candidate (text, CLIP tokens, what it adds, what was put back), the
RewriteResult with what the model was shown, and the RewriteEvents a streamed rewrite yields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from studio.search.results import Hit

TEXT_KIND = "text"  # Hit.kind of an example the user brought as text (not a stored record)
# The steps of a streamed rewrite, in order (see RewriteEvent); the UI and the CLI branch on them.
EventKind = Literal["retrieved", "start", "token", "candidate", "done"]


class Problem(StrEnum):
    """What can be wrong with a candidate. The member decides (retries, the warning); its value is the text the
    user reads, unchanged from when these were plain strings."""

    EMPTY = "empty"
    SAME_AS_IDEA = "same as the idea"
    COPIES = "copies retrieved prompt"  # shown with the copied prompt's id after it
    NOT_A_PROMPT = "not a prompt (instruction or chatter)"
    ADDS_LITTLE = "adds almost nothing to the idea"
    DROPS_SUBJECT = "drops the idea's subject"
    NOT_ENGLISH = "not in English"
    NO_PROMPT = "the model gave no usable prompt, so the idea is kept as it is"


@dataclass(frozen=True)
class Finding:
    """One problem of one candidate: its code, and what it names (the copied prompt's id)."""

    code: Problem
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.code.value} {self.detail}" if self.detail else self.code.value


@dataclass
class Candidate:
    """One rewritten prompt: the cleaned text, its CLIP token count, and what may be wrong with it."""

    text: str
    tokens: int | None  # CLIP tokens, start and end included; None when no CLIP tokenizer is available
    warning: str | None = None
    raw: str = ""  # what the model streamed, before cleaning
    seed: int = 0
    temperature: float = 0.0
    attempts: int = 1
    findings: list[Finding] = field(default_factory=list)  # left after the retries (shown in `warning`)
    llm_tokens: int = 0  # tokens the LLM generated for this attempt (a retry's prefill not counted)
    prefill: str = ""  # a retry's start, written by us: the previous attempt (or the idea) and a comma
    restored: list[str] = field(default_factory=list)  # locked terms the model dropped or changed, put back
    added: list[str] = field(default_factory=list)  # what the candidate adds to the idea (phrases, then words)

    @property
    def problems(self) -> list[str]:
        """The findings as the user reads them."""
        return [f.text for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """As the API and `--json` show it: the findings as their texts, under `problems`, where they were."""
        return {("problems" if k == "findings" else k): (self.problems if k == "findings" else v)
                for k, v in asdict(self).items()}


@dataclass
class Timings:
    retrieval_s: float = 0.0
    load_s: float = 0.0  # loading the GGUF, when this call had to
    first_token_s: float = 0.0  # start of generation -> first token of the first candidate (prompt eval included)
    tokens_per_s: float = 0.0  # decode speed: tokens after the first / time after the first
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens llama-cpp already held (the fixed instruction prefix, or more)
    generated_tokens: int = 0  # every attempt, retries included
    total_s: float = 0.0


@dataclass
class RewriteResult:
    idea: str
    candidates: list[Candidate]
    retrieved: list[Hit]  # the examples shown to the model: retrieved (closest first) or the user's picks
    examples: list[str]  # those prompts as the model saw them (sanitised), in the same order
    suggested: dict[str, Any]  # median cfg/steps (and the usual sampler/size) of the retrieved neighbours
    model: str
    starter: bool
    layout: str  # "chat" (the GGUF's chat template) | "fewshot" ("Idea: … / Prompt: …" completion)
    timings: Timings
    dropped: list[dict[str, str]] = field(default_factory=list)  # retrieved but not shown: id, prompt, reason
    notice: str | None = None  # e.g. the starter-model notice: say it where the result is shown
    retrieval: str | None = None  # why no examples were retrieved (no CLIP, another CLIP's store), if so
    chosen: bool = False  # the examples are the user's picks (ids and texts), not a retrieval
    note: str | None = None  # the user's note to the model, as used
    locked: list[str] = field(default_factory=list)  # terms every candidate carries verbatim
    avoided: list[str] = field(default_factory=list)  # words the note excludes (a clause naming one is left out)

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""

    @property
    def retrieved_ids(self) -> list[str]:
        """The stored prompts shown to the model (an example brought as text has no id)."""
        return [h.id for h in self.retrieved if h.kind != TEXT_KIND]

    @property
    def retrieved_texts(self) -> list[str]:
        return [h.prompt for h in self.retrieved]

    @property
    def chosen_texts(self) -> list[str]:
        """The examples the user brought as text, as the model saw them."""
        return [shown for h, shown in zip(self.retrieved, self.examples) if h.kind == TEXT_KIND]

    def to_dict(self) -> dict[str, Any]:
        return {"idea": self.idea, "candidates": [c.to_dict() for c in self.candidates],
                "retrieved": [h.to_dict() for h in self.retrieved], "retrieved_ids": self.retrieved_ids,
                "examples": self.examples, "dropped": self.dropped, "suggested": self.suggested,
                "model": self.model, "starter": self.starter, "layout": self.layout, "notice": self.notice,
                "retrieval": self.retrieval, "timings": asdict(self.timings), "chosen": self.chosen,
                "chosen_texts": self.chosen_texts, "note": self.note, "locked": self.locked,
                "avoided": self.avoided}


@dataclass
class RewriteEvent:
    """One step of a streamed rewrite. kind: "retrieved" (hits, examples, suggested, chosen) -> per candidate
    "start" (index, attempt, seed; a new attempt replaces the text so far) -> "token" (index, text,
    partial) ... -> "candidate" (index, candidate) -> finally "done" (result)."""

    kind: EventKind
    index: int = 0
    text: str = ""
    partial: str = ""
    attempt: int = 0
    seed: int = 0
    reason: str | None = None  # on a retry's "start": what was wrong with the previous attempt
    candidate: Candidate | None = None
    hits: list[Hit] | None = None
    examples: list[str] | None = None
    suggested: dict[str, Any] | None = None
    result: RewriteResult | None = None
    chosen: bool = False  # on "retrieved": the hits are the user's picks
