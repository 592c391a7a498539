"""CLIP text encoding on the CPU, the ingest's end-to-end bottleneck: today's path (batches in input order,
each padded to its longest prompt) against length-bucketed batches, then those with the int8 text tower
(torch dynamic quantization), in one run on the sample's real prompts, shape-true CLIP ViT-B/32.

Agreement with fp32, on the same prompts: the lowest and mean cosine of each text's two vectors, and
for --queries ideas the share whose exact top-10 over the encoded prompts is the same set. Kept only
where cosine >= 0.99 and the same top-10 for >= 95% of queries.

    .venv/bin/python bench/encode.py [--prompts 768] [--batch 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

MIN_COSINE, MIN_SAME_TOP10 = 0.99, 0.95


def main() -> None:
    import numpy as np
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=768)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    embedder = C.open_clip("encode", None, False)
    with open(C.SAMPLE_CSV, encoding="utf-8") as f:
        prompts = sorted({r["prompt"].strip() for r in csv.DictReader(f) if r["prompt"].strip()})
    random.Random(0).shuffle(prompts)
    texts = prompts[: a.prompts]
    queries = prompts[a.prompts : a.prompts + a.queries]
    tok = embedder.tokenizer

    def today(batch: list[str]) -> np.ndarray:  # the path before bucketing, as it was
        out = []
        for s in range(0, len(batch), a.batch):
            t = tok(batch[s : s + a.batch], padding=True, truncation=True, max_length=77, return_tensors="pt")
            with torch.inference_mode():
                out.append(embedder._normalise(embedder.model.get_text_features(**t)))
        return np.concatenate(out)

    def bucketed(batch: list[str]) -> np.ndarray:
        return embedder.embed_texts(batch, batch_size=a.batch)

    today(texts[:8])
    rates, vectors = {}, {}
    for name, fn in (("today", today), ("bucketed", bucketed)):
        t0 = time.perf_counter()
        vectors[name] = fn(texts)
        rates[name] = len(texts) / (time.perf_counter() - t0)
        print(f"{name}: {rates[name]:.1f} prompts/s", flush=True)
    t0 = time.perf_counter()
    kept = embedder.quantize_text(prompts[-16:], min_cosine=0.0)  # measured here, not gated
    quantize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors["int8"] = bucketed(texts)
    rates["int8"] = len(texts) / (time.perf_counter() - t0)
    print(f"int8 (bucketed): {rates['int8']:.1f} prompts/s (quantized in {quantize_s:.1f} s, probe cosine {kept:.4f})")

    q_int8 = embedder.embed_texts(queries)
    embedder.int8_text = None
    q_fp32 = embedder.embed_texts(queries)
    results = {"prompts": len(texts), "batch": a.batch, "rates": rates}
    rows = []
    for name in ("bucketed", "int8"):
        cos = (vectors[name] * vectors["today"]).sum(axis=1)
        q = q_int8 if name == "int8" else q_fp32
        same = np.mean([set(np.argsort(-(vectors["today"] @ qf))[:10]) == set(np.argsort(-(vectors[name] @ qn))[:10])
                        for qf, qn in zip(q_fp32, q)])
        ok = float(cos.min()) >= MIN_COSINE and same >= MIN_SAME_TOP10
        results[name] = {"speedup": rates[name] / rates["today"], "min_cosine": float(cos.min()),
                         "mean_cosine": float(cos.mean()), "same_top10": float(same), "keep": bool(ok)}
        rows.append([name, rates[name], rates[name] / rates["today"], float(cos.min()), float(cos.mean()), float(same),
                     C.verdict(ok)])
    print(C.table(["arm", "prompts/s", "x today", "min cos", "mean cos", "same top-10", "agrees"],
                  [["today", rates["today"], 1.0, 1.0, 1.0, 1.0, "-"], *rows]))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
