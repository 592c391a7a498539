"""A1111 prompt syntax on SDXL: the parser's rules, the weights landing on the right tokens of both encoders
(compel's maths), BREAK and long prompts in 75-token chunks, and plain prompts reading as they did before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.errors import InputError
from studio.generate.generator import Generator
from studio.generate.prompt_syntax import LoraTag, parse_weights, split_loras
from studio.generate.request import GenerationRequest
from tests.conftest import SMALL

# Long enough for three chunks of the tiny SDXL's tokenizer (185 tokens); its words change at the end only.
LONG = ", ".join(["a castle on a hill at sunset, oil painting, highly detailed, golden light"] * 8)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


# -- the parser ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, chunks", [
    ("a lighthouse", [[("a lighthouse", 1.0)]]),
    ("(a lighthouse:1.0)", [[("a lighthouse", 1.0)]]),
    ("(a lighthouse:1.6)", [[("a lighthouse", 1.6)]]),
    ("a (b) c", [[("a ", 1.0), ("b", 1.1), (" c", 1.0)]]),
    ("[a]", [[("a", 1 / 1.1)]]),
    ("(a:0.5)", [[("a", 0.5)]]),
    ("( a : 1.25 )", [[(" a ", 1.25)]]),
    ("(word:-1)", [[("word", -1.0)]]),
    ("[a (b:0.5) c]", [[("a ", 1 / 1.1), ("b", 0.5 / 1.1), (" c", 1 / 1.1)]]),
    (r"\(x\) and \[y\]", [[("(x) and [y]", 1.0)]]),  # escapes are the characters, at weight 1, joined
    (r"a \\(b)", [[("a \\", 1.0), ("b", 1.1)]]),  # an escaped backslash, then a real bracket
    ("(a:b)", [[("a:b", 1.1)]]),  # a colon that is not a weight is text
    ("x) y]", [[("x) y]", 1.0)]]),  # brackets closing nothing are text
    ("(a:1.3", [[("a:1.3", 1.1)]]),  # never closed: weighs what follows it
    ("a:1.2)", [[("a:1.2)", 1.0)]]),
    ("a BREAK b", [[("a", 1.0)], [("b", 1.0)]]),
    ("(a BREAK b:1.2)", [[("a", 1.2)], [("b", 1.2)]]),
    ("BREAK a BREAK  BREAK", [[("a", 1.0)]]),  # empty chunks are not encoded
    ("a BREAKfast, break", [[("a BREAKfast, break", 1.0)]]),  # BREAK only as a word of its own, in capitals
    ("", [[("", 1.0)]]),
    ("( )", [[("", 1.0)]]),  # whitespace alone reads as nothing: dropped
])
def test_a1111_attention_rules(text: str, chunks: list) -> None:
    assert parse_weights(text) == [[(t, pytest.approx(w)) for t, w in chunk] for chunk in chunks]


def test_nesting_multiplies() -> None:
    assert parse_weights("((a))")[0][0][1] == pytest.approx(1.21)
    assert parse_weights("[[a]]")[0][0][1] == pytest.approx(1 / 1.21)
    assert parse_weights("((a:1.5))")[0][0][1] == pytest.approx(1.65)


def test_lora_tags_are_taken_out_and_read() -> None:
    text, tags = split_loras("a castle <lora:ink:0.8>, (gold:1.3) <lora:my style v1.0> <LORA:ink:0.2> <lora:x:1:0.5>")
    assert text == "a castle , (gold:1.3)   "
    assert tags == [LoraTag("ink", pytest.approx(1.0)), LoraTag("my style v1.0", 1.0), LoraTag("x", 1.0, 0.5)]
    assert tags[2].unet == 0.5 and tags[1].unet == 1.0
    assert split_loras("<hypernet:x:1> a") == ("<hypernet:x:1> a", [])  # other extra networks stay text
    for bad in ("<lora:x:lots>", "<lora::1>", "<lora:x:1:2:3>", "<lora:x:nan>"):
        with pytest.raises(InputError, match="<lora:NAME"):
            split_loras(bad)
    with pytest.raises(InputError, match="not a weight"):
        GenerationRequest("a castle <lora:x:0,8>").validated()  # refused with the request, before any model


# -- what the encoders read ----------------------------------------------------------------
def encode(generator: Generator, prompt: str, negative: str = "", guidance: bool = False) -> dict:
    return generator.encoder.encode(prompt, negative, guidance=guidance)


def test_plain_prompts_encode_exactly_as_diffusers_did(generator: Generator) -> None:
    ours = encode(generator, "a red fox in the snow", "blurry", guidance=True)
    with torch.no_grad():
        theirs = generator.pipe.encode_prompt("a red fox in the snow", device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=True, negative_prompt="blurry")
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    assert all(torch.equal(ours[n], t) for n, t in zip(names, theirs))


def test_plain_prompts_give_the_pixels_they_gave_before(generator: Generator) -> None:
    """The old path: the pipeline's own encode_prompt (prompt=...). The new one must not move a pixel."""
    for negative, n in (("blurry", 2), ("", 1)):
        req = GenerationRequest("a red fox in the snow", negative_prompt=negative, seed=1234, n=n, width=64,
                                height=80, steps=2).validated()
        ours = generator.generate(req)
        before = generator.pipe(prompt=req.prompt, negative_prompt=req.negative_prompt or None, width=64, height=80,
                                num_inference_steps=2, guidance_scale=req.cfg, num_images_per_prompt=n,
                                generator=[torch.Generator("cpu").manual_seed(s) for s in req.seeds])
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours.images, before.images))


