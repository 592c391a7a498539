"""The real CLIP tokenizer, offline: OpenAI's BPE vocabulary (studio/vocab, MIT) makes the CLIPTokenizer of
openai/clip-vit-base-patch32 and of SDXL's two text encoders (tokenizer_2 pads with "!"), so token counts
and SDXL's 75-token chunks are SDXL's own whichever CLIP searches, and nothing is downloaded."""

from __future__ import annotations

import functools
import gzip
import json
import math
import tempfile
from pathlib import Path
from typing import Any

VOCAB = Path(__file__).resolve().parent / "vocab" / "bpe_simple_vocab_16e6.txt.gz"
LIMIT = 77  # start + 75 tokens + end: what each SDXL text encoder reads at a time (longer prompts: more chunks)
CHUNK = LIMIT - 2
MERGES = 49152 - 256 - 2  # CLIP's SimpleTokenizer keeps the first 48,894 merges
START, END = "<|startoftext|>", "<|endoftext|>"


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table in CLIP's simple_tokenizer order (the printable bytes
    first, then the rest mapped past 255): that order is the first 256 token ids."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def write_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt (49,408 tokens) from the BPE file, as transformers' CLIPTokenizer reads them."""
    with gzip.open(VOCAB, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1 : MERGES + 1]]
    alphabet = _byte_chars()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [START, END]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    return folder


@functools.lru_cache(maxsize=2)
def clip_tokenizer(pad: str = END) -> Any:
    """openai/clip-vit-base-patch32's tokenizer (pad END), or SDXL's tokenizer_2 (pad "!")."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="studio-clip-bpe-") as tmp:  # read whole by the constructor
        folder = write_tokenizer_files(Path(tmp))
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=END,
                             bos_token=START, eos_token=END, pad_token=pad, model_max_length=LIMIT)


def count(text: str) -> int:
    """CLIP tokens of the text, start and end included (SDXL reads LIMIT of them)."""
    return len(clip_tokenizer()(text, truncation=False, verbose=False)["input_ids"])


def chunks(text: str) -> int:
    """How many 75-token chunks SDXL's encoders read for a prompt: its A1111 weights syntax and LoRA tags
    left out, every BREAK starting a chunk. (Where a chunk would cut a phrase, it may end early at a comma,
    which can add one more.)"""
    from studio.generate.prompt_syntax import parse_weights, split_loras

    tok = clip_tokenizer()
    segments = parse_weights(split_loras(text)[0])
    sizes = [sum(len(tok(t, truncation=False, verbose=False)["input_ids"]) - 2 for t, _ in seg) for seg in segments]
    return sum(max(1, math.ceil(n / CHUNK)) for n in sizes)


def describe(text: str) -> dict[str, Any]:
    """The count, the ids, the chunks SDXL reads, and where the first chunk ends: `kept` is its words (the
    pooled embedding is made from them), `cut` the words after it (read in the later chunks)."""
    tok = clip_tokenizer()
    ids = tok(text, truncation=False, verbose=False)["input_ids"]
    body = ids[1:-1]
    def words(part: list[int]) -> str:
        return tok.decode(part, skip_special_tokens=True).strip()

    return {"count": len(ids), "limit": LIMIT, "over": max(0, len(ids) - LIMIT), "ids": ids, "chunks": chunks(text),
            "kept": words(body[: LIMIT - 2]), "cut": words(body[LIMIT - 2 :])}
