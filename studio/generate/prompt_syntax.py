"""AUTOMATIC1111's prompt syntax read into plain data: `<lora:NAME:WEIGHT>` tags, and `(word:1.3)`, `(word)`,
`[word]`, `\\(` escapes and `BREAK` as (text, weight) fragments per chunk. No torch here; the embedding maths
is compel's (studio/generate/conditioning.py), which takes these fragments as they are.

The rules are A1111's, as its wiki ("Attention/emphasis") states them:
* `(text)` multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1; nesting multiplies
  (`((a))` = 1.21); `(text:1.5)` multiplies by 1.5 (any number, also below 1 or negative).
* `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the characters themselves; a bracket that closes nothing is text;
  a bracket never closed weighs everything after it.
* `BREAK` (in capitals, a word of its own) ends the current 75-token chunk: what follows starts a new one.
* Runs of equal weight are joined, since A1111 tokenizes each run on its own.
Not supported (read as text): prompt editing `[from:to:when]` and alternation `[a|b]`, which change the
prompt between steps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from studio.errors import InputError

ROUND, SQUARE = 1.1, 1 / 1.1
# A1111's extra-network tag, for LoRAs: <lora:NAME>, <lora:NAME:WEIGHT> or <lora:NAME:TEXT_WEIGHT:UNET_WEIGHT>
# (`lyco` is A1111's older name for the same). Other tags (<hypernet:...>) are left as text.
LORA_TAG = re.compile(r"<(?:lora|lyco):([^<>]*)>", re.IGNORECASE)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PIECES = re.compile(rf"""
    (?P<escaped>\\[\\()\[\]])          # an escaped bracket or backslash: the character itself
  | (?P<open>[(\[])
  | :\s*(?P<weight>{_NUMBER})\s*\)     # `:1.3)` closes a round bracket with that weight
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+|[\\:])      # anything else, a lone backslash or colon included
""", re.VERBOSE)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")

Fragment = tuple[str, float]
# A LoRA's weight, each of its two: |w| up to this. A1111's users go to about ±5; far beyond, the UNet's numbers
# overflow to NaN and the image comes out black (1e308 did).
MAX_LORA_WEIGHT = 10.0


@dataclass(frozen=True)
class LoraTag:
    """One `<lora:...>` tag: the file's name in models/loras, its weight on the text encoders and on the UNet."""

    name: str
    weight: float = 1.0
    unet_weight: float | None = None  # None: the same as `weight`

    @property
    def unet(self) -> float:
        return self.weight if self.unet_weight is None else self.unet_weight


def _number(raw: str, tag: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{tag}: {raw.strip()!r} is not a weight. Write <lora:NAME:0.8> (one weight), "
                         "<lora:NAME:0.8:0.5> (text encoders, then UNet) or <lora:NAME> (weight 1).")
    return value


def split_loras(prompt: str) -> tuple[str, list[LoraTag]]:
    """(the prompt without its LoRA tags, the tags in order). The same LoRA twice adds up its weights,
    which is what applying it twice does. InputError for a tag that cannot be read."""
    tags: dict[str, LoraTag] = {}
    for match in LORA_TAG.finditer(prompt):
        name, *weights = (part.strip() for part in match.group(1).split(":"))
        if not name or len(weights) > 2:
            raise InputError(f"{match.group(0)}: write <lora:NAME:WEIGHT>, with NAME a file in models/loras "
                             "(without .safetensors).")
        tag = LoraTag(name, *(_number(w, match.group(0)) for w in weights))
        if name in tags:
            old = tags[name]
            tag = LoraTag(name, old.weight + tag.weight,
                          None if old.unet_weight is None and tag.unet_weight is None else old.unet + tag.unet)
        tags[name] = tag
    for tag in tags.values():
        for value in (tag.weight, tag.unet):
            if abs(value) > MAX_LORA_WEIGHT:
                raise InputError(f"<lora:{tag.name}:{value:g}>: a LoRA weight must be between {-MAX_LORA_WEIGHT:g} and "
                                 f"{MAX_LORA_WEIGHT:g} (0.5 to 1 is usual; the same LoRA twice adds up): beyond that the "
                                 "image turns to noise or black. Write <lora:NAME:0.8>.")
    return LORA_TAG.sub("", prompt), list(tags.values())


def parse_weights(text: str) -> list[list[Fragment]]:
    """A1111 attention syntax -> chunks (split at BREAK) of (text, weight) fragments, equal weights joined,
    empty text dropped. Always at least one chunk, which may be [("", 1.0)] for an empty prompt."""
    pieces: list[list] = []  # [text, weight], or [None, 0] for a BREAK
    opened: dict[str, list[int]] = {"(": [], "[": []}  # where each open bracket's span starts in `pieces`

    def weigh(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for m in _PIECES.finditer(text):
        if m.group("escaped"):
            pieces.append([m.group("escaped")[1], 1.0])
        elif m.group("open"):
            opened[m.group("open")].append(len(pieces))
        elif m.group("weight") is not None and opened["("]:
            weigh(opened["("].pop(), float(m.group("weight")))
        elif m.group("close") == ")" and opened["("]:
            weigh(opened["("].pop(), ROUND)
        elif m.group("close") == "]" and opened["["]:
            weigh(opened["["].pop(), SQUARE)
        else:  # text, or a bracket/weight that closes nothing
            for i, part in enumerate(_BREAK.split(m.group(0))):
                if i:
                    pieces.append([None, 0.0])
                pieces.append([part, 1.0])
    for start in opened["("]:
        weigh(start, ROUND)
    for start in opened["["]:
        weigh(start, SQUARE)

    chunks: list[list[Fragment]] = [[]]
    for piece_text, weight in pieces:
        if piece_text is None:
            chunks.append([])
        elif not piece_text:
            continue
        elif chunks[-1] and chunks[-1][-1][1] == weight:
            chunks[-1][-1] = (chunks[-1][-1][0] + piece_text, weight)
        else:
            chunks[-1].append((piece_text, weight))
    # Whitespace alone reads as no tokens: dropped, so that compel never looks for its (absent) tokens.
    chunks = [[f for f in chunk if f[0].strip()] for chunk in chunks]
    return [c for c in chunks if c] or [[("", 1.0)]]


def encoder_text(chunk: list[Fragment]) -> str:
    """The words of a chunk without syntax: what the pooled embedding is made from."""
    return "".join(t for t, _ in chunk).strip()

