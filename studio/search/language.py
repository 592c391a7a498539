"""Is a query English? A script and function-word test that routes a query to CLIP's own text tower
(English) or to the multilingual encoder (any other language).

Why not a language detector: none is installed, and on prompt text (artist names, "8k", "trending on
artstation") the small ones guess wildly; the question here is only "English or not". The limits: a text
with neither function words nor accents ("faro, tormenta") counts as English, and so does a Latin-script
language whose words are not listed below (Dutch, Polish, Turkish...) unless it has accented letters;
STUDIO_MULTILINGUAL_QUERIES=all sends every query to the multilingual encoder instead."""

from __future__ import annotations

import re
import unicodedata

# English function words that are not also words of the languages below (no "a", "in", "no", "die").
ENGLISH = frozenset(
    "the of and with on at by from into onto over under above below through is are was were be been an "
    "his her their its this that these those while wearing holding behind between near very who what "
    "which where when it they she he as for to my your our not has have out up down around like all".split()
)
# Function words of Spanish, Italian, French, German and Portuguese that English prompts do not use
# (names aside: "by guillermo del toro" still has more English; "pour", "est", "com" are left out:
# "paint pour", "est. price", "textures. com" are English prompts of the sample).
OTHER = frozenset(
    # Spanish
    "de la el los las un una unos unas del al y en con por para sobre entre bajo su sus muy es está como "
    "hacia desde "
    # Italian
    "il gli della dello degli delle nel nella nei nelle sul sulla uno di è che tra fra sotto sopra "
    "dei "
    # French
    "le les des du une et dans sur avec au aux sous "
    # German
    "der das ein eine einem einer eines und mit auf ist zu über unter "
    # Portuguese
    "os um uma dos das em ao ou".split()
)
WORD = re.compile(r"[^\W\d_]+")
# Above this share of other-script letters among the text's units (a Latin word counts one, as does each
# other-script letter: a Chinese character is about a word) a text is not English: "a cat, 猫" stays English,
# a Chinese sentence with names in Latin letters ("夜晚的海洋，victo ngai，kilian eng") is not.
OTHER_SCRIPT_SHARE = 0.4


def _latin(char: str) -> bool:
    return "LATIN" in unicodedata.name(char, "")


def is_english(text: str) -> bool:
    """True for English text (and for text with no letters: CLIP reads digits and symbols as they are)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    words = WORD.findall(text.lower())
    other_script = sum(not _latin(c) for c in letters)
    latin_words = sum(1 for w in words if _latin(w[0]))
    if other_script > OTHER_SCRIPT_SHARE * (other_script + latin_words):
        return False
    english = sum(w in ENGLISH for w in words)
    other = sum(w in OTHER for w in words)
    if english != other:
        return english > other
    # No function words either way (or as many): accented Latin letters say it is not English.
    return not any(not c.isascii() and _latin(c) for c in letters)
