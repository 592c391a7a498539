"""Stored prompts are untrusted text. Before one reaches the LLM it is normalised (NFKC; invisible, control and
bidi characters and chat special tokens removed), its markup is stripped, and it is kept only when it reads as
an image description: no clause that addresses a reader (second person, an imperative to a model, role or
instruction words) in any of the languages below, no word that mixes scripts, no chat tokens. A candidate is
then checked against the words that only the dropped (suspicious) examples held, so an injection that got
past the first gate still cannot put its payload into the prompt.

The word lists are closed grammatical classes (pronouns, a dozen imperative verbs, "instruction" nouns), not
attack phrases: an injection has to address the model, and these are the words it addresses it with."""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

# -- normalising ------------------------------------------------------------------------------------------
# Text a tokenizer may turn into control tokens (completions tokenize with special=True), so a stored prompt
# could otherwise close a chat turn or open a new system message. "[INST]"-style tags are matched in capitals
# only: "[sunset]" is A1111's emphasis, not a control tag.
SPECIAL = re.compile(
    r"<\|[^|<>]{0,40}\|>|</?s>|<(?:unk|pad|bos|eos|mask)>|(?-i:\[/?[A-Z_]{3,12}\])|<</?SYS>>|</?(?:start|end)_of_turn>"
    r"|<\|?(?:im_start|im_end|eot_id|endoftext|begin_of_text|end_of_text)\|?>|^\s*#{2,}\s*\w+\s*:?",
    re.I | re.M,
)
_INVISIBLE_CATEGORIES = {"Cf", "Co", "Cs", "Cn"}  # format (zero-width, bidi, soft hyphen, tags), private, unassigned
_COMBINING_RUN = re.compile(r"(\w)[\u0300-\u036f\u0489\u20d0-\u20ff]{2,}")  # "Z̶̡a̷l̴g̸o̵": marks over marks

# -- markup: never shown to the model, never put in a prompt -----------------------------------------------
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_MD_IMAGE = re.compile(r"!\[[^\]]{0,200}\]\([^)]{0,500}\)")
_MD_LINK = re.compile(r"\[([^\]]{0,200})\]\([^)]{0,500}\)")
_HTML_TAG = re.compile(r"</?[a-z!][^<>]{0,300}>|&(?:[a-z]{2,8}|#\d{1,6});", re.I)
_URL = re.compile(r"\b(?:https?|ftp|file|data|javascript|mailto):\S*|\bwww\.\S+", re.I)
_MD_MARKS = re.compile(r"\*\*|__|~~|`+|^\s*[>#]+\s*", re.M)
LORA_TAG = re.compile(r"<(?:lora|lyco|hypernet):[^<>]{1,200}>", re.I)


