"""A tiny multilingual text encoder aligned with a tiny CLIP, built the way the real one was made: a
DistilBERT (from a config, a WordPiece vocabulary trained once: tests/data), mean pooling and a Dense layer to CLIP's
projection size, saved as a SentenceTransformer folder, then distilled for 400 steps so that a
sentence and its translations land where the CLIP text tower puts the English."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from tests.tiny import SAMPLE

DATA = Path(__file__).resolve().parent / "data"
LANGUAGES = ("es", "it", "zh")
# The aligned encoder's WordPiece vocabulary: train_vocab() on the sample's prompts and every translation, once.
VOCAB = DATA / "tiny-multilingual-vocab.txt"


def sample_prompts() -> list[str]:
    with open(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv", encoding="utf-8") as f:
        return sorted({row["prompt"].strip() for row in csv.DictReader(f) if row["prompt"].strip()})


def translations(name: str = "translations") -> list[dict[str, str]]:
    """(en, es, it, zh) rows written by hand: "translations", real sample prompts and their translations;
    "glossary", words and short phrases (parallel data at word level, as bilingual dictionaries give)."""
    with open(DATA / f"{name}.tsv", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def train_vocab(texts: list[str], folder: Path) -> Path:
    """A WordPiece vocabulary trained on `texts` by the `tokenizers` library: folder/vocab.txt. Not the same
    twice: its trainer breaks ties between equally frequent pairs in a per-process random (Rust HashMap) order,
    so two runs give different vocabularies and different distilled models (the Spanish idea ranked its prompt
    first in one run, second in another). The aligned encoder reads VOCAB, made by this once."""
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=True, strip_accents=False)
    wordpiece.train_from_iterator(texts, vocab_size=6000, min_frequency=1, show_progress=False)
    wordpiece.save_model(str(folder))
    return Path(folder) / "vocab.txt"


def build_untrained(folder: Path, projection_dim: int, texts: list[str], seed: int = 0,
                    vocab: Path | None = None) -> Any:
    """DistilBERT (2 layers, 32-d) + mean pooling + Dense to projection_dim, with the WordPiece vocabulary
    `vocab` (a vocab.txt; default: trained on `texts`); returns the SentenceTransformer (not yet saved)."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    folder = Path(folder)
    bert_dir = folder.parent / f"{folder.name}-distilbert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    if vocab is None:
        train_vocab(texts, bert_dir)
    else:
        shutil.copyfile(vocab, bert_dir / "vocab.txt")
    # transformers 5 reads a vocab given as a dict (a vocab_file argument silently gives an empty one).
    vocab = {t: i for i, t in enumerate((bert_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    tokenizer = DistilBertTokenizer(vocab=vocab, do_lower_case=True, strip_accents=False, model_max_length=48)
    tokenizer.save_pretrained(str(bert_dir))
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                              max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    DistilBertModel(config).save_pretrained(str(bert_dir))
    transformer = Transformer(str(bert_dir), max_seq_length=48)
    pooling = Pooling(32, "mean")
    dense = Dense(32, projection_dim, bias=True, activation_function=torch.nn.Identity())
    return SentenceTransformer(modules=[transformer, pooling, dense], device="cpu")


def distil(student: Any, teacher: Any, steps: int = 400, batch: int = 32, seed: int = 0,
           held_out: tuple[str, ...] = (), english_n: int = 500, lr: float = 3e-3) -> dict[str, float]:
    """Multilingual knowledge distillation (Reimers & Gurevych 2020), as the real model was made: the
    student learns to put an English prompt, and each of its translations, where the teacher (CLIP's
    text tower) puts the English; MSE on CLIP's unit vectors. English: the sample's short prompts (up to
    16 words: the student reads 48 tokens). Returns the loss at the start and at the end."""
    import numpy as np
    import torch

    english = [p for p in sample_prompts() if len(p.split()) <= 16][:english_n]
    rows = translations() + translations("glossary")
    pairs = [(row[lang], row["en"]) for row in rows for lang in LANGUAGES if row[lang] not in held_out]
    sources = english + [src for src, _ in pairs]
    targets_of = english + [en for _, en in pairs]
    unique = sorted(set(targets_of))
    vectors = dict(zip(unique, teacher.embed_texts(unique)))
    target = torch.from_numpy(np.stack([vectors[t] for t in targets_of]))
    # Tokenized once, padded to the longest: each step only indexes tensors.
    tok = student.tokenizer(sources, padding=True, truncation=True, max_length=student.max_seq_length,
                            return_tensors="pt")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr)
    student.train()
    losses = []
    for _ in range(steps):
        # Half English (the teacher's own language), half translations: every step sees both.
        rows_ = np.concatenate([rng.choice(len(english), batch // 2, replace=False),
                                rng.choice(np.arange(len(english), len(sources)), batch // 2)])
        mask = tok["attention_mask"][rows_]
        width = int(mask.sum(1).max())
        out = student({"input_ids": tok["input_ids"][rows_, :width], "attention_mask": mask[:, :width]})
        loss = torch.nn.functional.mse_loss(out["sentence_embedding"], target[rows_])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    student.eval()
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-20:]))}


def build_multilingual(folder: Path, teacher: Any, clip_name: str, held_out: tuple[str, ...] = (),
                       **options: Any) -> dict[str, float]:
    """The aligned tiny encoder saved at `folder` (a SentenceTransformer folder) with clip_alignment.json
    naming the CLIP it was distilled from (name and fingerprint); returns the losses and seconds taken.
    held_out: translations left out of the distillation (to measure what it does with unseen sentences)."""
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    # One thread: on 2 shared cores a 2-thread step of this tiny model took 8x longer (measured).
    torch.set_num_threads(1)
    try:
        rows = translations() + translations("glossary")
        student = build_untrained(folder, teacher.dim, sample_prompts() + [r[lang] for r in rows for lang in LANGUAGES],
                                  vocab=VOCAB)
        info = distil(student, teacher, held_out=held_out, **options)
    finally:
        torch.set_num_threads(threads)
    student.save(str(folder))
    (Path(folder) / "clip_alignment.json").write_text(json.dumps(
        {"clip_model": clip_name, "fingerprint": getattr(teacher, "fingerprint", None)}), encoding="utf-8")
    return {**info, "seconds": time.perf_counter() - started}
