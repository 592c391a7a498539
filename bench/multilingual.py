"""Ideas in other languages, measured with the tiny models of the tests: the tiny CLIP (16-d) and the tiny
multilingual encoder distilled from it (tests/tiny_multilingual.py), side by side over the sample's prompts.

* translations it learnt (tests/data/translations.tsv): the rank of the English prompt each one means,
  through the multilingual encoder and through CLIP alone;
* translations it never saw (held out of the distillation): "a lighthouse in a storm, oil painting" in
  Spanish, Italian and Chinese, its English added to the prompts searched;
* English queries: how far the multilingual encoder's top 10 is from CLIP's own (why English keeps CLIP's
  text tower in STUDIO_MULTILINGUAL_QUERIES=auto);
* the routing: how many of the sample's prompts studio.search.language.is_english sends to the
  multilingual encoder, and how many translations it keeps on CLIP;
* how long the distillation takes (the test fixture's cost).

Ranks are exact (cosine against every prompt's CLIP vector), not through Chroma's HNSW index.
`.venv/bin/python bench/multilingual.py [--steps 400] [--english 500]`"""

from __future__ import annotations

import argparse
import shutil
import statistics

from _common import CACHE, machine, table  # noqa: E402 (sets the offline environment first)

HELD_OUT = {"es": "un faro en una tormenta, pintura al óleo", "it": "un faro in una tempesta, dipinto a olio",
            "zh": "暴风雨中的灯塔，油画"}
LIGHTHOUSE = "a lighthouse in a storm, oil painting"


def main() -> None:
    import numpy as np

    from studio.config import Settings
    from studio.search.embed import ClipEmbedder
    from studio.search.language import is_english
    from studio.search.multilingual import MultilingualEncoder
    from tests.tiny import build_clip
    from tests.tiny_multilingual import LANGUAGES, build_multilingual, sample_prompts, translations

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--english", type=int, default=500)
    args = p.parse_args()
    print(machine())
    root = CACHE / "multilingual"
    shutil.rmtree(root, ignore_errors=True)
    clip = build_clip(root / "tiny-clip")
    teacher = ClipEmbedder.load(Settings(clip_model=str(clip), offline=True, device="cpu"))
    built = build_multilingual(root / "tiny-multilingual", teacher, str(clip), held_out=tuple(HELD_OUT.values()),
                               steps=args.steps, english_n=args.english)
    encoder = MultilingualEncoder.load(Settings(multilingual_model=str(root / "tiny-multilingual"), offline=True,
                                                device="cpu"))
    print(f"distillation: {args.steps} steps, {built['seconds']:.1f} s, loss {built['first_loss']:.3f} -> "
          f"{built['last_loss']:.4f}")

    prompts = sample_prompts() + [LIGHTHOUSE]
    stored = teacher.embed_texts(prompts)
    index = {p: i for i, p in enumerate(prompts)}

    def rank(vector: np.ndarray, prompt: str) -> int:
        sims = stored @ vector
        return int((sims > sims[index[prompt]]).sum()) + 1

    rows = []
    learnt = translations()
    for lang in LANGUAGES:
        texts = [r[lang] for r in learnt]
        ours = [rank(v, r["en"]) for v, r in zip(encoder.embed_texts(texts), learnt)]
        alone = [rank(v, r["en"]) for v, r in zip(teacher.embed_texts(texts), learnt)]
        rows.append([f"learnt, {lang} ({len(texts)})", statistics.median(ours), sum(r == 1 for r in ours),
                     sum(r <= 3 for r in ours), statistics.median(alone), sum(r <= 10 for r in alone)])
    for lang, idea in HELD_OUT.items():
        ours, alone = rank(encoder.embed_texts([idea])[0], LIGHTHOUSE), rank(teacher.embed_texts([idea])[0], LIGHTHOUSE)
        rows.append([f"never seen, {lang}", ours, int(ours == 1), int(ours <= 3), alone, int(alone <= 10)])
    print(f"\nRank of the English prompt meant, among {len(prompts):,} prompts (1 = found first):")
    print(table(["query", "multilingual: median rank", "top 1", "top 3", "CLIP alone: median rank", "top 10"], rows))

    english = [p for p in sample_prompts() if len(p.split()) <= 16][-300:]  # not among the 500 it was taught
    clip_top = np.argsort(-(teacher.embed_texts(english) @ stored.T), axis=1)[:, :10]
    ours_top = np.argsort(-(encoder.embed_texts(english) @ stored.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(clip_top, ours_top)])
    self_first = np.mean([top[0] == index[q] for top, q in zip(ours_top, english)])
    print(f"\nEnglish queries ({len(english)} sample prompts it was not taught): top-10 overlap with CLIP's own "
          f"{overlap:.2f}; the prompt itself first: CLIP 1.00, multilingual {self_first:.2f}")

    routed = [p for p in sample_prompts() if not is_english(p)]
    kept = {lang: sum(is_english(r[lang]) for r in learnt) for lang in LANGUAGES}
    print(f"\nRouting: {len(routed)} of {len(sample_prompts()):,} sample prompts go to the multilingual encoder; "
          f"translations kept on CLIP: {kept}")
    for prompt in routed:
        print(f"  {prompt[:100]}")


if __name__ == "__main__":
    main()
