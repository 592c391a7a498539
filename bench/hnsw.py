"""Chroma's HNSW settings at DiffusionDB's size: add rate, recall@10 against exact search, and query time.

The first --prompts unique prompts of bench/scale.py's DiffusionDB-shaped table (2M rows, cached), as
vectors of its stand-in encoder (bag of hashed words, 512-d: a prompt's variants lie near it, and
DiffusionDB-like near-duplicates crowd every neighbourhood), added to a raw Chroma collection in the
studio's batches, one collection per --config. Then, for each --ef (ef_search, changed on the built
collection with modify()), the same --queries queries: recall@10 against exact search over every vector,
and p50/p95 of the query. What the store uses is studio/search/store.py's HNSW.

    .venv/bin/python bench/hnsw.py                                   # 1M prompts, Chroma's defaults
    .venv/bin/python bench/hnsw.py --config max_neighbors=32 --ef 200 400 800 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)
from _scale_data import DIM, StandIn, build_table  # noqa: E402

TARGET_RECALL = 0.95


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=1_000_000, help="unique prompts added (from the 2M table)")
    p.add_argument("--config", action="append", default=None,
                   help="HNSW settings of one collection, e.g. 'max_neighbors=32,ef_construction=200' ('' for "
                        "Chroma's defaults); repeat for several")
    p.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400, 800], help="ef_search values to query with")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--batch", type=int, default=256, help="the add batch (the studio's batch_size)")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args()


def unique_prompts(table: Path, n: int) -> list[str]:
    """The table's first n unique prompts, in order, read in record batches."""
    import pyarrow.parquet as pq

    seen: dict[str, None] = {}
    for batch in pq.ParquetFile(table).iter_batches(columns=["prompt"], batch_size=100_000):
        for prompt in batch.column(0).to_pylist():
            seen.setdefault(prompt.strip(), None)
            if len(seen) >= n:
                return list(seen)
    return list(seen)


def parse_config(text: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}


def exact_top(matrix: Any, query: Any) -> tuple[set[int], float]:
    import numpy as np

    sims = matrix @ query
    top = np.argpartition(-sims, 10)[:10]
    return set(top.tolist()), float(sims[top].min())


def main() -> None:
    import chromadb
    import numpy as np
    from chromadb.api.client import SharedSystemClient

    args = parse_args()
    configs = args.config or [""]
    table = build_table(2_000_000, C.CACHE / "scale-table-2000000.parquet")
    t0 = time.perf_counter()
    prompts = unique_prompts(table, args.prompts)
    enc = StandIn()
    vectors = np.concatenate([enc.embed_texts(prompts[s:s + 50_000]) for s in range(0, len(prompts), 50_000)])
    ids = [f"p{i:07d}" for i in range(len(prompts))]
    print(f"# bench/hnsw: {len(prompts):,} unique prompts of the 2M table as stand-in vectors ({StandIn.name}), "
          f"made in {time.perf_counter() - t0:.0f} s; chromadb {chromadb.__version__}; batch {args.batch}")
    print(f"# {C.machine()}")
    queries = random.Random(1).sample(sorted(C.SAMPLE_CSV.read_text().splitlines()[1:]), args.queries)
    qvecs = enc.embed_texts([q.split(",", 1)[-1][:200] or "a castle" for q in queries])
    exact = [exact_top(vectors, q) for q in qvecs]
    out: dict[str, Any] = {"prompts": len(prompts), "queries": len(queries), "batch": args.batch, "runs": []}
    rows = []
    for n, config_text in enumerate(configs):
        config = {"space": "cosine", **parse_config(config_text)}
        where = C.CACHE / f"hnsw-run-{n}"
        shutil.rmtree(where, ignore_errors=True)
        client = chromadb.PersistentClient(str(where), settings=chromadb.Settings(anonymized_telemetry=False))
        col = client.create_collection("prompts", configuration={"hnsw": config})
        tenth = max(1, len(ids) // 10)
        t0 = time.perf_counter()
        marks = []
        for s in range(0, len(ids), args.batch):
            col.add(ids=ids[s:s + args.batch], embeddings=vectors[s:s + args.batch])
            if (s // tenth) != ((s + args.batch) // tenth) or s + args.batch >= len(ids):
                marks.append((min(s + args.batch, len(ids)), time.perf_counter() - t0))
        add_s = time.perf_counter() - t0
        first = marks[0][0] / marks[0][1]
        last = (marks[-1][0] - marks[-2][0]) / (marks[-1][1] - marks[-2][1]) if len(marks) > 1 else first
        size_gb = sum(f.stat().st_size for f in where.rglob("*") if f.is_file()) / 2**30
        print(f"config {config_text or 'defaults'}: added {len(ids):,} in {add_s:.0f} s = {len(ids) / add_s:,.0f}/s "
              f"(first 10% {first:,.0f}/s, last 10% {last:,.0f}/s); {size_gb:.2f} GB on disk", flush=True)
        for ef in args.ef:
            # modify() is saved, but a loaded index keeps the ef it was loaded with (Chroma 1.5.9, measured: ef 10
            # and 800 gave the same recall in one process): reopened, the index loads with the new one.
            col.modify(configuration={"hnsw": {"ef_search": ef}})
            del col, client
            SharedSystemClient.clear_system_cache()
            client = chromadb.PersistentClient(str(where), settings=chromadb.Settings(anonymized_telemetry=False))
            col = client.get_collection("prompts")
            col.query(query_embeddings=qvecs[:1], n_results=10)  # loads the index
            times, hits, tied = [], 0, 0
            for q, (top, tenth_sim) in zip(qvecs, exact):
                t1 = time.perf_counter()
                got = col.query(query_embeddings=q[None, :], n_results=10, include=["distances"])
                times.append((time.perf_counter() - t1) * 1000)
                found = [int(i[1:]) for i in got["ids"][0]]
                hits += len(top & set(found))
                tied += sum(1 for d in got["distances"][0] if 1.0 - d >= tenth_sim - 1e-5)
            run = {"config": config_text or "defaults", "ef_search": ef, "add_rows_s": len(ids) / add_s,
                   "first_10pct_rows_s": first, "last_10pct_rows_s": last, "disk_gb": size_gb,
                   "recall_at_10": tied / (10 * len(queries)), "recall_at_10_by_id": hits / (10 * len(queries)),
                   "p50_ms": C.percentile(times, 50), "p95_ms": C.percentile(times, 95)}
            out["runs"].append(run)
            rows.append([run["config"], ef, round(run["add_rows_s"]), round(run["recall_at_10"], 3),
                         round(run["recall_at_10_by_id"], 3), round(run["p50_ms"], 2), round(run["p95_ms"], 2),
                         C.verdict(run["recall_at_10"] >= TARGET_RECALL)])
            print(f"  ef_search {ef}: recall@10 {run['recall_at_10']:.3f} (by id {run['recall_at_10_by_id']:.3f}), "
                  f"p50 {run['p50_ms']:.2f} ms, p95 {run['p95_ms']:.2f} ms", flush=True)
        del col, client
        SharedSystemClient.clear_system_cache()
        shutil.rmtree(where, ignore_errors=True)
    print(C.table(["config", "ef_search", "adds/s", "recall@10", "by id", "p50 ms", "p95 ms",
                   f"recall >= {TARGET_RECALL}"], rows))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
