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
# A share of letters outside the Latin script above which a text is not English (a CJK word in an
# English prompt stays English).
OTHER_SCRIPT_SHARE = 0.3


def _latin(char: str) -> bool:
    return "LATIN" in unicodedata.name(char, "")


def is_english(text: str) -> bool:
    """True for English text (and for text with no letters: CLIP reads digits and symbols as they are)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    if sum(not _latin(c) for c in letters) > OTHER_SCRIPT_SHARE * len(letters):
        return False
    words = WORD.findall(text.lower())
    english = sum(w in ENGLISH for w in words)
    other = sum(w in OTHER for w in words)
    if english != other:
        return english > other
    # No function words either way (or as many): accented Latin letters say it is not English.
    return not any(not c.isascii() and _latin(c) for c in letters)
