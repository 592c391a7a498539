"""Search latency over 100k stored prompts: Studio.search against raw CLIP + Chroma, NSFW filter included.

The store holds 100k unique prompts: the ~5100 real sample prompts, encoded by the shape-true CLIP
ViT-B/32 (real config, random weights), and variants of them (the prompt plus one or two artist
modifiers) whose vectors lie near their base's, as CLIP puts them (cosine ~0.95). prompt_nsfw is
Detoxify-like: high for prompts with NSFW words and for random others up to --nsfw-share (10%,
more than DiffusionDB's, to give the filter work), inherited by the variants, so NSFW prompts
cluster. Written straight through PromptStore.upsert and cached (--store): reruns skip the fill.
Query texts: short ideas, real sample prompts, and ideas with NSFW words (the post-filter's hard case).

Arms, interleaved query by query (the order rotates, so noise hits all alike):
  raw            ClipEmbedder.embed_texts + collection.query(n_results=k)
  studio         Studio.search, default Filters (NSFW hidden: the post-filter)
  studio nsfw    Studio.search, Filters(nsfw=True) (nothing hidden)
  naive where    embed + collection.query(where={"prompt_nsfw": {"$lt": 0.5}}): for contrast
Targets: studio / raw <= 1.15 (p50 and p95); studio / studio nsfw <= 2 (p50 and p95), over all
queries and over the NSFW-word ones. Then the store part alone (vectors encoded beforehand), for
information, including queries from inside NSFW clusters (the worst case for a post-filter).

    .venv/bin/python bench/search.py            # first run fills the store (~5 min), then ~3 min
    .venv/bin/python bench/search.py --quick
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

RAW_TARGET, FILTER_TARGET = 1.15, 2.0
SPARSE = 5  # the naive where (contrast only, slow) runs in every 5th round
NAIVE_WHERE = {"prompt_nsfw": {"$lt": 0.5}}
# Modifiers artists append (from the sample's own vocabulary): variations of the real prompts.
MODIFIERS = ["trending on artstation", "octane render", "8 k", "highly detailed", "by greg rutkowski",
             "concept art", "digital painting", "unreal engine", "sharp focus", "studio lighting",
             "cinematic", "by artgerm", "matte painting", "4 k", "intricate", "volumetric lighting",
             "by alphonse mucha", "photorealistic", "hyperrealistic", "illustration", "by wlop",
             "art nouveau", "oil on canvas", "dramatic lighting", "bokeh", "symmetrical", "golden hour"]
QUERIES = ["a cat astronaut floating in space", "portrait of a cyberpunk woman", "a castle on a hill at sunset",
           "an oil painting of a forest", "a robot made of flowers", "a dragon over a city, cinematic",
           "cute fox, studio ghibli", "a lighthouse in a storm", "a futuristic car", "an old wizard reading"]
NSFW_QUERIES = ["a nude woman on a beach, oil painting", "sexy girl in lingerie, photorealistic",
                "topless warrior woman, fantasy art", "bloody gore horror corpse", "busty pin-up model",
                "naked man statue, marble"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", type=Path, default=None, help="cached store folder (default: <cache>/search-store-<n>)")
    p.add_argument("-n", "--prompts", type=int, default=100_000, help="stored prompts (default 100000)")
    p.add_argument("--nsfw-share", type=float, default=0.10, help="share of prompts with prompt_nsfw >= 0.5")
    p.add_argument("--queries", type=int, default=150, help="timed rounds: queries per arm (default 150)")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--rebuild", action="store_true", help="fill the store again even if cached")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--clip", type=Path, default=None, help="CLIP folder (default: build the shape-true ViT-B/32)")
    p.add_argument("--quick", action="store_true", help="40 queries per arm (the store is the same 100k)")
    args = p.parse_args()
    if args.quick:
        args.queries = min(args.queries, 40)
    return args


# -- the store -----------------------------------------------------------------------------
STORE_VERSION = 2  # bump when the fill changes: a cached store of another version is rebuilt
# Words that make DiffusionDB's Detoxify prompt_nsfw score high (sexual content, gore).
NSFW_WORDS = re.compile(r"\b(nude|naked|nsfw|sexy|sex|breasts?|boobs|topless|lingerie|bikini|erotic|porn|"
                        r"nipples?|busty|cleavage|seductive|gore|bloody|corpse|thicc|underwear|hentai|ass|butt|"
                        r"horny|playboy|stripper|pin-?up)\b", re.I)
# How far a variant's vector lies from its base prompt's: the shape-true CLIP puts "prompt" and
# "prompt, trending on artstation" at cosine ~0.95 (measured); 1/sqrt(1 + s^2) = 0.95 at s ~ 0.33.
VARIANT_NOISE = (0.2, 0.45)


def sample_prompts() -> list[str]:
    """The sample's real prompts, unique by normalised text (5000-row CSV, then the 99-row one)."""
    from studio.search.store import normalise

    out: dict[str, str] = {}
    for name in ("metadata-2m-every400th-image_name-prompt.csv", "metadata-fullparams-promptsdvis-first99.csv"):
        with open(C.SAMPLE / name, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                text = (row["prompt"] or "").strip()
                if normalise(text):
                    out.setdefault(normalise(text), text)
    return list(out.values())


def nsfw_scores(base: list[str], share: float, rng: Any) -> Any:
    """A Detoxify-like prompt_nsfw per base prompt: high for prompts with NSFW words, then for random
    others until `share` of them score >= 0.5 (toxicity is not only words); the rest low (beta(1.2, 12)/2).
    Variants inherit their base's score (with jitter), so NSFW prompts cluster as in DiffusionDB."""
    import numpy as np

    flagged = np.array([bool(NSFW_WORDS.search(t)) for t in base])
    extra = max(0, int(share * len(base)) - int(flagged.sum()))
    others = np.flatnonzero(~flagged)
    flagged[rng.choice(others, size=min(extra, len(others)), replace=False)] = True
    return np.where(flagged, rng.uniform(0.55, 1.0, len(base)), rng.beta(1.2, 12.0, len(base)) * 0.5), flagged


def base_vectors(base: list[str], embedder: Any, cache: Path) -> Any:
    """The base prompts through the shape-true CLIP (once: ~3 min on 2 cores; cached as .npy)."""
    import numpy as np

    path = cache / f"base-vectors-{len(base)}.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    vectors = embedder.embed_texts(base, batch_size=64)
    np.save(path, vectors)
    print(f"  encoded {len(base):,} base prompts in {time.perf_counter() - start:.0f} s", flush=True)
    return vectors


def fill(store: Any, n: int, share: float, embedder: Any, folder: Path, seed: int = 0) -> dict[str, Any]:
    """n unique prompts: the real sample prompts (CLIP-encoded), then variants of them (the prompt plus
    one or two artist modifiers) whose vectors lie near their base's; ingest-like metadata. Returns facts."""
    import numpy as np

    from studio.search.store import prompt_id

    rng = np.random.default_rng(seed)
    base = sample_prompts()
    vectors = base_vectors(base, embedder, folder)
    scores, flagged = nsfw_scores(base, share, rng)
    items: dict[str, tuple[str, int]] = {}  # id -> (text, base index)
    i = 0
    while len(items) < n:  # round 0: the prompts as they are; then one or two modifiers more
        b, j = i % len(base), i // len(base)
        text = base[b]
        if j:
            text += ", " + MODIFIERS[j % len(MODIFIERS)]
            if j >= len(MODIFIERS):
                text += ", " + MODIFIERS[(j // len(MODIFIERS) + i) % len(MODIFIERS)]
        items.setdefault(prompt_id(text), (text, b))
        i += 1
    samplers = ["k_lms", "k_euler_ancestral", "ddim", "plms", "k_euler", "k_dpm_2"]
    start = time.perf_counter()
    rows = list(items.items())
    nsfw_total = 0
    for s in range(0, n, 5000):
        chunk = rows[s : s + 5000]
        m = len(chunk)
        bases = np.array([b for _, (_, b) in chunk])
        is_base = np.array([text == base[b] for _, (text, b) in chunk])
        noise = rng.standard_normal((m, store.dim)).astype(np.float32)
        noise *= (rng.uniform(*VARIANT_NOISE, m) / np.linalg.norm(noise, axis=1))[:, None]
        vecs = vectors[bases] + np.where(is_base[:, None], 0.0, noise)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        nsfw = np.clip(scores[bases] + np.where(is_base, 0.0, rng.normal(0, 0.03, m)), 0.0, 1.0)
        nsfw = np.where(flagged[bases], np.maximum(nsfw, 0.5), np.minimum(nsfw, 0.499))  # jitter keeps the side
        nsfw_total += int((nsfw >= 0.5).sum())
        metas = [{
            "seed": int(rng.integers(0, 2**32 - 1)), "cfg": float(rng.choice([7.0, 7.5, 9.0, 12.0, 15.0])),
            "steps": int(rng.choice([20, 30, 50, 150])), "sampler": samplers[int(rng.integers(len(samplers)))],
            "width": 512, "height": int(rng.choice([512, 640, 768])),
            "image_id": f"bench-{s + t:07d}.png", "prompt_nsfw": round(float(nsfw[t]), 4),
            "image_nsfw": round(float(rng.beta(1.0, 8.0)), 4), "source": "diffusiondb",
            "counts": json.dumps({f"part-{1 + (s + t) // 1000:06d}": 1 + (s + t) % 4}),
            "image_count": 1 + (s + t) % 4,
        } for t in range(m)]
        store.upsert("prompts", [pid for pid, _ in chunk], vecs, metas, [text for _, (text, _) in chunk])
        print(f"  filled {s + m:,}/{n:,} ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    nsfw_bases = [int(b) for b in np.flatnonzero(flagged)]
    return {"seconds": round(seconds, 1), "base_prompts": len(base), "nsfw_share": round(nsfw_total / n, 4),
            "keyword_bases": int(sum(bool(NSFW_WORDS.search(t)) for t in base)), "nsfw_bases": nsfw_bases}


def open_store(args: argparse.Namespace, embedder: Any) -> tuple[Any, Path, dict[str, Any]]:
    import shutil

    from studio.search.store import PromptStore, open_client

    folder = args.store or C.CACHE / f"search-store-{args.prompts}"
    marker = folder / "bench-store.json"
    want = {"version": STORE_VERSION, "prompts": args.prompts, "nsfw_share": args.nsfw_share,
            "clip": embedder.name, "dim": embedder.dim}
    facts = json.loads(marker.read_text()) if marker.is_file() else {}
    cached = facts.get("want") == want and not args.rebuild
    if not cached and (folder / "chroma").exists():
        shutil.rmtree(folder / "chroma")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    client = open_client(folder / "chroma")
    store = PromptStore(client, embedder.name, embedder.dim)
    if cached and store.count("prompts") == args.prompts:
        print(f"# store: cached {folder} ({args.prompts:,} prompts), opened in {time.perf_counter() - start:.1f} s")
        facts = facts["facts"]
    else:
        print(f"# store: filling {folder} with {args.prompts:,} prompts (once; cached for reruns)")
        facts = fill(store, args.prompts, args.nsfw_share, embedder, folder)
        marker.write_text(json.dumps({"want": want, "facts": facts}))
        print(f"# store: filled in {facts['seconds']:.0f} s ({args.prompts / facts['seconds']:,.0f} adds/s)")
    print(f"# store: {facts['base_prompts']:,} real base prompts ({facts['keyword_bases']} with NSFW words) + "
          f"variants; {facts['nsfw_share']:.1%} of all prompts have prompt_nsfw >= 0.5")
    return client, folder, facts


# -- timing --------------------------------------------------------------------------------
def run_arms(arms: dict[str, Callable[[Any], Any]], inputs: list[Any], rounds: int,
             sparse: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, float]]]:
    """Each round: one input through every arm, the order rotating; (input, ms) per arm. The `sparse`
    arms (the naive where: ~1 s a query here) run every SPARSE-th round only."""
    times: dict[str, list[tuple[Any, float]]] = {name: [] for name in arms}
    names = list(arms)
    for i in range(rounds):
        item = inputs[i % len(inputs)]
        for name in names[i % len(names):] + names[: i % len(names)]:
            if name in sparse and i % SPARSE:
                continue
            start = time.perf_counter()
            arms[name](item)
            times[name].append((item, (time.perf_counter() - start) * 1000))
    return times


def summarise(title: str, times: dict[str, list[tuple[Any, float]]], keep: Callable[[Any], bool] = lambda _: True
              ) -> dict[str, tuple[float, float]]:
    picked = {name: [ms for item, ms in t if keep(item)] for name, t in times.items()}
    stats = {name: (C.percentile(t, 50), C.percentile(t, 95)) for name, t in picked.items()}
    print(f"\n## {title}")
    print(C.table(["arm", "queries", "p50 ms", "p95 ms", "mean ms"],
                  [(name, len(t), *stats[name], sum(t) / len(t) if t else math.nan) for name, t in picked.items()]))
    return stats


def check(label: str, a: tuple[float, float], b: tuple[float, float], target: float | None) -> bool:
    r50, r95 = a[0] / b[0], a[1] / b[1]
    ok = target is None or (r50 <= target and r95 <= target)
    tail = f" (target <= {target}) -> {C.verdict(ok)}" if target else " (info)"
    print(f"{label}: p50 {r50:.2f}, p95 {r95:.2f}{tail}")
    return ok


def widening(studio: Any, vectors: list[Any], k: int, filters: Any) -> str:
    """How many Chroma queries and fetched neighbours the post-filter needed (counted, not timed)."""
    store, calls = studio.store, []
    plain = store.query

    def counting(kind: str, vector: Any, n: int, where: Any = None) -> Any:
        calls[-1].append(n)
        return plain(kind, vector, n, where)

    store.query = counting
    try:
        for v in vectors:
            calls.append([])
            studio.searcher.query("prompts", v, k, filters)
    finally:
        del store.query  # back to the class method
    spread: dict[str, int] = {}
    for c in calls:
        key = "+".join(map(str, c))
        spread[key] = spread.get(key, 0) + 1
    return ", ".join(f"{v}x n={key}" for key, v in sorted(spread.items(), key=lambda kv: -kv[1]))


def main() -> int:
    args = parse_args()
    C.set_threads(args.threads)
    import numpy as np

    from studio.config import Settings
    from studio.search.results import Filters
    from studio.studio import Studio

    start = time.perf_counter()
    embedder = C.open_clip("search.py", args.clip, args.quick)
    client, store_folder, facts = open_store(args, embedder)
    studio = Studio(Settings(home=store_folder / "home", clip_model=embedder.name, offline=True, device="cpu"),
                    embedder=embedder, client=client)
    col = studio.store.collections["prompts"]
    k, hide, show = args.k, Filters(), Filters(nsfw=True)
    include = ["documents", "metadatas", "distances"]

    def raw(text: str) -> Any:
        vector = embedder.embed_texts([text])[0]
        return col.query(query_embeddings=vector.reshape(1, -1), n_results=k, include=include)

    def naive(text: str) -> Any:
        vector = embedder.embed_texts([text])[0]
        return col.query(query_embeddings=vector.reshape(1, -1), n_results=k, where=NAIVE_WHERE, include=include)

    arms = {"raw (embed + query)": raw, "studio (NSFW hidden)": lambda t: studio.search(t, k=k, filters=hide),
            "studio nsfw=True": lambda t: studio.search(t, k=k, filters=show), "naive where": naive}
    # Same query texts in every arm: short ideas, real sample prompts (long: CLIP reads 77 tokens), and
    # ideas with NSFW words (with the filter on, most of their neighbours are hidden: the post-filter's hard case).
    base = sample_prompts()
    queries = QUERIES + base[::500][: len(QUERIES)] + NSFW_QUERIES
    queries = [queries[i] for i in np.random.default_rng(1).permutation(len(queries))]

    warm = time.perf_counter()
    run_arms(arms, queries, 3)  # the first query after opening loads the index: not timed
    print(f"# warm-up: {time.perf_counter() - warm:.1f} s; {len(queries)} query texts ({len(NSFW_QUERIES)} with NSFW "
          f"words), k={k}, {args.queries} timed queries per arm")
    for text in QUERIES[:1] + NSFW_QUERIES[:1]:
        hits = studio.search(text, k=k)
        naive_hits = naive(text)
        assert len(hits.results) == k and all((h.metadata.get("prompt_nsfw") or 0) < 0.5 for h in hits.results)
        same = len({h.id for h in hits.results} & set(naive_hits["ids"][0]))
        print(f"# check {text!r}: post-filter top-{k} all below 0.5 NSFW, {hits.hidden} hidden; "
              f"{same}/{k} of them in the naive where's top-{k}")
    vecs = {q: embedder.embed_texts([q])[0] for q in queries}
    plain_vecs = [vecs[q] for q in queries if q not in NSFW_QUERIES]
    print(f"# post-filter fetches, NSFW hidden: ideas and prompts: {widening(studio, plain_vecs, k, hide)}; "
          f"NSFW-word ideas: {widening(studio, [vecs[q] for q in NSFW_QUERIES], k, hide)}")

    times = run_arms(arms, queries, args.queries, sparse=("naive where",))
    stats = summarise(f"text -> prompts, end to end, {studio.store.count('prompts'):,} prompts, all queries", times)
    names = list(arms)
    ok_raw = check("studio / raw          ", stats[names[1]], stats[names[0]], RAW_TARGET)
    ok_filter = check("filtered / unfiltered", stats[names[1]], stats[names[2]], FILTER_TARGET)
    check("naive where / raw    ", stats[names[3]], stats[names[0]], None)
    nsfw_stats = summarise("the same runs, NSFW-word queries only", times, lambda q: q in NSFW_QUERIES)
    ok_nsfw = check("filtered / unfiltered", nsfw_stats[names[1]], nsfw_stats[names[2]], FILTER_TARGET)

    # The store part alone (vectors encoded beforehand): what CLIP's ~30-60 ms hides. Besides the query
    # texts, the vectors of stored NSFW base prompts: a query inside an NSFW cluster (the worst case).
    rng = np.random.default_rng(2)
    cluster = [f"cluster:{b}" for b in rng.choice(facts["nsfw_bases"], size=min(10, len(facts["nsfw_bases"])),
                                                   replace=False)]
    bases = base_vectors(base, embedder, store_folder)
    vecs.update({c: bases[int(c.split(":")[1])] for c in cluster})
    print(f"\n# post-filter fetches inside NSFW clusters: {widening(studio, [vecs[c] for c in cluster], k, hide)}")
    store_arms = {
        "raw query": lambda t: col.query(query_embeddings=vecs[t].reshape(1, -1), n_results=k, include=include),
        "studio _query (NSFW hidden)": lambda t: studio.searcher.query("prompts", vecs[t], k, hide),
        "studio _query nsfw=True": lambda t: studio.searcher.query("prompts", vecs[t], k, show),
        "naive where query": lambda t: col.query(query_embeddings=vecs[t].reshape(1, -1), n_results=k,
                                                 where=NAIVE_WHERE, include=include),
    }
    inputs = queries + cluster
    run_arms(store_arms, inputs, 2)
    store_times = run_arms(store_arms, inputs, args.queries, sparse=("naive where query",))
    names = list(store_arms)
    st = summarise("store part only, query texts (vectors encoded beforehand; info)", store_times,
                   lambda q: q in queries)
    check("studio / raw          ", st[names[1]], st[names[0]], None)
    check("filtered / unfiltered", st[names[1]], st[names[2]], None)
    check("naive where / raw    ", st[names[3]], st[names[0]], None)
    st = summarise("store part only, inside NSFW clusters (worst case; info)", store_times, lambda q: q in cluster)
    check("filtered / unfiltered", st[names[1]], st[names[2]], None)
    check("naive where / raw    ", st[names[3]], st[names[0]], None)

    print(f"\n## summary: studio/raw {C.verdict(ok_raw)} (<= {RAW_TARGET}); filtered/unfiltered "
          f"{C.verdict(ok_filter)} all queries, {C.verdict(ok_nsfw)} NSFW-word queries (<= {FILTER_TARGET}); "
          f"{time.perf_counter() - start:.0f} s in all")
    return 0 if ok_raw and ok_filter and ok_nsfw else 1


if __name__ == "__main__":
    sys.exit(main())
