"""SDXL's prompt embeddings through compel: A1111 weights and BREAK chunks (studio/generate/prompt_syntax.py)
on both text encoders, prompts past 77 tokens read in 75-token chunks, the pooled embedding from encoder 2.

Every prompt takes this one path, plain ones too: for a plain prompt of at most 75 tokens compel runs the
very computation of diffusers' encode_prompt (tested bit for bit), and `a lighthouse` and
`(a lighthouse:1.0)` become the same fragments, hence the same pixels.

Where compel's maths differs from A1111's (both are "emphasis", neither is the other's exact number):
* weight w on a token: compel moves its embedding away from the empty prompt's, e + (z - e) * w;
  A1111 multiplies it, z * w, then rescales the whole chunk back to its old mean. Both leave w = 1 exact.
* w < 1: compel also blends toward the prompt with those tokens masked out (at w = 0 they are gone;
  at 0.5 half-way); A1111 only multiplies. So `(word:0)` and negative weights remove the word here.
* chunks: both cut at 75 tokens; compel goes back to the last `, . ; :` within the chunk, A1111 to the last
  comma only when it is within 20 tokens. The pooled embedding is the first chunk's in both.

Cost: compel takes the pooled embedding in a pass of encoder 2 of its own, so a plain prompt costs about 1.8x
diffusers' encode_prompt (bench/prompt_encode.py: 1.7-1.9x on this CPU, where one CLIP-G pass takes seconds
and a 1024x1024 SDXL step tens of seconds; milliseconds on a GPU). A finished conditioning is cached, so a
prompt run again (another seed, another size) encodes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable

from studio.generate.prompt_syntax import encoder_text, parse_weights, split_loras

CACHED = 8  # conditionings kept per pipeline: re-running a prompt (a new seed) encodes nothing


class OnDevice:
    """A text encoder as compel sees it: calls go to the model (whose offload hooks bring its weights in), but
    `.device` is where the pipeline runs. compel moves its results to `text_encoder.device`, which reads `meta`
    under sequential offload (the tensors' values are lost there) and `cpu` under model offload."""

    def __init__(self, model: Any, device: Any) -> None:
        self.model = model
        self.device = device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class PromptEncoder:
    """The pipeline's two CLIP text encoders behind compel, and a small cache of finished conditionings.

    `state` names what the text encoders' weights are now (the LoRAs applied): a new state builds new
    compel objects (they cache the empty prompt's embedding) and never reuses an old conditioning."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._compels: tuple[Hashable, Any, Any] | None = None
        self._cache: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()

    def _pair(self, device: Any, state: Hashable) -> tuple[Any, Any]:
        key = (str(device), state)
        if self._compels is None or self._compels[0] != key:
            from compel import Compel, ReturnedEmbeddingsType, SplitLongTextMode

            common = dict(returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                          truncate_long_prompts=False, split_long_text_mode=SplitLongTextMode.PHRASES,
                          device=str(device))
            one, two = (OnDevice(self.pipe.text_encoder, device), OnDevice(self.pipe.text_encoder_2, device))
            self._compels = (key, Compel(tokenizer=self.pipe.tokenizer, text_encoder=one, **common),
                             Compel(tokenizer=self.pipe.tokenizer_2, text_encoder=two, requires_pooled=True, **common))
        return self._compels[1], self._compels[2]

    def encode(self, prompt: str, negative: str = "", *, guidance: bool = True, state: Hashable = None) -> dict[str, Any]:
        """The pipeline's embedding arguments (prompt_embeds, pooled_prompt_embeds and, with guidance and a
        negative prompt, the negative ones, padded to the same length). LoRA tags are left out of what the
        encoders read. An empty negative is left to the pipeline, which uses zeros for it (SDXL's
        force_zeros_for_empty_prompt), as before."""
        import torch

        device = self.pipe._execution_device
        key = (prompt, negative if guidance else None, str(device), state)
        if key in self._cache:
            self._cache.move_to_end(key)
            return dict(self._cache[key])
        one, two = self._pair(device, state)
        texts = [prompt]
        if guidance and (negative.strip() or not self.pipe.config.force_zeros_for_empty_prompt):
            texts.append(negative)
        pair = (one, two)
        with torch.no_grad():
            embeds = [self._embed(pair, text) for text in texts]
            length = max(h.shape[1] for hidden, _ in embeds for h in hidden)
            joined = [torch.cat([self._pad(c, h, length) for c, h in zip(pair, hidden)], dim=-1) for hidden, _ in embeds]
        out = {"prompt_embeds": joined[0], "pooled_prompt_embeds": embeds[0][1]}
        if len(embeds) > 1:
            out["negative_prompt_embeds"], out["negative_pooled_prompt_embeds"] = joined[1], embeds[1][1]
        self._cache[key] = out
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)
        return dict(out)

    @staticmethod
    def _embed(pair: tuple[Any, Any], text: str) -> tuple[list[Any], Any]:
        """(each encoder's hidden states, n x 77 tokens; encoder 2's pooled embedding of the first chunk)."""
        from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

        chunks = parse_weights(split_loras(text)[0])

        def fragment(text: str, weight: float) -> Fragment:
            f = Fragment("", weight)
            f.text = text  # as parsed: compel's constructor would unescape a literal `\(` a second time
            return f

        # Each BREAK chunk is encoded on its own and the results joined: compel's `.and()` conjunction.
        conjunction = Conjunction([FlattenedPrompt([fragment(t, w) for t, w in chunk]) for chunk in chunks])
        hidden = [c.build_conditioning_tensor_for_conjunction(conjunction)[0] for c in pair]
        two = pair[1]
        pooled = two.conditioning_provider.get_pooled_embeddings([encoder_text(chunks[0])], device=two.device)
        return hidden, pooled

    @staticmethod
    def _pad(compel: Any, hidden: Any, length: int) -> Any:
        """Longer with empty-prompt chunks, as compel (and A1111) pad a shorter prompt."""
        import torch

        empty = compel.conditioning_provider.empty_z.to(hidden.device, hidden.dtype)
        missing = (length - hidden.shape[1]) // empty.shape[1]
        return torch.cat([hidden] + [empty] * missing, dim=1) if missing else hidden
