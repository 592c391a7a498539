"""Rewriter: a local LLM (an LLMBackend; llama-cpp for real) turns an idea into prompts in the style of
retrieved (or chosen) ones: the retry and prefill rules, cleaning, checks, locked terms put back, timings."""

from __future__ import annotations

import gc
import random
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Generator as Gen
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from studio.errors import InputError, StudioError
from studio.rewrite.backend import LLMBackend
from studio.rewrite.llamacpp import STARTER_NOTICE, LlamaCppBackend, cpu_notice, load_llama
from studio.rewrite.prompting import (
    FALLBACK_EXAMPLES, BuiltPrompt, Example, chat_messages, clean_output, fewshot_prompt, findings, idea_note,
    llama2_chat, pick_examples, suggest_settings, untrusted_prompts,
)
from studio.rewrite.locked import restore
from studio.rewrite.request import RewriteRequest
from studio.rewrite.results import Candidate, Finding, Problem, RewriteEvent, RewriteResult, Timings
from studio.rewrite.steering import Steering, additions, steer
from studio.rewrite.untrusted import one_line, strip_markup, suspicion, tainted_words
from studio.search.language import is_english

__all__ = ["Candidate", "RewriteEvent", "RewriteResult", "Rewriter", "Timings", "pick_layout"]

if TYPE_CHECKING:
    from studio.config import Settings
    from studio.search.results import Hit

# A retry may go on from the best attempt so far only when that one kept the subject and was merely too short.
ONLY_SHORT = frozenset({Problem.ADDS_LITTLE, Problem.SAME_AS_IDEA})
CLIP_LIMIT = 77  # SDXL's two text encoders read 77 tokens (start and end included) and drop the rest
LAYOUTS = ("auto", "chat", "fewshot")


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
        self.gpu_layers = 0  # the model's blocks on the GPU (set by load())
        self.gpu_capable = False  # the installed llama-cpp can offload (the memory plan may add layers later)
        self.shape: Any = None  # studio.gpu.LlmShape of the file (set by load())
        self._lock = threading.Lock()
        self._close_pending = False  # close() was called during a generation

    @classmethod
    def load(cls, settings: Settings, **options: Any) -> "Rewriter":
        """From STUDIO_LLM_MODEL (a path, models/<file>, or a hub repo/file.gguf fetched once when online);
        the starter model when none is configured. Raises ModelMissingError / StudioError that say what to do."""
        loaded = load_llama(settings, n_ctx=options.pop("n_ctx", 2048), n_threads=options.pop("n_threads", None),
                            gpu_layers=options.pop("gpu_layers", None), factory=options.pop("factory", None))
        loc = loaded.location
        notices = [STARTER_NOTICE if loc.starter else None, cpu_notice(settings, loaded)]
        notice = " ".join(n for n in notices if n) or None
        rewriter = cls(LlamaCppBackend(loaded.llm), Path(str(loc.path)).name, starter=loc.starter, notice=notice,
                       **options)
        rewriter.path = Path(str(loc.path))
        rewriter.gpu_layers, rewriter.gpu_capable, rewriter.shape = loaded.gpu_layers, loaded.gpu_capable, loaded.shape
        return rewriter

    @property
    def gpu(self) -> bool:
        return self.gpu_layers > 0

    def vram_bytes(self) -> int:
        """About what the model holds on the GPU (its layers' weights and KV cache); 0 on the CPU or unloaded."""
        if not self.gpu_layers or self.backend is None or self.shape is None:
            return 0
        return int(self.shape.resident(self.gpu_layers))

    # -- prompt ----------------------------------------------------------------------------
    def build(self, idea: str, examples: Sequence[Example], note: str | None = None,
              english: bool = True) -> BuiltPrompt:
        """The text for the model; `note` (the user's) goes in the chat layout's user turn, after the examples;
        english: False asks for the prompt in English (studio.search.language.is_english(idea))."""
        if self.layout == "fewshot":
            return fewshot_prompt(idea, examples, english)
        messages = chat_messages(idea, examples, note, english)
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

    def stream(self, idea: str, hits: Sequence[Hit], *, count_tokens: Callable[[str], int] | None = None,
               chosen: bool = False, **fields: Any) -> Iterator[RewriteEvent]:
        """run() for a RewriteRequest(idea, **fields), validated here (k, n, seed, max_tokens, note, locked).
        chosen: `hits` are the user's picks: every safe one is shown, in their order (k does not apply)."""
        return self.run(RewriteRequest(idea, **fields).validated(), hits, count_tokens=count_tokens, chosen=chosen)

    def run(self, request: RewriteRequest, hits: Sequence[Hit], *, count_tokens: Callable[[str], int] | None = None,
            retrieval_s: float = 0.0, load_s: float = 0.0, retrieval_note: str | None = None,
            chosen: bool | None = None) -> Iterator[RewriteEvent]:
        """Rewrite a validated request's idea n times in the style of the first k usable hits, as events (see
        RewriteEvent). A failed attempt (empty, the idea again, a copy, chatter) is retried warmer, starting from
        the previous attempt (or the idea) and a comma, so that the model has to add to it.
        count_tokens: CLIP's token counter (None: counts are reported as None).
        retrieval_note: why there are no hits (no CLIP, another CLIP's store); it joins the notice.
        chosen: `hits` are the user's picks (default: whether the request chose examples).
        The request's note is the user's wish for the model; its locked terms every candidate carries verbatim
        besides those found in the idea (see studio.rewrite.steering and studio.rewrite.locked)."""
        started = time.perf_counter()
        idea, k, n, seed, max_tokens = request.idea, request.k, request.n, request.seed, request.max_tokens
        chosen = request.chosen if chosen is None else chosen
        plan = steer(idea, request.note, request.locked)
        used, examples, dropped = pick_examples(hits, len(hits) if chosen else k, chosen=chosen)
        suggested = suggest_settings(used)
        yield RewriteEvent("retrieved", hits=used, examples=[e.text for e in examples], suggested=suggested,
                           chosen=chosen)
        shown = examples or list(FALLBACK_EXAMPLES)  # nothing retrieved: the layout still needs pairs
        asked = plan.model_idea(self.layout)  # the idea as the model reads it (locked syntax as words)
        built = self.build(asked, shown, plan.model_note(self.layout), is_english(idea))
        known = [(h.id, h.prompt) for h in used] + [(e.id, e.text) for e in shown]
        # Words only the dropped, suspicious examples held: a candidate carrying one was steered by them;
        # and the words the user's note excludes.
        banned = tainted_words(untrusted_prompts(dropped),
                               [idea, asked, plan.note or "", *(e.text for e in shown)]) | plan.banned
        run = _Run(asked, built, known, random.randrange(2**31) if seed is None else int(seed),
                   max_tokens or self.max_tokens, Timings(retrieval_s=retrieval_s, load_s=load_s), banned,
                   suspicion(asked), plan)
        with self._lock:
            llm = self._live()
            try:
                prompt_tokens = self.tokens(built.text)
                if len(prompt_tokens) + run.budget >= llm.n_ctx:
                    raise InputError(f"The idea and examples take {len(prompt_tokens)} tokens, more than the "
                                     f"model's context of {llm.n_ctx} allows; use a shorter idea or fewer "
                                     "examples (a smaller k, or fewer chosen).")
                run.timings.prompt_tokens = len(prompt_tokens)
                run.timings.cached_tokens = self.cached_tokens(prompt_tokens)
                for index in range(n):
                    best = yield from self._candidate(run, index)
                    settle(best, plan)
                    finish_candidate(best, count_tokens)
                    run.candidates.append(best)
                    yield RewriteEvent("candidate", index, text=best.text, candidate=best)
            finally:
                if self._close_pending:  # close() gave up waiting for this generation: free it now
                    self._free()
        timings = run.timings
        timings.tokens_per_s = run.decoded / run.decode_s if run.decode_s > 0 else 0.0
        timings.total_s = retrieval_s + load_s + (time.perf_counter() - started)
        if chosen and not examples:
            retrieval_note = ("None of the chosen examples could be shown (see why under dropped), so built-in "
                              "examples stood in.")
        elif k and not examples and not retrieval_note:
            retrieval_note = ("No stored prompt close to the idea passed the filters, so built-in examples "
                              "stood in; ingest DiffusionDB (`python -m studio ingest`) for grounded rewrites.")
        notes = (idea_note(idea, self.starter), retrieval_note, plan.notice(self.layout), self.notice)
        result = RewriteResult(idea, run.candidates, used, [e.text for e in examples], suggested, self.name,
                               self.starter, self.layout, timings, dropped, " ".join(x for x in notes if x) or None,
                               retrieval_note, chosen, plan.note, plan.locked, list(plan.avoid))
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
            cand.findings = findings(cand.text, run.idea, run.known, run.plan.view if run.plan else None)
            if best is None or (not cand.text, len(cand.findings)) < (not best.text, len(best.findings)):
                best = cand
            if not cand.findings:
                break
        assert best is not None
        if not best.text:  # a candidate always comes back: the idea itself, said so
            best.text = one_line(strip_markup(run.idea))
            best.findings = [Finding(Problem.NO_PROMPT)]
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
    plan: Steering | None = None  # the note and locked terms
    candidates: list[Candidate] = field(default_factory=list)
    decoded: int = 0  # tokens after each attempt's first, and the seconds they took: decode speed
    decode_s: float = 0.0