def strip_invisible(text: str) -> str:
    """NFKC (fullwidth 'ｉｇｎｏｒｅ' is 'ignore'), then invisible characters removed, so that 'ig<ZWSP>nore' is
    'ignore' again; control characters (newlines included) become spaces."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join("" if unicodedata.category(c) in _INVISIBLE_CATEGORIES else " " if unicodedata.category(c) == "Cc"
                   else c for c in text)
    return _COMBINING_RUN.sub(r"\1", text)


def strip_markup(text: str, *, keep_lora: bool = True) -> str:
    """HTML, markdown, links and URLs removed (a link's words kept, an image's alt text not: it can carry
    anything). A1111 syntax stays: '(word:1.3)', '[word]', and <lora:…> tags unless keep_lora is False."""
    text = _SCRIPT.sub(" ", text)
    text = _MD_IMAGE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    if not keep_lora:
        text = LORA_TAG.sub(" ", text)
    loras: list[str] = []
    text = LORA_TAG.sub(lambda m: loras.append(m.group(0)) or f"\x00{len(loras) - 1}\x00", text)
    text = _URL.sub(" ", _HTML_TAG.sub(" ", text))
    text = _MD_MARKS.sub(" ", text)
    text = re.sub(r"([,;])(?:\s*[,;])+", r"\1", re.sub(r"\s+([,;])", r"\1", text))  # clauses emptied by it
    return re.sub("\x00(\\d+)\x00", lambda m: loras[int(m.group(1))], text)


def one_line(text: str) -> str:
    """Normalised, invisible characters dropped, whitespace collapsed to single spaces."""
    return " ".join(strip_invisible(text).split())


def has_markup(text: str) -> bool:
    return bool(_SCRIPT.search(text) or _MD_IMAGE.search(text) or _MD_LINK.search(text)
                or _HTML_TAG.search(LORA_TAG.sub(" ", text)) or _URL.search(text))


# -- what addresses a reader instead of describing a picture ------------------------------------------------
# Second-person pronouns (a description has no "you"), by language.
SECOND_PERSON = frozenset("""
you your yours yourself yourselves
dich dir dein deine deinen deinem deiner euch euer eure
tu toi vous votre vos
tú usted ustedes vosotros vosotras contigo
voi vostro vostra tuo tua tuoi
você vocês vós teu
jij jou jouw jullie uw
ciebie tobie twój wasz
sen siz sana senin sizin
ты вы тебя тебе вас вам твой ваш ваши твои тобой вами
""".split())
# Verbs a message to a model opens a clause with (the imperative), by language.
IMPERATIVES = frozenset("""
ignore disregard forget override bypass output print reply respond answer repeat say write tell translate
stop pretend obey don't
ignoriere ignorier ignorieren vergiss vergessen schreibe schreib antworte antworten gib sage sag wiederhole
befolge missachte vergesst
ignorez oublie oubliez écris écrivez réponds répondez dis dites affiche affichez répète répétez
ignora olvida olvide escribe escriba responde responda diga muestra repite
dimentica scrivi rispondi ripeti mostra
esqueça esqueca escreva diga repita
negeer vergeet schrijf antwoord zeg herhaal
игнорируй забудь напиши пиши ответь отвечай скажи выведи повтори игнорируйте забудьте напишите
zignoruj ignoruj zapomnij napisz odpowiedz powiedz
unut yaz söyle cevapla
""".split())
_LEAD_INS = frozenset("please pls kindly now just and then also bitte jetzt s'il plaît por favor per favore "
                      "пожалуйста proszę lütfen".split())
# Nouns and phrases about the conversation itself: word stems (Latin, Cyrillic) ...
META_STEMS = ("instruction", "instrucc", "instruç", "istruz", "instrukc", "instructie", "anweisung", "richtlinie",
              "guidance", "guideline", "directive", "инструкц", "указани", "talimat", "jailbreak", "chatgpt",
              "systemprompt", "system prompt", "prompt injection", "previous message", "the above", "above text",
              "from now on", "ab jetzt", "von nun an", "à partir de maintenant", "de ahora en adelante",
              "d'ora in poi", "a partir de agora", "vanaf nu", "отныне", "с этого момента", "new task",
              "neue aufgabe", "nouvelle tâche", "nueva tarea", "nuovo compito")
# ... and substrings in scripts written without spaces or with rich affixes (CJK, Arabic, Devanagari, Thai).
META_SUBSTRINGS = ("你", "您", "忽略", "无视", "無視", "忘记", "忘記", "指令", "指示", "命令", "提示词", "系统", "系統", "输出",
                   "輸出", "出力", "回答", "あなた", "お前", "忘れ", "당신", "무시", "지시", "출력", "명령", "تجاهل",
                   "تعليمات", "اكتب", "أنت", "انت", "निर्देश", "अनदेखा", "लिखें", "आप", "तुम", "คำสั่ง", "เพิกเฉย")
ROLE = re.compile(r"(?:^|[\s,.;:!?])(?:system|assistant|user|human|ai|bot|model|instruction|response|"
                  r"answer|question|idea|prompt|input|output|context|task)s?\s*[:：]", re.I)
_CLAUSES = re.compile(r"[,;:.!?()\[\]{}<>\"“”«»|\n]+|\s[-–—]\s")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")  # scripts with look-alike letters


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return next((s for s in _SCRIPTS if name.startswith(s)), "")


def mixed_script(word: str) -> bool:
    """'іgnore' with a Cyrillic і: a word whose letters come from two look-alike alphabets."""
    scripts = {_script(c) for c in word if c.isalpha()}
    scripts.discard("")
    return len(scripts) > 1


def suspicion(text: str) -> str | None:
    """Why this text does not read as an image description (None: it does). Call on normalised text."""
    if SPECIAL.search(text):
        return "chat control tokens"
    low = text.casefold()
    tokens = re.findall(r"[\w'’]+", low)
    if any(mixed_script(w) for w in re.findall(r"\w+", text)):
        return "look-alike letters from two alphabets"
    if any(w in SECOND_PERSON for w in tokens):
        return "addresses a reader (second person)"
    if ROLE.search(text):
        return "role or label text"
    if any(s in low for s in META_STEMS) or any(s in text for s in META_SUBSTRINGS):
        return "talks about instructions"
    for clause in _CLAUSES.split(low):
        words = [w for w in re.findall(r"[\w'’]+", clause) if w not in _LEAD_INS]
        if words and words[0] in IMPERATIVES and len(words) > 1:
            return "an imperative addressed to a model"
    if text.rstrip().endswith("?"):
        return "a question, not a description"
    return None


# -- checking a candidate against what only suspicious examples said ---------------------------------------
_COMMON = frozenset("the and with for from into that this then than only just very more most word words "
                    "image images picture style".split())


_WORD = re.compile(r"(?:\w|[\u0300-\u036f\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f])+")  # vowel signs are letters here


def vocabulary(text: str) -> set[str]:
    """Content words (3+ letters) and, for scripts written without spaces, character pairs."""
    low = one_line(text).casefold()
    runs = _WORD.findall(low)
    found = {w for w in runs if len(w) >= 3 and not _cjk(w)}
    for run in runs:
        if _cjk(run):
            found.update(run[i:i + 2] for i in range(len(run) - 1))
    return found - _COMMON


def _cjk(word: str) -> bool:
    return any(unicodedata.name(c, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI")) for c in word)


def tainted_words(suspicious: Iterable[str], trusted: Iterable[str]) -> frozenset[str]:
    """Words only the suspicious texts held: in no trusted text (the idea, the examples shown)."""
    bad: set[str] = set()
    for text in suspicious:
        bad |= vocabulary(strip_markup(SPECIAL.sub(" ", strip_invisible(text))))
    for text in trusted:
        bad -= vocabulary(text)
    return frozenset(bad)
