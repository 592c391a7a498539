"""Rewrite speed: Studio.rewrite against a raw llama_cpp completion of the identical prompt, same run.

The LLM is the configured GGUF (STUDIO_LLM_MODEL / --llm-model), else the starter model
SmolLM2-135M-Instruct. Retrieval runs over the 99-row DiffusionDB sample encoded by the shape-true
CLIP ViT-B/32 (real config, random weights: the neighbours are not meaningful, the work is real).

Arms, interleaved rep by rep (the order alternates, ABBA, so load noise hits both alike):
  studio   Studio.rewrite(idea, k, n=1, seed): retrieval, the RAG prompt, streaming, cleaning, checks
  raw      Llama.create_completion(the same prompt text, same seed and sampling, same stops, stream=True)
Both on the same loaded llama_cpp.Llama, each after Rewriter.forget() (nothing cached), so decode
speed and first-token time compare like for like; the same seed gives the same tokens.
Target: studio tokens/s >= 0.9 x raw tokens/s (decode speed: tokens after the first / their time).

Then time to first token of Studio.rewrite over the same ideas in three cache states:
  cold            forget(): the whole prompt is evaluated
  prefix cached   warm(): the fixed instruction prefix is already in llama-cpp's cache (what a
                  previous rewrite of another idea leaves behind)
  same prompt     the previous call had the identical prompt (a repeat, or n > 1)

    .venv/bin/python bench/rewrite.py            # ~3 min with the starter model on 2 cores
    .venv/bin/python bench/rewrite.py --reps 4 --max-tokens 48
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

TARGET = 0.9
IDEAS = ["a cat sleeping on a sofa", "a lighthouse in a storm", "portrait of an old wizard reading",
         "a robot made of flowers", "a castle on a hill at sunset", "a fox in a snowy forest",
         "a dragon over a city", "an astronaut riding a horse"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=12, help="reps per arm (default 12; ideas rotate)")
    p.add_argument("-k", type=int, default=5, help="retrieved examples (default 5)")
    p.add_argument("--max-tokens", type=int, default=64, help="token budget per completion (default 64)")
    p.add_argument("--llm-model", help="a GGUF (default: STUDIO_LLM_MODEL, else the starter model)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: studio.rewrite.llamacpp.default_threads)")
    p.add_argument("--clip", type=Path, default=None, help="CLIP folder (default: build the shape-true ViT-B/32)")
    return p.parse_args()


def raw_completion(llm: Any, text: str, *, seed: int, temperature: float, max_tokens: int,
                   stop: list[str]) -> tuple[float, int, float]:
    """(first-token seconds, tokens generated, decode seconds after the first) of a plain streamed completion."""
    t0 = time.perf_counter()
    first = last = None
    out = ""
    for chunk in llm.create_completion(text, max_tokens=max_tokens, temperature=temperature, top_p=0.95, top_k=40,
                                       repeat_penalty=1.1, seed=seed, stop=stop, stream=True):
        piece = chunk["choices"][0]["text"]
        if not piece:
            continue
        last = time.perf_counter()
        first = first or last
        out += piece
    tokens = len(llm.tokenize(out.encode("utf-8"), add_bos=False, special=False)) if out else 0
    return (first - t0 if first else float("nan")), tokens, (last - first if first and last else 0.0)


def main() -> int:
    args = parse_args()
    from studio.config import Settings
    from studio.rewrite.llamacpp import default_threads
    from studio.rewrite.prompting import FALLBACK_EXAMPLES, pick_examples
    from studio.rewrite.rewriter import Rewriter
    from studio.studio import Studio

    clip = args.clip or C.clip_dir()
    home = Path(tempfile.mkdtemp(prefix="rewrite-bench-"))
    settings = Settings.from_env(home=home, clip_model=str(clip), llm_model=args.llm_model, offline=True)
    studio = Studio(settings, embedder=C.load_embedder(clip))
    studio.ingest(str(C.SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    threads = args.threads or default_threads()
    t0 = time.perf_counter()
    rewriter = Rewriter.load(settings, n_threads=threads, max_tokens=args.max_tokens, retries=0)
    load_s = time.perf_counter() - t0
    studio.rewriter = rewriter
    llm = rewriter.backend.llm  # the llama_cpp.Llama behind LlamaCppBackend: the raw arm calls it directly
    print(f"machine: {C.machine()}")
    print(f"llm: {rewriter.name} ({rewriter.layout} layout), {threads} threads, gpu={rewriter.gpu}, "
          f"loaded in {load_s:.2f} s; k={args.k}, max_tokens={args.max_tokens}, retries=0, {args.reps} reps")

    studio.rewrite(IDEAS[0], k=args.k, seed=0, max_tokens=8)  # warm-up: first-call allocations, page cache
    rows: dict[str, list[tuple[float, int, float]]] = {"studio": [], "raw": []}
    for rep in range(args.reps):
        idea, seed = IDEAS[rep % len(IDEAS)], 1000 + rep
        hits = studio.search(idea, "prompts", k=max(3 * args.k, args.k + 8)).results
        examples = pick_examples(hits, args.k)[1] or list(FALLBACK_EXAMPLES)
        built = rewriter.build(idea, examples)

        def arm_studio() -> None:
            rewriter.forget()
            res = studio.rewrite(idea, k=args.k, seed=seed)
            t = res.timings
            decode_s = (t.generated_tokens - 1) / t.tokens_per_s if t.tokens_per_s else 0.0
            rows["studio"].append((t.first_token_s, t.generated_tokens, decode_s))
            if res.candidates[0].raw.strip() and args.reps and rep == 0:
                print(f"example: {idea!r} -> {res.text!r}")

        def arm_raw() -> None:
            rewriter.forget()
            rows["raw"].append(raw_completion(llm, built.text, seed=seed, temperature=rewriter.temperature,
                                              max_tokens=args.max_tokens, stop=list(built.stop)))

        for arm in ((arm_studio, arm_raw) if rep % 2 == 0 else (arm_raw, arm_studio)):
            arm()

    def speed(arm: str) -> tuple[float, float, int]:
        per_rep = [(n - 1) / s for _, n, s in rows[arm] if n > 1 and s > 0]
        tokens = sum(n - 1 for _, n, s in rows[arm] if n > 1 and s > 0)
        total = sum(s for _, n, s in rows[arm] if n > 1 and s > 0)
        return statistics.median(per_rep), tokens / total, tokens

    s_med, s_all, s_tok = speed("studio")
    r_med, r_all, r_tok = speed("raw")
    ttft = {arm: statistics.median(r[0] for r in rows[arm]) for arm in rows}
    print()
    print(C.table(["arm", "median tok/s", "pooled tok/s", "decoded tokens", "median TTFT s (cold)"],
                  [["studio (Studio.rewrite)", s_med, s_all, s_tok, ttft["studio"]],
                   ["raw (create_completion)", r_med, r_all, r_tok, ttft["raw"]]]))
    ratio = s_all / r_all
    print(f"\nstudio / raw tokens/s: {ratio:.3f} pooled, {s_med / r_med:.3f} median "
          f"(target >= {TARGET}): {C.verdict(ratio >= TARGET)}")

    # Time to first token by cache state, Studio.rewrite over rotating ideas; order rotates per rep.
    states: dict[str, list[float]] = {"cold": [], "prefix cached": [], "same prompt": []}
    cached: dict[str, list[int]] = {k: [] for k in states}
    prefix_tokens = 0
    for rep in range(args.reps):
        idea, seed = IDEAS[(rep + 3) % len(IDEAS)], 2000 + rep
        order = list(states)[rep % 3:] + list(states)[:rep % 3]
        for state in order:
            if state == "cold":
                rewriter.forget()
            elif state == "prefix cached":
                rewriter.forget()
                prefix_tokens = rewriter.warm()
            else:
                studio.rewrite(idea, k=args.k, seed=seed, max_tokens=1)  # leaves this very prompt cached
            t = studio.rewrite(idea, k=args.k, seed=seed, max_tokens=4).timings
            states[state].append(t.first_token_s)
            cached[state].append(t.cached_tokens)
    print()
    print(C.table(["cache state", "median TTFT s", "p90 TTFT s", "cached prompt tokens (median)"],
                  [[s, statistics.median(v), C.percentile(v, 90), int(statistics.median(cached[s]))]
                   for s, v in states.items()]))
    cold, warm = statistics.median(states["cold"]), statistics.median(states["prefix cached"])
    print(f"\nthe fixed prefix is {prefix_tokens} tokens; keeping it cached changes median TTFT by "
          f"{(warm - cold) * 1000:+.0f} ms ({warm / cold:.2f}x)")
    rewriter.close()
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