def settle(cand: Candidate, plan: Steering) -> None:
    """Every locked term put back (those the model dropped or changed listed in `restored`), then what the
    candidate adds to the idea: before its CLIP tokens are counted, so the count includes the terms."""
    cand.text, cand.restored = restore(cand.text, plan.terms)
    cand.added = additions(cand.text, plan.idea, plan.locked)


def retry_prefill(best: Candidate, idea: str) -> str:
    """Where a retry starts: the best attempt so far when it was only too short (it kept the subject and
    is not a copy), else the idea; then a comma, so that the model goes on with style words."""
    only_short = all(f.code in ONLY_SHORT for f in best.findings)
    base = best.text if best.text and only_short else idea
    if not is_english(base):  # the model would go on in the idea's language: a plain retry instead
        return ""
    return base.rstrip(" ,.;:!?") + ","


def finish_candidate(cand: Candidate, count_tokens: Callable[[str], int] | None) -> None:
    """CLIP token count (None without a CLIP tokenizer) and the warning shown next to the candidate."""
    cand.tokens = (count_tokens(cand.text) if cand.text else 0) if count_tokens else None
    notes = []
    if not cand.text or [f.code for f in cand.findings] == [Problem.NO_PROMPT]:
        notes.append("The model gave no usable prompt, so your idea is kept as it is; try again, or a larger "
                     "model (see `python -m studio models`).")
    elif cand.findings:
        notes.append("Check this one: " + "; ".join(cand.problems) + f" (after {cand.attempts} attempt{'s' if cand.attempts != 1 else ''}).")
    if cand.tokens is not None and cand.tokens > CLIP_LIMIT:
        chunks = -(-(cand.tokens - 2) // (CLIP_LIMIT - 2))
        notes.append(f"{cand.tokens} CLIP tokens: SDXL reads them in {chunks} chunks of 75, and only the first "
                     "feeds its pooled (whole-image) embedding, so keep what matters most early.")
    cand.warning = " ".join(notes) or None
