"""Rewriter: a local LLM (an LLMBackend; llama-cpp for real) turns an idea into prompts in the style of
retrieved ones: the retry and prefill rules, cleaning, checks and timings."""

from __future__ import annotations

import gc
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from collections.abc import Generator as Gen
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from studio.errors import InputError, StudioError
from studio.rewrite.backend import LLMBackend
from studio.rewrite.llamacpp import STARTER_NOTICE, LlamaCppBackend, cpu_notice, load_llama
from studio.rewrite.prompting import (
    FALLBACK_EXAMPLES, UNTRUSTED, BuiltPrompt, Example, chat_messages, check_counts, clean_idea,
    clean_output, fewshot_prompt, idea_note, llama2_chat, pick_examples, problems, suggest_settings,
)
from studio.rewrite.untrusted import one_line, strip_markup, suspicion, tainted_words

if TYPE_CHECKING:
    from studio.config import Settings
    from studio.search.results import Hit

NO_PROMPT = "the model gave no usable prompt, so the idea is kept as it is"
CLIP_LIMIT = 77  # SDXL's two text encoders read 77 tokens (start and end included) and drop the rest
LAYOUTS = ("auto", "chat", "fewshot")


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
    problems: list[str] = field(default_factory=list)  # left after the retries (shown in `warning`)
    llm_tokens: int = 0  # tokens the LLM generated for this attempt (a retry's prefill not counted)
    prefill: str = ""  # a retry's start, written by us: the previous attempt (or the idea) and a comma


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
    retrieved: list[Hit]  # the stored prompts shown to the model, closest first
    examples: list[str]  # those prompts as the model saw them (sanitised)
    suggested: dict[str, Any]  # median cfg/steps (and the usual sampler/size) of the retrieved neighbours
    model: str
    starter: bool
    layout: str  # "chat" (the GGUF's chat template) | "fewshot" ("Idea: … / Prompt: …" completion)
    timings: Timings
    dropped: list[dict[str, str]] = field(default_factory=list)  # retrieved but not shown: id, prompt, reason
    notice: str | None = None  # e.g. the starter-model notice: say it where the result is shown
    retrieval: str | None = None  # why no examples were retrieved (no CLIP, another CLIP's store), if so

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""

    @property
    def retrieved_ids(self) -> list[str]:
        return [h.id for h in self.retrieved]

    @property
    def retrieved_texts(self) -> list[str]:
        return [h.prompt for h in self.retrieved]

    def to_dict(self) -> dict[str, Any]:
        return {"idea": self.idea, "candidates": [asdict(c) for c in self.candidates],
                "retrieved": [h.to_dict() for h in self.retrieved], "retrieved_ids": self.retrieved_ids,
                "examples": self.examples, "dropped": self.dropped, "suggested": self.suggested,
                "model": self.model, "starter": self.starter, "layout": self.layout, "notice": self.notice,
                "retrieval": self.retrieval, "timings": asdict(self.timings)}


@dataclass
class RewriteEvent:
    """One step of a streamed rewrite. kind: "retrieved" (hits, examples, suggested) -> per candidate
    "start" (index, attempt, seed; a new attempt replaces the text so far) -> "token" (index, text,
    partial) ... -> "candidate" (index, candidate) -> finally "done" (result)."""

    kind: str
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


def pick_layout(requested: str, metadata: dict[str, str], name: str, starter: bool) -> str:
    if requested not in LAYOUTS:
        raise InputError(f"layout={requested!r}: use one of {', '.join(LAYOUTS)}.")
    if requested != "auto":
        return requested
    if starter:
        return "fewshot"  # 135M parameters: continues few-shot pairs far better than it chats
    if metadata.get("tokenizer.chat_template"):
        return "chat"
    # Llama 2 chat GGUFs converted before templates were stored in metadata still want [INST] <<SYS>>.
    label = f"{metadata.get('general.name', '')} {name}".lower()
    return "chat" if "chat" in label or "instruct" in label else "fewshot"


