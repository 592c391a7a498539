"""`python -m studio ...`: subcommands over the Studio service, each with --json."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from studio.cli_show import print_examples, show
from studio.config import Settings
from studio.errors import InputError, StudioError
from studio.search.results import Filters
from studio.studio import Studio
from studio.weights import EXTRAS

COMMANDS: dict[str, Callable[[Studio, argparse.Namespace], Any]] = {}
PROMPT_ID = re.compile(r"p-[0-9a-f]{24}")  # studio.search.store.prompt_id: rewrite --example tells ids from texts


def command(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("settings (override STUDIO_* variables)")
    g.add_argument("--home", help="data root: store and outputs (STUDIO_HOME, default ./data)")
    g.add_argument("--clip-model", help="CLIP path or hub id (STUDIO_CLIP_MODEL)")
    g.add_argument("--llm-model", help="GGUF path or hub file (STUDIO_LLM_MODEL)")
    g.add_argument("--sdxl-model", help="SDXL folder, .safetensors or hub id (STUDIO_SDXL_MODEL)")
    g.add_argument("--multilingual-model", help="text encoder for queries in other languages, distilled from the "
                   "CLIP (STUDIO_MULTILINGUAL_MODEL), e.g. sentence-transformers/clip-ViT-B-32-multilingual-v1")
    g.add_argument("--multilingual-queries", choices=["auto", "all"],
                   help="which queries it reads: auto (not English) or all (STUDIO_MULTILINGUAL_QUERIES)")
    g.add_argument("--chroma-url", help="use a Chroma server, e.g. http://127.0.0.1:8000 (STUDIO_CHROMA_URL)")
    g.add_argument("--device", choices=["auto", "cuda", "cpu"], help="(STUDIO_DEVICE)")
    g.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"],
                   help="weights' dtype: auto = fp16 on CUDA, fp32 on the CPU; fp32 = A1111's --no-half (STUDIO_PRECISION)")
    g.add_argument("--offload", choices=["auto", "none", "model", "sequential"],
                   help="SDXL's placement: model = --medvram, sequential = --lowvram (STUDIO_OFFLOAD)")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the UNet and VAE decoder; the first image takes minutes (STUDIO_COMPILE=1)")
    g.add_argument("--offline", action="store_true", default=None, help="never touch the network (STUDIO_OFFLINE=1)")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--nsfw", action="store_true", help="include results DiffusionDB scored NSFW (>= 0.5)")
    p.add_argument("--source", metavar="NAME", help="only records of this source: diffusiondb, generated, user, or a "
                   "prompt library's or dataset's name (`stats` lists what the store holds)")


def _generation(p: argparse.ArgumentParser, batch: bool = True) -> None:
    from studio.generate.request import PROFILES, SCHEDULERS

    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--seed", type=int, help="default: random (always printed and saved)")
    p.add_argument("--steps", type=int, help="default: 30 (fast profile: 4)")
    p.add_argument("--cfg", type=float, help="guidance scale; default 6 (fast profile: 0)")
    p.add_argument("--width", type=int, default=1024, help="multiple of 8 (default 1024)")
    p.add_argument("--height", type=int, default=1024, help="multiple of 8 (default 1024)")
    p.add_argument("--scheduler", help=f"one of: {', '.join(SCHEDULERS)} (default DPM++ 2M Karras)")
    p.add_argument("--profile", choices=list(PROFILES), default="standard",
                   help="fast: few-step models (SDXL-Turbo/Lightning): 4 steps, cfg 0, Euler a, trailing")
    if batch:
        p.add_argument("-n", type=int, default=1, help="how many images (seeds seed, seed+1, ...)")


def _request_fields(a: argparse.Namespace) -> dict[str, Any]:
    fields = dict(negative_prompt=a.negative, seed=a.seed, steps=a.steps, cfg=a.cfg, width=a.width,
                  height=a.height, scheduler=a.scheduler, profile=a.profile)
    if hasattr(a, "n"):
        fields["n"] = a.n
    return fields


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="python -m studio", description="Prompt Studio: local prompt memory.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("ingest", parents=[common], help="load prompts and images: DiffusionDB, a prompt table, a "
                       "`datasets` folder or hf:ORG/NAME, a folder of images from any tool")
    p.add_argument("source", help="a part folder or zip, a table (.parquet/.csv/.jsonl with a prompt column), a folder "
                                   "of images (A1111, ComfyUI, Fooocus, InvokeAI, NovelAI, ours, any), a datasets "
                                   "save_to_disk folder, hf:ORG/NAME[:split], or hub:2m:1-5 / hub:large:1-5 / "
                                   "hub:2m:metadata")
    p.add_argument("--limit", type=int, help="read only the first N rows (a quick taste)")
    p.add_argument("--source", dest="tag", default=None, metavar="NAME",
                   help="the source name to store (default: diffusiondb, a prompt library's file or folder name, "
                        "a hub dataset's NAME; a folder of images is the user's)")
    p.add_argument("--tag", dest="tag", help=argparse.SUPPRESS)  # the earlier name of --source
    p = sub.add_parser("search", parents=[common], help="an idea -> prompts (or images, with --target images)")
    p.add_argument("text")
    p.add_argument("--target", choices=["prompts", "images"], default="prompts")
    _filters(p)
    p = sub.add_parser("reverse", parents=[common], help="an image -> the prompts that likely made it")
    p.add_argument("image")
    _filters(p)
    p = sub.add_parser("similar", parents=[common], help="an image -> similar stored images")
    p.add_argument("image")
    _filters(p)
    sub.add_parser("stats", parents=[common], help="what the store holds")
    p = sub.add_parser("check", parents=[common], help="is the store whole (every vector readable, counts right, your "
                       "outputs/ stored)? exit 1 when not; --repair mends it")
    p.add_argument("--repair", action="store_true", help="re-embed unreadable records from their text and files, "
                   "rebuild a store whose database was lost, restore outputs/, recount")
    p = sub.add_parser("tokens", parents=[common], help="SDXL's CLIP token count of a prompt, and its 75-token chunks")
    p.add_argument("text")
    p = sub.add_parser("models", parents=[common], help="where each model loads from, and whether it is there")
    p.add_argument("--download", choices=["clip", "llm", "sdxl", "multilingual", *EXTRAS],
                   help="fetch this role's model once (online)")
    sub.add_parser("loras", parents=[common], help="the LoRAs in models/loras, for <lora:NAME:WEIGHT> in a prompt")
    p = sub.add_parser("generate", parents=[common], help="a prompt -> SDXL images, saved to outputs/ and stored")
    p.add_argument("prompt", help="A1111 syntax works: (word:1.3), (word), [word], BREAK, <lora:NAME:0.8>")
    _generation(p)
    p = sub.add_parser("compare", parents=[common], help="an idea: as typed vs best retrieved vs rewritten, one seed")
    p.add_argument("idea")
    _generation(p, batch=False)
    from studio import cli_grid

    cli_grid.add_parsers(sub, common, _generation)  # grid, expand
    p = sub.add_parser("rewrite", parents=[common], help="an idea -> a better prompt, written by the local LLM in "
                       "the style of the closest stored prompts")
    p.add_argument("idea")
    p.add_argument("-k", type=int, default=5, help="stored prompts shown to the LLM as style examples (default 5)")
    p.add_argument("-n", type=int, default=1, help="how many candidates (default 1)")
    p.add_argument("--seed", type=int, help="default: random")
    p.add_argument("--max-tokens", type=int, help="longest candidate in LLM tokens (default 80)")
    p.add_argument("--nsfw", action="store_true", help="allow examples DiffusionDB scored NSFW (>= 0.5)")
    p.add_argument("--note", help='a wish the LLM follows, e.g. "warmer light, no people"')
    p.add_argument("--example", action="append", default=[], metavar="ID_OR_TEXT",
                   help="show the LLM this example instead of the closest stored prompts: a stored prompt id "
                        "(p-…, from search --json) or a prompt's text; repeat the flag for more")
    p.add_argument("--lock", action="append", default=[], metavar="TERM",
                   help="a word or phrase every candidate keeps verbatim (repeat for more); the idea's LoRA tags, "
                        "(weighted:1.3) groups and \"quoted phrases\" are locked already")
    p = sub.add_parser("serve", parents=[common], help="start the web studio (same as python launch.py)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs credentials)")
    p.add_argument("--no-auth", action="store_true", help="serve beyond this machine without a password")
    p.add_argument("--no-sample", action="store_true", help="do not ingest the shipped sample into an empty store")
    p.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                   help="reverse proxies whose X-Forwarded-For names the client (default: none)")
    return parser


def _filters_of(studio: Studio, a: argparse.Namespace) -> Filters:
    """--source is any source the store holds (from the writers' counters); another name says which there are."""
    if a.source:
        held = sorted(studio.stats().sources())
        if a.source not in held:
            raise InputError(f"--source {a.source}: the store holds no records of that source. Use one of: "
                             f"{', '.join(held) or '(none yet: ingest something first)'}.")
    return Filters(nsfw=a.nsfw, source=a.source)


@command("search")
def _search(studio: Studio, a: argparse.Namespace) -> Any:
    return studio.search(a.text, a.target, a.k, _filters_of(studio, a))


@command("reverse")
def _reverse(studio: Studio, a: argparse.Namespace) -> Any:
    return studio.reverse(a.image, a.k, _filters_of(studio, a))


@command("similar")
def _similar(studio: Studio, a: argparse.Namespace) -> Any:
    return studio.similar_images(a.image, a.k, _filters_of(studio, a))


@command("ingest")
def _ingest(studio: Studio, a: argparse.Namespace) -> Any:
    report = studio.ingest(a.source, limit=a.limit, source_tag=a.tag)
    return {"summary": report.summary(), **vars(report)}


@command("generate")
def _generate(studio: Studio, a: argparse.Namespace) -> Any:
    return studio.generate(a.prompt, **_request_fields(a))


@command("compare")
def _compare(studio: Studio, a: argparse.Namespace) -> Any:
    fields = _request_fields(a)
    return studio.compare(a.idea, fields.pop("seed"), **fields)


@command("grid")
def _grid(studio: Studio, a: argparse.Namespace) -> Any:
    from studio.cli_grid import run_grid

    return run_grid(studio, a, _request_fields(a))


@command("expand")
def _expand(studio: Studio, a: argparse.Namespace) -> Any:
    from studio.cli_grid import run_expand

    return run_expand(studio, a)


@command("rewrite")
def _rewrite(studio: Studio, a: argparse.Namespace) -> Any:
    ids = [e for e in a.example if PROMPT_ID.fullmatch(e.strip())]
    fields = dict(k=a.k, n=a.n, filters=Filters(nsfw=a.nsfw), seed=a.seed, max_tokens=a.max_tokens, note=a.note,
                  example_ids=[e.strip() for e in ids], example_texts=[e for e in a.example if e not in ids],
                  locked=a.lock)
    if a.json:
        return studio.rewrite(a.idea, **fields)
    result, line_start = None, False
    for event in studio.rewrite_stream(a.idea, **fields):  # tokens to stdout as the model writes them
        if event.kind == "retrieved":
            print_examples(event.hits or [], event.chosen)
        elif event.kind == "start":
            retry = f" (retry: {event.reason})" if event.reason else ""
            print(f"\n{event.index + 1}:{retry} ", end="", flush=True)
            line_start = True
        elif event.kind == "token":
            print(event.text.lstrip() if line_start else event.text, end="", flush=True)
            line_start = line_start and not event.text.strip()
        elif event.kind == "done":
            result = event.result
    print()
    return result


@command("stats")
def _stats(studio: Studio, a: argparse.Namespace) -> Any:
    # Counters that lag (a killed ingest) are recounted now: a command that ends leaves no recount behind.
    return studio.stats(wait=True)


@command("check")
def _check(studio: Studio, a: argparse.Namespace) -> Any:
    from tqdm.auto import tqdm

    from studio.upkeep.check import check
    from studio.upkeep.repair import repair

    with tqdm(desc="vectors read", unit="record", dynamic_ncols=True) as bar:
        report = check(studio, full=True, tick=bar.update)
        if a.repair and not report.ok:
            bar.reset()
            report = repair(studio, report, tick=bar.update)
    return report


@command("tokens")
def _tokens(studio: Studio, a: argparse.Namespace) -> Any:
    from studio.tokens import describe

    return describe(a.text)


@command("models")
def _models(studio: Studio, a: argparse.Namespace) -> Any:
    if a.download in EXTRAS:
        from studio.weights import download_extra

        download_extra(a.download, studio.settings)
    elif a.download:
        from studio.weights import download

        download(a.download, studio.settings)
    return {"models": studio.models(), "loras": studio.loras(), "machine": studio.machine()}


@command("loras")
def _loras(studio: Studio, a: argparse.Namespace) -> Any:
    return {"folder": str(studio.settings.loras_dir), "loras": studio.loras()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            home=args.home, clip_model=args.clip_model, llm_model=args.llm_model, sdxl_model=args.sdxl_model,
            chroma_url=args.chroma_url, device=args.device, offline=args.offline, precision=args.precision,
            offload=args.offload, compile=args.compile, multilingual_model=args.multilingual_model, multilingual_queries=args.multilingual_queries,
        )
        if args.command == "serve":
            from studio.app import main as serve

            flags = [f for f, on in (("--share", args.share), ("--no-auth", args.no_auth),
                                     ("--no-sample", args.no_sample)) if on]
            if args.forwarded_allow_ips is not None:
                flags += ["--forwarded-allow-ips", args.forwarded_allow_ips]
            return serve(["--host", args.host, "--port", str(args.port), *flags], settings=settings)
        studio = Studio.from_settings(settings)
        out = COMMANDS[args.command](studio, args)
        show(args.command, out, args.json)
        return 1 if args.command == "check" and not out.ok else 0  # a damaged store fails scripts that ask
    except StudioError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a case we did not foresee: one line, the traceback in a file
        log = _log_traceback(args)
        if args.json:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "type": "UnexpectedError"}))
        print(f"error: {type(exc).__name__}: {str(exc)[:300]} (unexpected; the traceback is in {log}; "
              "what is stored is kept, and a rerun resumes)", file=sys.stderr)
        return 2


def _log_traceback(args: argparse.Namespace) -> str:
    """Write the current exception's traceback under STUDIO_HOME/logs; returns where."""
    import traceback

    try:
        home = Settings.from_env(home=getattr(args, "home", None)).home
        folder = Path(home) / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cli-error.log"
        path.write_text(traceback.format_exc(), encoding="utf-8")
        return str(path)
    except Exception:  # the home is unwritable too: the traceback goes to stderr after all
        traceback.print_exc()
        return "the lines above"
