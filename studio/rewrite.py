"""Rewriter: a local GGUF LLM (llama-cpp) turns an idea into prompts in the style of retrieved ones."""

from __future__ import annotations

import gc
import random
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from studio.errors import InputError, StudioError
from studio.llm import STARTER_NOTICE, cpu_notice, load_llama
from studio.prompting import (
    MAX_IDEA_CHARS, SPECIAL, BuiltPrompt, Example, chat_messages, clean_output, fewshot_prompt, has_style, llama2_chat,
    near_duplicate, one_line, problems, sanitise_example,
)

if TYPE_CHECKING:
    from studio.config import Settings
    from studio.results import Hit

CLIP_LIMIT = 77  # SDXL's two text encoders read 77 tokens (start and end included) and drop the rest
MAX_CANDIDATES = 8
MAX_K = 20
LAYOUTS = ("auto", "chat", "fewshot")


@dataclass
class Candidate:
    """One rewritten prompt: the cleaned text, its CLIP token count, and what may be wrong with it."""

    text: str
    tokens: int  # CLIP tokens, start and end included
    warning: str | None = None
    raw: str = ""  # what the model streamed, before cleaning
    seed: int = 0
    temperature: float = 0.0
    attempts: int = 1
    problems: list[str] = field(default_factory=list)  # left after the retries (shown in `warning`)
    llm_tokens: int = 0


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
                "timings": asdict(self.timings)}


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


def clean_idea(idea: str) -> str:
    """The idea as one line, or InputError that says what to type."""
    if not isinstance(idea, str):
        raise InputError("The idea must be text, for example: a cat sleeping on a sofa.")
    text = one_line(SPECIAL.sub(" ", idea))
    if not text:
        raise InputError("Type an idea to rewrite, for example: a cat sleeping on a sofa.")
    if len(text) > MAX_IDEA_CHARS:
        raise InputError(f"That idea is {len(text):,} characters; an idea is a sentence or two. Shorten it to "
                         f"under {MAX_IDEA_CHARS:,} characters (a prompt SDXL reads fully is about 300).")
    return text


