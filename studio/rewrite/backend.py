"""The LLM seam: the few things the Rewriter asks of a language model. LlamaCppBackend
(studio.rewrite.llamacpp) is the real one; tests use a recording fake behind the same protocol."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol


class LLMBackend(Protocol):
    """A loaded text-completion model.

    `metadata` is the GGUF's key/value metadata (`tokenizer.chat_template`, `general.name`);
    `bos_text` / `eos_text` the text of its start and end tokens ("" when it has none);
    `adds_bos`: whether complete() puts the start token in front by itself."""

    metadata: dict[str, str]
    bos_text: str
    eos_text: str
    adds_bos: bool

    @property
    def n_ctx(self) -> int: ...

    def tokenize(self, text: str, *, bos: bool = True, special: bool = True) -> list[int]: ...

    def complete(self, text: str, *, seed: int, temperature: float, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[str, str | None]]:
        """(text piece, finish reason or None) as the model streams them; the reason is "stop" or "length"."""
        ...

    def render_chat(self, template: str, messages: Sequence[dict[str, str]]) -> str:
        """The GGUF's own chat template applied to messages (BOS/EOS as the template writes them)."""
        ...

    def cached_tokens(self, tokens: Sequence[int]) -> int:
        """How many leading tokens the model already holds evaluated (its prompt cache)."""
        ...

    def prefill(self, tokens: Sequence[int]) -> None:
        """Evaluate these tokens now, so that the next completion starting with them skips them."""
        ...

    def reset(self) -> None:
        """Forget cached tokens."""
        ...

    def close(self) -> None: ...
