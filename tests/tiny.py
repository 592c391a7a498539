"""Builders of tiny real models from configs (random weights, real code paths); used by tests and bench."""

from __future__ import annotations

import collections
import csv
import re
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "diffusiondb-sample"


def _byte_chars() -> list[str]:
    """CLIP's byte -> printable-unicode table (the GPT-2 byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def clip_vocab(words: int = 3000) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary with whole-word merges for the sample's most common words."""
    alphabet = _byte_chars()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    seen = set(tokens)
    merge_set: set[tuple[str, str]] = set()
    counts: collections.Counter = collections.Counter()
    with open(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            counts.update(w for w in re.findall(r"[a-z]+", row["prompt"].lower()) if w.isascii())
    for word, _ in counts.most_common(words):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            merged = pair[0] + pair[1]
            if pair not in merge_set:
                merge_set.add(pair)
                merges.append(pair)
            if merged not in seen:
                seen.add(merged)
                tokens.append(merged)
            symbols = [merged] + symbols[2:]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def save_clip_tokenizer(folder: Path) -> int:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|startoftext|>",
                        eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.model_max_length = 77
    tok.save_pretrained(str(folder))
    return len(vocab)


def build_clip(folder: Path, shape_true: bool = False, seed: int = 0, projection_dim: int = 16) -> Path:
    """A CLIP folder (config, weights, tokenizer, image processor) that CLIPModel.from_pretrained reads.
    shape_true: the real ViT-B/32 config (same compute as openai/clip-vit-base-patch32), random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = save_clip_tokenizer(folder)
    bos, eos = vocab_size - 2, vocab_size - 1
    text = dict(vocab_size=vocab_size, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    if shape_true:
        config = CLIPConfig(text_config=text, vision_config={}, projection_dim=512)
        side = 224
    else:
        text.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2)
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
        side = 32
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(folder))
    CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(str(folder))
    return folder