def check_counts(k: int, n: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES:
        raise InputError(f"n={n!r}: ask for 1 to {MAX_CANDIDATES} candidates.")
    if not isinstance(k, int) or not 0 <= k <= MAX_K:
        raise InputError(f"k={k!r}: use 0 to {MAX_K} retrieved examples.")


def pick_examples(hits: Sequence[Hit], k: int) -> tuple[list[Hit], list[Example], list[dict[str, str]]]:
    """The first k hits that are safe and not near-duplicates of a closer one, those with style
    modifiers first (closest first within each group); the rest listed with a reason."""
    safe: list[tuple[Hit, Example]] = []
    dropped: list[dict[str, str]] = []
    for hit in hits:
        text, why = sanitise_example(hit.prompt)
        if text is not None and (twin := next((e for _, e in safe if near_duplicate(e.text, text)), None)):
            why = f"near-duplicate of {twin.id}"
        if text is None or why:
            dropped.append({"id": hit.id, "prompt": hit.prompt, "reason": why or "unusable"})
        else:
            safe.append((hit, Example(hit.id, text)))
    styled = [pair for pair in safe if has_style(pair[1].text)]
    chosen = {id(p) for p in (styled + [p for p in safe if not has_style(p[1].text)])[:k]}
    picked = [pair for pair in safe if id(pair) in chosen]
    picked.sort(key=lambda pair: not has_style(pair[1].text))  # stable: closest first within each group
    return [h for h, _ in picked], [e for _, e in picked], dropped


def suggest_settings(hits: Sequence[Hit]) -> dict[str, Any]:
    """Median cfg and steps of the neighbours' images (and their most common sampler and size)."""
    rows = [s for h in hits for s in (h.settings or [h.metadata])]
    out: dict[str, Any] = {}
    for key, kind in (("cfg", float), ("steps", int)):
        values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            median = statistics.median(values)
            out[key] = round(median, 1) if kind is float else int(round(median))
    for key in ("sampler", "size"):
        values = [str(r[key]) for r in rows if r.get(key)]
        if values:
            out[key] = max(set(values), key=values.count)
    if out:
        out["from"] = sum(1 for r in rows if "cfg" in r or "steps" in r)
    return out


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
    """Writes prompts with a llama_cpp.Llama passed in (tests pass the small starter model).
    One generation at a time: a llama context is not thread-safe."""

    def __init__(self, llm: Any, name: str, *, starter: bool = False, layout: str = "auto", max_tokens: int = 80,
                 temperature: float = 0.7, retries: int = 2, notice: str | None = None) -> None:
        self.llm = llm
        self.name = name
        self.starter = starter
        self.layout = pick_layout(layout, dict(getattr(llm, "metadata", {}) or {}), name, starter)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.notice = notice if notice is not None else (STARTER_NOTICE if starter else None)
        self.path: Path | None = None  # set by load()
        self.gpu = False
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, **options: Any) -> "Rewriter":
        """From STUDIO_LLM_MODEL (a path, models/<file>, or a hub repo/file.gguf fetched once when online);
        the starter model when none is configured. Raises ModelMissingError / StudioError that say what to do."""
        llm, loc, gpu = load_llama(settings, n_ctx=options.pop("n_ctx", 2048), n_threads=options.pop("n_threads", None),
                                   gpu=options.pop("gpu", None))
        notices = [STARTER_NOTICE if loc.starter else None, cpu_notice(settings, gpu)]
        notice = " ".join(n for n in notices if n) or None
        rewriter = cls(llm, Path(str(loc.path)).name, starter=loc.starter, notice=notice, **options)
        rewriter.path, rewriter.gpu = Path(str(loc.path)), gpu
        return rewriter

    def vram_bytes(self) -> int:
        """About what the model holds on the GPU (weights and KV cache); 0 on the CPU or unloaded."""
        if not self.gpu or self.llm is None or self.path is None or not self.path.is_file():
            return 0
        return int(self.path.stat().st_size * 1.1) + self.llm.n_ctx() * 512 * 1024

    # -- prompt ----------------------------------------------------------------------------
    def build(self, idea: str, examples: Sequence[Example]) -> BuiltPrompt:
        if self.layout == "fewshot":
            return fewshot_prompt(idea, examples)
        messages = chat_messages(idea, examples)
        template = (getattr(self.llm, "metadata", {}) or {}).get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            bos, eos = self._token_text(self.llm.token_bos()), self._token_text(self.llm.token_eos())
            text = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt
            if bos and text.startswith(bos) and self._adds_bos():
                text = text[len(bos):]  # create_completion adds BOS itself; two BOS degrade the output
            stop = tuple(s for s in (eos, "</s>", "[INST]") if s)
        else:
            text, stop = llama2_chat(messages), ("</s>", "[INST]")
        header = messages[1]["content"].split("\n", 1)[0]
        at = text.find(header)
        prefix = text[: at + len(header)] if at >= 0 else ""
        return BuiltPrompt(text, prefix, stop, "chat")

    def _token_text(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _adds_bos(self) -> bool:
        bos = self.llm.token_bos()
        return bos >= 0 and self.llm.tokenize(b"a", add_bos=True)[:1] == [bos]

    def tokens(self, text: str) -> list[int]:
        """The token ids create_completion will evaluate for this text (BOS as the model wants)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def cached_tokens(self, tokens: Sequence[int]) -> int:
        """How many leading tokens llama-cpp already holds (it reuses the longest common prefix)."""
        held = self.llm.input_ids[: self.llm.n_tokens]
        same = 0
        for a, b in zip(held, tokens):
            if a != b:
                break
            same += 1
        return same

    def warm(self, idea: str = "", examples: Sequence[Example] = ()) -> int:
        """Evaluate the fixed instruction prefix now, so the next rewrite starts after it; returns its tokens."""
        prefix = self.build(idea or "x", examples).prefix
        tokens = self.tokens(prefix)
        with self._lock:
            if self.cached_tokens(tokens) < len(tokens):
                self.llm.reset()
                self.llm.eval(tokens)
        return len(tokens)

    def forget(self) -> None:
        """Drop llama-cpp's cached tokens (benchmarks measure a cold start with this)."""
        with self._lock:
            self.llm.reset()

    # -- generation ------------------------------------------------------------------------
    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        """(text piece, finish reason) as llama-cpp streams them. Sampling is llama-cpp's own."""
        for chunk in self.llm.create_completion(text, max_tokens=max_tokens, temperature=temperature, top_p=0.95,
                                                top_k=40, repeat_penalty=1.1, seed=seed, stop=list(stop), stream=True):
            choice = chunk["choices"][0]
            yield choice["text"], choice.get("finish_reason")

    def stream(self, idea: str, hits: Sequence[Hit], *, k: int = 5, n: int = 1,
               count_tokens: Callable[[str], int] | None = None, seed: int | None = None,
               max_tokens: int | None = None, retrieval_s: float = 0.0, load_s: float = 0.0) -> Iterator[RewriteEvent]:
        """Rewrite `idea` n times in the style of the first k usable hits, as events (see RewriteEvent)."""
        started = time.perf_counter()
        idea = clean_idea(idea)
        check_counts(k, n)
        used, examples, dropped = pick_examples(hits, k)
        suggested = suggest_settings(used)
        yield RewriteEvent("retrieved", hits=used, examples=[e.text for e in examples], suggested=suggested)
        built = self.build(idea, examples)
        known = [(h.id, h.prompt) for h in used] + [(e.id, e.text) for e in examples]
        base_seed = random.randrange(2**31) if seed is None else int(seed)
        budget = max_tokens or self.max_tokens
        timings = Timings(retrieval_s=retrieval_s, load_s=load_s)
        decoded, decode_s = 0, 0.0
        candidates: list[Candidate] = []
        with self._lock:
            if self.llm is None:
                raise StudioError("The LLM was unloaded; call Studio.rewrite again to reload it.")
            prompt_tokens = self.tokens(built.text)
            if len(prompt_tokens) + budget >= self.llm.n_ctx():
                raise InputError(f"The idea and examples take {len(prompt_tokens)} tokens, more than the model's "
                                 f"context of {self.llm.n_ctx()} allows; use a shorter idea or a smaller k.")
            timings.prompt_tokens, timings.cached_tokens = len(prompt_tokens), self.cached_tokens(prompt_tokens)
            for index in range(n):
                best: Candidate | None = None
                for attempt in range(self.retries + 1):
                    # Candidates differ by seed and a slightly warmer temperature; retries warm up further.
                    cand = Candidate("", 0, seed=base_seed + index + 1000 * attempt, attempts=attempt + 1,
                                     temperature=round(min(self.temperature + 0.1 * index + 0.15 * attempt, 1.3), 2))
                    yield RewriteEvent("start", index, attempt=attempt, seed=cand.seed,
                                       reason="; ".join(best.problems) if best else None)
                    t0 = time.perf_counter()
                    first = last = None
                    finish = None
                    for piece, reason in self.complete(built.text, seed=cand.seed, temperature=cand.temperature,
                                                       max_tokens=budget, stop=built.stop):
                        finish = reason or finish
                        if not piece:
                            continue
                        last = time.perf_counter()
                        if first is None:
                            first = last
                            if index == 0 and attempt == 0:
                                timings.first_token_s = first - t0
                        cand.raw += piece
                        yield RewriteEvent("token", index, text=piece, partial=cand.raw, attempt=attempt)
                    cand.llm_tokens = self.count(cand.raw)
                    timings.generated_tokens += cand.llm_tokens
                    if first is not None and last is not None and cand.llm_tokens > 1:
                        decoded, decode_s = decoded + cand.llm_tokens - 1, decode_s + (last - first)
                    cand.text = clean_output(cand.raw, cut_off=finish == "length")
                    cand.problems = problems(cand.text, idea, known)
                    if best is None or len(cand.problems) < len(best.problems):
                        best = cand
                    if not cand.problems:
                        break
                assert best is not None
                finish_candidate(best, count_tokens)
                candidates.append(best)
                yield RewriteEvent("candidate", index, text=best.text, candidate=best)
        timings.tokens_per_s = decoded / decode_s if decode_s > 0 else 0.0
        timings.total_s = retrieval_s + load_s + (time.perf_counter() - started)
        result = RewriteResult(idea, candidates, used, [e.text for e in examples], suggested, self.name,
                               self.starter, self.layout, timings, dropped, self.notice)
        yield RewriteEvent("done", result=result)

    def close(self) -> None:
        """Free the model's memory (RAM, VRAM). Waits for a running generation, at most 30 s."""
        got = self._lock.acquire(timeout=30)
        try:
            llm, self.llm = self.llm, None
            if llm is not None:
                llm.close()
        finally:
            if got:
                self._lock.release()
        gc.collect()


def finish_candidate(cand: Candidate, count_tokens: Callable[[str], int] | None) -> None:
    """CLIP token count and the warning shown next to the candidate."""
    cand.tokens = count_tokens(cand.text) if count_tokens and cand.text else 0
    notes = []
    if not cand.text:
        notes.append("The model gave no usable prompt; try again, or a larger model (see `python -m studio models`).")
    elif cand.problems:
        notes.append("Check this one: " + "; ".join(cand.problems) + f" (after {cand.attempts} attempts).")
    if cand.tokens > CLIP_LIMIT:
        notes.append(f"{cand.tokens} CLIP tokens: SDXL's text encoders read only the first {CLIP_LIMIT}, "
                     "so the words past that are ignored; shorten it.")
    cand.warning = " ".join(notes) or None
