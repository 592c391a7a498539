"""Mining styles at DiffusionDB's size: studio.library.styles.mine over the 1.5M-prompt stand-in, time and peak RSS.

The stand-in is bench/scale.py's DiffusionDB-shaped table (2M rows, ~1.52M unique prompts: the sample's real
prompts with DiffusionDB's modifiers appended). Its unique prompts are streamed from the parquet file in
record batches for each of the three passes (memory holds one batch, the dedupe set's hashes and the bounded
counters), as the studio streams its store a page at a time. Then applying a style is timed (cold: the CLIP
tokenizer's first load; warm: every later click).

    .venv/bin/python bench/styles.py                 # 2M rows (~1.52M prompts); builds the table once (cached)
    .venv/bin/python bench/styles.py --rows 200000 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _scale_data import build_table  # noqa: E402


def unique_prompts(table: Path) -> Iterator[str]:
    """Each normalised prompt once (8-byte hashes kept, not the texts), streamed in record batches."""
    import pyarrow.parquet as pq

    from studio.search.store import normalise

    seen: set[bytes] = set()
    for batch in pq.ParquetFile(table).iter_batches(batch_size=65_536, columns=["prompt"]):
        for prompt in batch.column(0).to_pylist():
            key = hashlib.blake2b(normalise(prompt or "").encode(), digest_size=8).digest()
            if key not in seen:
                seen.add(key)
                yield prompt


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    from studio.library.styles import apply_style, mine

    start = time.perf_counter()
    table = build_table(args.rows, C.CACHE / f"scale-table-{args.rows}.parquet")
    built = time.perf_counter() - start
    print(f"# bench/styles.py: stand-in table {table.name} ({args.rows:,} rows; ready in {built:.0f} s)")
    print(f"# {C.machine()}")
    before = peak_gb()
    start = time.perf_counter()
    mined = mine(lambda: unique_prompts(table))
    seconds = time.perf_counter() - start
    peak = peak_gb()
    phrase = "trending on artstation"
    cold = time.perf_counter()
    apply_style("a lighthouse in a storm", mined.styles[0].phrases)
    cold = (time.perf_counter() - cold) * 1000
    warm = []
    for style in mined.styles * 5:
        t = time.perf_counter()
        apply_style("a lighthouse in a storm, oil painting", style.phrases)
        warm.append((time.perf_counter() - t) * 1000)
    print(C.table(["measure", "value", "target"], [
        ["prompts mined (unique)", mined.prompts, ""], ["passes", mined.passes, "streaming"],
        ["mining wall time, s", seconds, "<= 120"], ["peak RSS of the process, GB", peak, "<= 1.0"],
        ["peak RSS before mining, GB", before, ""], ["styles", len(mined.styles), ""],
        [f"'{phrase}' prompts", mined.counts.get(phrase, 0), ""],
        ["apply a style, cold ms (tokenizer load)", cold, ""],
        ["apply a style, warm p95 ms", C.percentile(warm, 95), "<= 50"]]))
    for s in mined.styles[:8]:
        print(f"  {s.prompts:>8,}  {', '.join(s.phrases)}")
    ok = seconds <= 120 and peak <= 1.0 and C.percentile(warm, 95) <= 50
    print(f"mining {seconds:.1f} s, peak {peak:.2f} GB, apply p95 {C.percentile(warm, 95):.2f} ms: {C.verdict(ok)}"
          f"{' (lossy first pass pruned)' if mined.pruned else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "prompts": mined.prompts, "seconds": seconds,
                                               "peak_gb": peak, "apply_cold_ms": cold,
                                               "apply_warm_ms_median": statistics.median(warm),
                                               "apply_warm_ms_p95": C.percentile(warm, 95), "pruned": mined.pruned,
                                               "styles": [s.to_dict() for s in mined.styles]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