def test_weights_land_on_their_tokens_on_both_encoders(generator: Generator) -> None:
    """compel's upweighting, e + (z - e) * w, on exactly the tokens of `storm`; every other token untouched."""
    empty, plain = encode(generator, "")["prompt_embeds"], encode(generator, "a storm")["prompt_embeds"]
    weighted = encode(generator, "a (storm:1.3)")["prompt_embeds"]
    tok = generator.pipe.tokenizer
    start = 1 + len(tok("a")["input_ids"]) - 2
    span = list(range(start, start + len(tok("storm")["input_ids"]) - 2))
    rest = [i for i in range(77) if i not in span]
    assert plain.shape == weighted.shape == (1, 77, 64)  # both encoders' 32-d states side by side
    expected = empty[:, span] + (plain[:, span] - empty[:, span]) * 1.3
    assert torch.allclose(weighted[:, span], expected, atol=1e-6) and not torch.allclose(weighted[:, span], plain[:, span])
    assert torch.equal(weighted[:, rest], plain[:, rest])
    # Nesting and square brackets are the same numbers written the other way.
    assert torch.allclose(encode(generator, "a ((storm))")["prompt_embeds"],
                          encode(generator, "a (storm:1.21)")["prompt_embeds"], atol=1e-6)
    assert torch.equal(encode(generator, "a [storm]")["prompt_embeds"],
                       encode(generator, f"a (storm:{1 / 1.1!r})")["prompt_embeds"])
    # Below 1, compel also blends toward the prompt without the word: not the plain embedding, not the upweighted.
    down = encode(generator, "a (storm:0.5)")["prompt_embeds"]
    assert not torch.allclose(down, plain) and torch.equal(down[:, 0], plain[:, 0])


def test_escaped_brackets_read_as_the_brackets_themselves(generator: Generator) -> None:
    with torch.no_grad():
        literal = generator.pipe.encode_prompt("a (storm)", device="cpu", do_classifier_free_guidance=False)[0]
    assert torch.equal(encode(generator, r"a \(storm\)")["prompt_embeds"], literal)


def test_break_encodes_each_chunk_on_its_own(generator: Generator) -> None:
    both = encode(generator, "a castle BREAK gold")
    first, second = encode(generator, "a castle"), encode(generator, "gold")
    assert both["prompt_embeds"].shape == (1, 154, 64)
    assert torch.equal(both["prompt_embeds"][:, :77], first["prompt_embeds"])
    assert torch.equal(both["prompt_embeds"][:, 77:], second["prompt_embeds"])
    assert torch.equal(both["pooled_prompt_embeds"], first["pooled_prompt_embeds"])  # the first chunk's, as A1111


def test_a_long_prompt_is_read_past_77_tokens(generator: Generator) -> None:
    tokens = len(generator.pipe.tokenizer(LONG)["input_ids"])
    assert tokens > 150
    ending = LONG.rsplit(", ", 1)[0] + ", deep blue"  # differs only in its last words, far past token 77
    req = GenerationRequest(LONG, seed=7, **SMALL)
    long, other = generator.generate(req), generator.generate(GenerationRequest(ending, seed=7, **SMALL))
    assert long.chunks == 3 and long.to_dict()["chunks"] == 3
    assert not np.array_equal(pixels(long), pixels(other))  # the words past 77 reach the image
    # The pipeline's own encoding would have cut both at 77 tokens: the same pixels for the two.
    run = dict(width=64, height=64, num_inference_steps=2, guidance_scale=req.validated().cfg)
    cut = [generator.pipe(prompt=p, generator=torch.Generator("cpu").manual_seed(7), **run).images[0] for p in (LONG, ending)]
    assert np.array_equal(np.asarray(cut[0]), np.asarray(cut[1]))
    # A long negative beside a short prompt: both padded to the same chunks, and its far words count too.
    short = [generator.generate(GenerationRequest("a castle", negative_prompt=n, seed=7, **SMALL)) for n in (LONG, ending)]
    assert short[0].chunks == 3 and not np.array_equal(pixels(short[0]), pixels(short[1]))


def test_same_seed_weight_one_is_the_plain_prompt_and_more_differs(generator: Generator) -> None:
    plain = generator.generate(GenerationRequest("a lighthouse", negative_prompt="fog", seed=11, **SMALL))
    one = generator.generate(GenerationRequest("(a lighthouse:1.0)", negative_prompt="(fog:1.0)", seed=11, **SMALL))
    more = generator.generate(GenerationRequest("(a lighthouse:1.6)", negative_prompt="fog", seed=11, **SMALL))
    assert np.array_equal(pixels(plain), pixels(one))
    assert not np.array_equal(pixels(plain), pixels(more))  # the tiny random SDXL moves a few levels only
    weighted_negative = generator.generate(GenerationRequest("a lighthouse", negative_prompt="(fog:1.6)", seed=11, **SMALL))
    assert not np.array_equal(pixels(plain), pixels(weighted_negative))  # the negative prompt reads weights too


def test_conditionings_are_cached_per_prompt_and_lora_state(generator: Generator) -> None:
    enc = generator.encoder
    first = enc.encode("a quiet harbour, (dawn:1.2)", "smoke", state=())
    again = enc.encode("a quiet harbour, (dawn:1.2)", "smoke", state=())
    assert again["prompt_embeds"] is first["prompt_embeds"]  # nothing encoded the second time
    other = enc.encode("a quiet harbour, (dawn:1.2)", "smoke", state=("a lora",))
    assert other["prompt_embeds"] is not first["prompt_embeds"]  # other encoder weights: encoded anew


def test_prompt_syntax_is_kept_verbatim_in_the_request() -> None:
    text = r"a castle <lora:ink:0.8>, (gold:1.3), [fog], \(sic\) BREAK sky"
    assert GenerationRequest(text).validated().prompt == text
    with pytest.raises(InputError, match="chunks of 75 tokens"):
        GenerationRequest("x" * 10_001).validated()
