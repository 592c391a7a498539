"""A recording fake behind our LLMBackend seam (as simonw/llm's mock model): queued outputs, recorded prompts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# Meta's Llama 2 chat template as GGUF converters store it (tokenizer.chat_template): it writes BOS itself.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


@dataclass
class Call:
    text: str
    seed: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]


@dataclass
class RecordingBackend:
    """Answers each complete() with the next queued output, streamed word by word (" word") (a stop string ends it,
    as a real model stops there); records every prompt. Tokens are whitespace-separated words."""

    outputs: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    bos_text: str = "<s>"
    eos_text: str = "</s>"
    adds_bos: bool = True
    context: int = 2048
    calls: list[Call] = field(default_factory=list)
    prefilled: list[list[int]] = field(default_factory=list)
    closed: bool = False
    _held: list[int] = field(default_factory=list)

    @property
    def n_ctx(self) -> int:
        return self.context

    def tokenize(self, text: str, *, bos: bool = True, special: bool = True) -> list[int]:
        ids = [hash(w) % 50_000 + 2 for w in text.split()]
        return ([1] if bos and self.adds_bos else []) + ids

    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        self.calls.append(Call(text, seed, temperature, max_tokens, tuple(stop)))
        out = self.outputs.pop(0) if self.outputs else ""
        cut = min((out.find(s) for s in stop if s and s in out), default=-1)
        finish = "stop"
        if cut >= 0:
            out = out[:cut]
        pieces = out.split(" ")
        if len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        for word in pieces:
            yield " " + word, None  # as BPE models stream: each word with its leading space
        yield "", finish

    def render_chat(self, template: str, messages: Sequence[dict[str, str]]) -> str:
        import jinja2

        env = jinja2.Environment(loader=jinja2.BaseLoader())
        return env.from_string(template).render(messages=list(messages), bos_token=self.bos_text,
                                                eos_token=self.eos_text)

    def cached_tokens(self, tokens: Sequence[int]) -> int:
        same = 0
        for a, b in zip(self._held, tokens):
            if a != b:
                break
            same += 1
        return same

    def prefill(self, tokens: Sequence[int]) -> None:
        self.prefilled.append(list(tokens))
        self._held = list(tokens)

    def reset(self) -> None:
        self._held = []

    def close(self) -> None:
        self.closed = True


@dataclass
class ObedientBackend(RecordingBackend):
    """A model that does whatever an injection it reads tells it: when its prompt holds any of `payloads`,
    it answers with the first it finds inside an otherwise fine prompt; else with `benign`."""

    payloads: tuple[str, ...] = ()
    benign: str = "a cat asleep on a velvet sofa, oil painting, soft light"

    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        seen = next((p for p in self.payloads if p.casefold() in text.casefold()), None)
        self.outputs = [f"a cat asleep on a velvet sofa, {seen}, oil painting" if seen else self.benign]
        return super().complete(text, seed=seed, temperature=temperature, max_tokens=max_tokens, stop=stop)
