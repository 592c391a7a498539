"""The real CLIP tokenizer from the shipped vocabulary: OpenAI's published ids, SDXL's two tokenizers, its
75-token chunks, and `python -m studio tokens`."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys

from studio.tokens import LIMIT, chunks, clip_tokenizer, count, describe
from tests.conftest import ROOT


def test_published_ids():
    assert clip_tokenizer()("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_tokenizer()("a photo of a dog")["input_ids"][-2:] == [1929, 49407]
    assert len(clip_tokenizer()) == 49408


def test_sdxl_tokenizer_2_pads_with_an_exclamation_mark():
    two = clip_tokenizer("!")
    padded = two("a cat", padding="max_length", max_length=LIMIT)["input_ids"]
    assert two.pad_token == "!" and padded[-1] == two.convert_tokens_to_ids("!") == 0
    assert clip_tokenizer()("a cat", padding="max_length", max_length=LIMIT)["input_ids"][-1] == 49407


def test_long_prompts_are_read_in_chunks_of_75():
    long = ", ".join(["a lighthouse in a storm"] * 20)
    out = describe(long)
    assert out["count"] == count(long) > LIMIT and out["over"] == out["count"] - LIMIT
    assert out["chunks"] == -(-(out["count"] - 2) // 75) == 2  # 120 tokens between start and end
    words = lambda text: re.findall(r"\w+", text)  # noqa: E731 - decoding spaces the commas
    # `kept` is the first chunk (the pooled embedding's words), `cut` what later chunks read.
    assert words(out["kept"]) + words(out["cut"]) == words(long) and count(out["cut"]) - 2 == out["over"]
    assert chunks("a cat") == 1 and chunks("") == 1
    assert chunks("a cat BREAK a dog BREAK a fox") == 3  # each BREAK starts a chunk
    # What the encoders read: weights syntax and LoRA tags take no tokens.
    weighted = f"({long}:1.2) <lora:some style:0.8>"
    assert count(weighted) > count(long) and chunks(weighted) == chunks(long)


def test_tokens_command_json_and_text(tmp_path):
    env = os.environ | {"STUDIO_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "studio", "tokens", "a photo of a cat", "--json"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["count"] == 7 and data["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407] and data["chunks"] == 1
    text = subprocess.run([sys.executable, "-m", "studio", "tokens", "a photo of a cat"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert text.stdout.startswith("7 CLIP tokens (start and end included): SDXL reads them in 1 chunk of 75")