class Rewriter:
    """Writes prompts with the LLMBackend passed in (LlamaCppBackend; tests pass a recording fake or the
    small starter model). One generation at a time: a llama context is not thread-safe."""

    def __init__(self, backend: LLMBackend, name: str, *, starter: bool = False, layout: str = "auto", max_tokens: int = 80,
                 temperature: float = 0.7, retries: int = 2, notice: str | None = None) -> None:
        self.backend: LLMBackend | None = backend
        self.name = name
        self.starter = starter
        self.layout = pick_layout(layout, dict(backend.metadata), name, starter)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.notice = notice if notice is not None else (STARTER_NOTICE if starter else None)
        self.path: Path | None = None  # set by load()
        self.gpu = False
        self._lock = threading.Lock()
        self._close_pending = False  # close() was called during a generation

    @classmethod
    def load(cls, settings: Settings, **options: Any) -> "Rewriter":
        """From STUDIO_LLM_MODEL (a path, models/<file>, or a hub repo/file.gguf fetched once when online);
        the starter model when none is configured. Raises ModelMissingError / StudioError that say what to do."""
        llm, loc, gpu = load_llama(settings, n_ctx=options.pop("n_ctx", 2048), n_threads=options.pop("n_threads", None),
                                   gpu=options.pop("gpu", None))
        notices = [STARTER_NOTICE if loc.starter else None, cpu_notice(settings, gpu)]
        notice = " ".join(n for n in notices if n) or None
        rewriter = cls(LlamaCppBackend(llm), Path(str(loc.path)).name, starter=loc.starter, notice=notice, **options)
        rewriter.path, rewriter.gpu = Path(str(loc.path)), gpu
        return rewriter

    def vram_bytes(self) -> int:
        """About what the model holds on the GPU (weights and KV cache); 0 on the CPU or unloaded."""
        if not self.gpu or self.backend is None or self.path is None or not self.path.is_file():
            return 0
        from studio.gpu import llm_resident

        return llm_resident(self.path.stat().st_size, self.backend.n_ctx)

    # -- prompt ----------------------------------------------------------------------------
    def build(self, idea: str, examples: Sequence[Example]) -> BuiltPrompt:
        if self.layout == "fewshot":
            return fewshot_prompt(idea, examples)
        messages = chat_messages(idea, examples)
        llm = self._live()
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            bos, eos = llm.bos_text, llm.eos_text
            text = llm.render_chat(template, messages)
            if bos and text.startswith(bos) and llm.adds_bos:
                text = text[len(bos):]  # completion adds BOS itself; two BOS degrade the output
            stop = tuple(dict.fromkeys(s for s in (eos, "</s>", "[INST]") if s))
        else:
            text, stop = llama2_chat(messages), ("</s>", "[INST]")
        header = messages[1]["content"].split("\n", 1)[0]
        at = text.find(header)
        prefix = text[: at + len(header)] if at >= 0 else ""
        return BuiltPrompt(text, prefix, stop, "chat")

    def _live(self) -> LLMBackend:
        if self.backend is None:
            raise StudioError("The LLM was unloaded; call Studio.rewrite again to reload it.")
        return self.backend

    def tokens(self, text: str) -> list[int]:
        """The token ids a completion will evaluate for this text (BOS as the model wants)."""
        return self._live().tokenize(text, bos=True, special=True)

    def count(self, text: str) -> int:
        return len(self._live().tokenize(text, bos=False, special=False)) if text else 0

    def cached_tokens(self, tokens: Sequence[int]) -> int:
        """How many leading tokens the model already holds (llama-cpp reuses the longest common prefix)."""
        return self._live().cached_tokens(tokens)

    def warm(self, idea: str = "", examples: Sequence[Example] = ()) -> int:
        """Evaluate the fixed instruction prefix now, so the next rewrite starts after it; returns its tokens."""
        prefix = self.build(idea or "x", examples).prefix
        tokens = self.tokens(prefix)
        with self._lock:
            if self.cached_tokens(tokens) < len(tokens):
                self._live().prefill(tokens)
        return len(tokens)

    def forget(self) -> None:
        """Drop llama-cpp's cached tokens (benchmarks measure a cold start with this)."""
        with self._lock:
            self._live().reset()

    # -- generation ------------------------------------------------------------------------
    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        """(text piece, finish reason) as the backend streams them."""
        return self._live().complete(text, seed=seed, temperature=temperature, max_tokens=max_tokens, stop=stop)

    def stream(self, idea: str, hits: Sequence[Hit], *, k: int = 5, n: int = 1,
               count_tokens: Callable[[str], int] | None = None, seed: int | None = None,
               max_tokens: int | None = None, retrieval_s: float = 0.0, load_s: float = 0.0,
               retrieval_note: str | None = None) -> Iterator[RewriteEvent]:
        """Rewrite `idea` n times in the style of the first k usable hits, as events (see RewriteEvent).
        A failed attempt (empty, the idea again, a copy, chatter) is retried warmer, starting from the
        previous attempt (or the idea) and a comma, so that the model has to add to it.
        count_tokens: CLIP's token counter (None: counts are reported as None).
        retrieval_note: why there are no hits (no CLIP, another CLIP's store); it joins the notice."""
        started = time.perf_counter()
        idea = clean_idea(idea)
        check_counts(k, n)
        used, examples, dropped = pick_examples(hits, k)
        suggested = suggest_settings(used)
        yield RewriteEvent("retrieved", hits=used, examples=[e.text for e in examples], suggested=suggested)
        shown = examples or list(FALLBACK_EXAMPLES)  # nothing retrieved: the layout still needs pairs
        built = self.build(idea, shown)
        known = [(h.id, h.prompt) for h in used] + [(e.id, e.text) for e in shown]
        # Words only the dropped, suspicious examples held: a candidate carrying one was steered by them.
        banned = tainted_words([d["prompt"] for d in dropped if d["reason"].startswith(UNTRUSTED)],
                               [idea, *(e.text for e in shown)])
        run = _Run(idea, built, known, random.randrange(2**31) if seed is None else int(seed),
                   max_tokens or self.max_tokens, Timings(retrieval_s=retrieval_s, load_s=load_s), banned,
                   suspicion(idea))
        with self._lock:
            llm = self._live()
            try:
                prompt_tokens = self.tokens(built.text)
                if len(prompt_tokens) + run.budget >= llm.n_ctx:
                    raise InputError(f"The idea and examples take {len(prompt_tokens)} tokens, more than the "
                                     f"model's context of {llm.n_ctx} allows; use a shorter idea or a smaller k.")
                run.timings.prompt_tokens = len(prompt_tokens)
                run.timings.cached_tokens = self.cached_tokens(prompt_tokens)
                for index in range(n):
                    best = yield from self._candidate(run, index)
                    finish_candidate(best, count_tokens)
                    run.candidates.append(best)
                    yield RewriteEvent("candidate", index, text=best.text, candidate=best)
            finally:
                if self._close_pending:  # close() gave up waiting for this generation: free it now
                    self._free()
        timings = run.timings
        timings.tokens_per_s = run.decoded / run.decode_s if run.decode_s > 0 else 0.0
        timings.total_s = retrieval_s + load_s + (time.perf_counter() - started)
        if k and not examples and not retrieval_note:
            retrieval_note = ("No stored prompt close to the idea passed the filters, so built-in examples "
                              "stood in; ingest DiffusionDB (`python -m studio ingest`) for grounded rewrites.")
        notice = " ".join(n for n in (idea_note(idea), retrieval_note, self.notice) if n) or None
        result = RewriteResult(idea, run.candidates, used, [e.text for e in examples], suggested, self.name,
                               self.starter, self.layout, timings, dropped, notice, retrieval_note)
        yield RewriteEvent("done", result=result)

    def _candidate(self, run: "_Run", index: int) -> Gen[RewriteEvent, None, Candidate]:
        """One candidate: attempts until one has no problems (or retries run out); the best is returned."""
        best: Candidate | None = None
        for attempt in range(self.retries + 1):
            # Candidates differ by seed and a slightly warmer temperature; retries warm up further.
            cand = Candidate("", None, seed=run.seed + index + 1000 * attempt, attempts=attempt + 1,
                             temperature=round(min(self.temperature + 0.1 * index + 0.15 * attempt, 1.3), 2),
                             prefill=retry_prefill(best, run.idea) if best is not None else "")
            yield RewriteEvent("start", index, attempt=attempt, seed=cand.seed,
                               reason="; ".join(best.problems) if best else None)
            text = run.built.text
            if cand.prefill:  # the model continues our start, so it must add to a prompt that keeps the subject
                text += ("" if text[-1:] in ("\n", " ") else " ") + cand.prefill
                cand.raw = cand.prefill
                yield RewriteEvent("token", index, text=cand.prefill, partial=cand.raw, attempt=attempt)
            generated, finish = "", None
            t0 = time.perf_counter()
            first = last = None
            for piece, reason in self.complete(text, seed=cand.seed, temperature=cand.temperature,
                                               max_tokens=run.budget, stop=run.built.stop):
                finish = reason or finish
                if not piece:
                    continue
                last = time.perf_counter()
                if first is None:
                    first = last
                    if index == 0 and attempt == 0:
                        run.timings.first_token_s = first - t0
                cand.raw += piece
                generated += piece
                yield RewriteEvent("token", index, text=piece, partial=cand.raw, attempt=attempt)
            cand.llm_tokens = self.count(generated)
            run.timings.generated_tokens += cand.llm_tokens
            if first is not None and last is not None and cand.llm_tokens > 1:
                run.decoded += cand.llm_tokens - 1
                run.decode_s += last - first
            cand.text = clean_output(cand.raw, cut_off=finish == "length", banned=run.banned, allowed=run.allowed)
            cand.problems = problems(cand.text, run.idea, run.known)
            if best is None or (not cand.text, len(cand.problems)) < (not best.text, len(best.problems)):
                best = cand
            if not cand.problems:
                break
        assert best is not None
        if not best.text:  # a candidate always comes back: the idea itself, said so
            best.text = one_line(strip_markup(run.idea))
            best.problems = [NO_PROMPT]
        return best

    def close(self, wait: float = 30.0) -> None:
        """Free the model's memory (RAM, VRAM). Waits up to `wait` s for a running generation; if one is
        still running then (a stream left open), the model is freed as soon as that stream ends."""
        got = self._lock.acquire(timeout=wait)
        if not got:
            self._close_pending = True  # freeing a llama context mid-generation would crash the process
            got = self._lock.acquire(blocking=False)  # the stream may have ended just before the flag was set
            if not got:
                return
        try:
            self._free()
        finally:
            self._lock.release()

    def _free(self) -> None:
        backend, self.backend = self.backend, None
        self._close_pending = False
        if backend is not None:
            backend.close()
        gc.collect()


