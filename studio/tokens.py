"""The real CLIP tokenizer, offline: OpenAI's BPE vocabulary (studio/vocab, MIT) makes the CLIPTokenizer of
openai/clip-vit-base-patch32 and of SDXL's two text encoders (tokenizer_2 pads with "!"), so token counts
and the 77-token cut are SDXL's own whichever CLIP searches, and nothing is downloaded."""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

VOCAB = Path(__file__).resolve().parent / "vocab" / "bpe_simple_vocab_16e6.txt.gz"
LIMIT = 77  # start + 75 tokens + end: what each SDXL text encoder reads
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


def describe(text: str) -> dict[str, Any]:
    """The count, the ids, and where the 77-token cut falls: the words past it (SDXL ignores them)."""
    tok = clip_tokenizer()
    ids = tok(text, truncation=False, verbose=False)["input_ids"]
    body = ids[1:-1]
    def words(part: list[int]) -> str:
        return tok.decode(part, skip_special_tokens=True).strip()

    return {"count": len(ids), "limit": LIMIT, "over": max(0, len(ids) - LIMIT), "ids": ids,
            "kept": words(body[: LIMIT - 2]), "cut": words(body[LIMIT - 2 :])}
