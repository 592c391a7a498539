"""Prompt encoding: the studio's compel path (A1111 syntax, 75-token chunks) against diffusers' encode_prompt.

SDXL base's two real text encoders (configs from studio/generate/sdxl_config, random weights: the same
compute) and the real CLIP tokenizer (studio/tokens.py). Arms per prompt kind, interleaved, order rotating:
  raw      pipe.encode_prompt(prompt, negative): diffusers' own (it cuts a long prompt at 77 tokens)
  studio   PromptEncoder.encode, its conditioning cache emptied first (compel objects kept, as in use)
  cached   PromptEncoder.encode of the same prompt again (a new seed of the same prompt)
Kinds: plain (no syntax, < 77 tokens), weighted ((x:1.3), [y], a BREAK), long (~150 tokens). For plain
prompts it also prints the largest difference from raw (the two must agree exactly).

    .venv/bin/python bench/prompt_encode.py                  # CPU, fp32: ~10 min on 2 cores (seconds per CLIP-G pass)
    .venv/bin/python bench/prompt_encode.py --device cuda    # fp16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

PROMPTS = {
    "plain": ("a lighthouse on a cliff in a storm at dusk, dramatic lighting, highly detailed, oil painting",
              "blurry, low quality"),
    "weighted": ("a lighthouse on a cliff in a (storm:1.3) at dusk, [dramatic lighting], ((highly detailed)) "
                 "BREAK oil painting, trending on artstation", "(blurry:1.2), low quality"),
    "long": (", ".join(["a lighthouse on a cliff in a storm at dusk, dramatic lighting, oil painting"] * 8),
             "blurry, low quality"),
}


def build(device: str) -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.generate.loading import SDXL_CONFIG
    from studio.tokens import clip_tokenizer

    cfg = str(SDXL_CONFIG)
    torch.manual_seed(0)
    with torch.device(device):
        one = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder"))
        two = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder_2"))
    dtype = torch.float16 if device == "cuda" else torch.float32
    return StableDiffusionXLPipeline(vae=None, unet=None, scheduler=None, text_encoder=one.to(dtype).eval(),
                                     text_encoder_2=two.to(dtype).eval(), tokenizer=clip_tokenizer(),
                                     tokenizer_2=clip_tokenizer("!"), add_watermarker=False)


def timed(fn: Callable[[], Any], device: str) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int)
    a = p.parse_args()
    C.set_threads(a.threads)
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the raw arm warns on every call that it cut the long prompt

    from studio.generate.conditioning import PromptEncoder

    started = time.perf_counter()
    pipe = build(a.device)
    print(f"built SDXL's two text encoders in {time.perf_counter() - started:.1f} s on {a.device}")
    encoder = PromptEncoder(pipe)

    def raw(prompt: str, negative: str) -> Any:
        with torch.no_grad():
            return pipe.encode_prompt(prompt, device=a.device, do_classifier_free_guidance=True,
                                      negative_prompt=negative)

    def studio(prompt: str, negative: str) -> Any:
        encoder._cache.clear()
        return encoder.encode(prompt, negative)

    arms = {"raw": raw, "studio": studio, "cached": lambda pr, ng: encoder.encode(pr, ng)}
    times: dict[tuple[str, str], list[float]] = {(k, arm): [] for k in PROMPTS for arm in arms}
    for kind, (prompt, negative) in PROMPTS.items():  # warm-up: first calls (compel's empty prompt, allocations)
        for fn in arms.values():
            fn(prompt, negative)
    for r in range(a.rounds):
        order = list(arms)[r % len(arms):] + list(arms)[: r % len(arms)]
        for kind, (prompt, negative) in PROMPTS.items():
            for arm in order:
                times[(kind, arm)].append(timed(lambda: arms[arm](prompt, negative), a.device))
        print(f"round {r + 1} of {a.rounds} done", flush=True)

    ours, theirs = studio(*PROMPTS["plain"]), raw(*PROMPTS["plain"])
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    diff = max(float((ours[n] - t).abs().max()) for n, t in zip(names, theirs))
    print(f"{'kind':9s} {'tokens':>6s} {'chunks':>6s} " + " ".join(f"{arm + ' ms':>10s}" for arm in arms)
          + f" {'studio/raw':>10s}")
    for kind, (prompt, negative) in PROMPTS.items():
        med = {arm: statistics.median(times[(kind, arm)]) * 1000 for arm in arms}
        tokens = len(pipe.tokenizer(prompt)["input_ids"])
        chunks = encoder.encode(prompt, negative)["prompt_embeds"].shape[1] // 77
        print(f"{kind:9s} {tokens:6d} {chunks:6d} " + " ".join(f"{med[arm]:10.1f}" for arm in arms)
              + f" {med['studio'] / med['raw']:10.2f}")
    print(f"plain prompt, studio vs raw: largest difference {diff:g} (must be 0)")
    print("PASS" if diff == 0 else "MISS")


if __name__ == "__main__":
    main()