@dataclass
class _Run:
    """The state one stream() shares between its candidates."""

    idea: str
    built: BuiltPrompt
    known: list[tuple[str, str]]  # (id, text) of the retrieved prompts: a candidate must not copy them
    seed: int
    budget: int  # max tokens per attempt
    timings: Timings
    banned: frozenset[str] = frozenset()  # words only suspicious examples held (see untrusted.tainted_words)
    allowed: str | None = None  # the idea's own suspicion(): its "you" may stay in a candidate
    candidates: list[Candidate] = field(default_factory=list)
    decoded: int = 0  # tokens after each attempt's first, and the seconds they took: decode speed
    decode_s: float = 0.0


def retry_prefill(best: Candidate, idea: str) -> str:
    """Where a retry starts: the best attempt so far when it was only too short (it kept the subject and
    is not a copy), else the idea; then a comma, so that the model goes on with style words."""
    only_short = all(p in ("adds almost nothing to the idea", "same as the idea") for p in best.problems)
    base = best.text if best.text and only_short else idea
    return base.rstrip(" ,.;:!?") + ","


def finish_candidate(cand: Candidate, count_tokens: Callable[[str], int] | None) -> None:
    """CLIP token count (None without a CLIP tokenizer) and the warning shown next to the candidate."""
    cand.tokens = (count_tokens(cand.text) if cand.text else 0) if count_tokens else None
    notes = []
    if not cand.text or cand.problems == [NO_PROMPT]:
        notes.append("The model gave no usable prompt, so your idea is kept as it is; try again, or a larger "
                     "model (see `python -m studio models`).")
    elif cand.problems:
        notes.append("Check this one: " + "; ".join(cand.problems) + f" (after {cand.attempts} attempt{'s' if cand.attempts != 1 else ''}).")
    if cand.tokens is not None and cand.tokens > CLIP_LIMIT:
        chunks = -(-(cand.tokens - 2) // (CLIP_LIMIT - 2))
        notes.append(f"{cand.tokens} CLIP tokens: SDXL reads them in {chunks} chunks of 75, and only the first "
                     "feeds its pooled (whole-image) embedding, so keep what matters most early.")
    cand.warning = " ".join(notes) or None
