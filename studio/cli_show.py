"""What the CLI prints: each command's result as text for a person, or as JSON with --json."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from studio.search.results import SearchResult


def print_results(result: SearchResult) -> None:
    if result.encoder == "multilingual":
        print("(query read by the multilingual encoder, STUDIO_MULTILINGUAL_MODEL)", file=sys.stderr)
    if not result.results:
        print("No results." + (f" ({result.hidden} hidden by filters; try --nsfw)" if result.hidden else ""))
    for i, hit in enumerate(result.results, 1):
        print(f"{i:2d}. [{1 - hit.distance:.3f}] {hit.prompt}")
        for s in hit.settings[:3]:
            shown = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("width", "height"))
            if shown:
                print(f"      {shown}")
        if hit.kind == "image" and hit.file:
            print(f"      image: {hit.id}")
    if result.hidden:
        print(f"({result.hidden} results hidden by the NSFW/source filters)")


def print_examples(hits: Sequence[Any], chosen: bool = False) -> None:
    if not hits:
        return
    print(f"Style examples (the {len(hits)} you chose):" if chosen else
          f"Style examples ({len(hits)} of the stored prompts closest to the idea, those with style words first):")
    for i, hit in enumerate(hits, 1):
        print(f"{i:2d}. [{1 - hit.distance:.3f}] {hit.prompt}")
    print("Rewriting...", end="", flush=True)


def print_rewrite(out: Any) -> None:
    """After the streamed text: the cleaned candidates, their CLIP tokens, settings, timings; notices on stderr."""
    print("\nRewritten:")
    for i, cand in enumerate(out.candidates, 1):
        tokens = f"{cand.tokens} CLIP tokens"  # always counted: the service counts with the shipped tokenizer
        print(f"{i:2d}. {cand.text or '(nothing usable)'}\n      {tokens}, seed {cand.seed}")
        if cand.added:
            print(f"      adds: {'; '.join(cand.added)}")
        if cand.restored:
            print(f"      put back (the model dropped or changed them): {'  '.join(cand.restored)}")
        if cand.warning:
            print(f"      warning: {cand.warning}")
    if out.dropped:
        print(f"Left out {len(out.dropped)} retrieved prompts: " +
              "; ".join(f"{d['id'][:10]} ({d['reason']})" for d in out.dropped[:5]))
    shown = ", ".join(f"{k} {v}" for k, v in out.suggested.items() if k != "from")
    if shown:
        print(f"Suggested settings (median of {out.suggested.get('from', 0)} neighbours' images): {shown}")
    t = out.timings
    print(f"{out.model} ({out.layout} layout): first token {t.first_token_s:.2f} s, {t.tokens_per_s:.1f} tokens/s, "
          f"{t.prompt_tokens} prompt tokens ({t.cached_tokens} cached), retrieval {t.retrieval_s:.2f} s, "
          f"load {t.load_s:.2f} s, total {t.total_s:.2f} s")
    if out.notice:
        print(f"note: {out.notice}", file=sys.stderr)


def show(name: str, out: Any, as_json: bool) -> None:
    """A command's result on stdout: JSON with --json, else as text for a person."""
    if as_json:
        data = out.to_dict() if hasattr(out, "to_dict") else out
        print(json.dumps(data, ensure_ascii=False, default=str))
    elif name in ("grid", "expand") and _show_grid(name, out):
        pass
    elif isinstance(out, SearchResult):
        print_results(out)
    elif hasattr(out, "describe"):  # GenerationResult, CompareResult
        print(out.describe())
    elif name == "rewrite":
        print_rewrite(out)
    elif name == "ingest":
        print(out["summary"])
    elif name == "check":
        print(out.summary())
    elif name == "stats":
        print(f"store: {out.store}")
        if not out.indexes:
            print("  (empty): 0 records ")
        for ix in out.indexes:
            unsure = "" if ix.exact else " (by source not exact: counters lag, a recount is due)"
            print(f"  {ix.collection}: {ix.count} records {ix.by_source or ''}{unsure}")
    elif name == "tokens":
        print(f"{out['count']} CLIP tokens (start and end included): SDXL reads them in {out['chunks']} "
              f"chunk{'s' if out['chunks'] > 1 else ''} of 75")
        if out["over"]:
            print(f"past the first chunk (read too, but not in the pooled embedding): {out['cut']}")
    elif name == "models":
        for m in out["models"]:
            print(f"{m['role']:5s} {m['ref'] or '(not set)'}\n      {m['status']}")
        print(f"loras {len(out['loras'])} in models/loras (python -m studio loras)")
        machine = out["machine"]
        card = f"{machine['card']}, {machine['total_gb']} GB ({machine['free_gb']} GB free)" if machine["card"] else "no CUDA GPU"
        print(f"gpu   {card}; precision {machine['precision']}, offload {machine['offload']}"
              f"{', compiled' if machine['compile'] else ''}\n      {machine['plan']}\n"
              f"      llama-cpp GPU offload: {'yes' if machine['llm_gpu_offload'] else 'no'}")
        if machine.get("fix"):
            print(f"      {machine['fix']}")
    elif name == "loras":
        print(f"{len(out['loras'])} LoRA(s) in {out['folder']}; use one in a prompt as <lora:NAME:0.8>")
        for lo in out["loras"]:
            print(f"  {lo['name']}")


def _show_grid(name: str, out: Any) -> bool:
    from studio.cli_grid import show as show_grid  # the grid's own printing, imported only when a grid is shown

    return show_grid(name, out)
