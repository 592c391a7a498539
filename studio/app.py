"""The web app's composition root: settings -> Studio -> UI -> served (launch.py and `python -m studio
serve` call main(); launch.py is also the Hugging Face Space entry)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Before gradio or chromadb is imported: nothing phones home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from studio.config import Settings  # noqa: E402

MAX_UPLOAD = "25mb"  # a 4K PNG is ~20 MB; anything larger is not an image to search with
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch.py", description="Start the Prompt Studio web app.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs credentials)")
    p.add_argument("--no-auth", action="store_true", help="serve beyond this machine without a password (not advised)")
    p.add_argument("--no-sample", action="store_true", help="do not ingest the shipped sample into an empty store")
    p.add_argument("--forwarded-allow-ips", default=os.environ.get("STUDIO_FORWARDED_ALLOW_IPS", ""),
                   help="the reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names "
                        "the client, for the login's rate limit; default none: the client is the socket's peer")
    return p.parse_args(argv)


def credentials(args: argparse.Namespace, env: dict[str, str]) -> tuple[str, str] | None:
    """STUDIO_AUTH=user:password; required when the page is reachable from other machines, except in a
    Hugging Face Space (SPACE_ID set), where the Space's own visibility decides who may open it."""
    raw = env.get("STUDIO_AUTH", "")
    if raw:
        user, sep, password = raw.partition(":")
        if not (sep and user and password):
            raise SystemExit("STUDIO_AUTH must look like user:password.")
        return user, password
    in_space = bool(env.get("SPACE_ID")) and not args.share
    if (args.host not in LOOPBACK or args.share) and not args.no_auth and not in_space:
        raise SystemExit(
            f"Refusing to serve on {'a public share link' if args.share else args.host} without a password: "
            "anyone who can reach it could use your GPU and read your library. Set STUDIO_AUTH=user:password, "
            "or pass --no-auth if this network is yours alone."
        )
    return None


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = parse_args(argv)
    auth = credentials(args, dict(os.environ))
    from studio.gate import trust_forwarded_from

    trust_forwarded_from(args.forwarded_allow_ips)  # before Gradio makes its uvicorn server
    settings = settings or Settings.from_env()
    # Gradio keeps the images it shows in its cache: keep that cache with the user's data.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.home / "cache" / "gradio"))

    from dataclasses import replace

    from studio.config import PROJECT_ROOT
    from studio.errors import StudioError
    from studio.firstrun import FirstRun, use_prebuilt_store
    from studio.studio import Studio
    from studio.ui import build_ui, page_options
    from studio.ui.defaults import ui_defaults

    if not args.no_sample and use_prebuilt_store(settings):
        print(f"Prompt Studio: copied the prebuilt sample index into {settings.store_dir}", file=sys.stderr)
    studio = Studio.from_settings(settings)
    try:  # one writer per embedded store, for the app's whole life (studio.search.lock)
        studio.claim_store()
    except StudioError as exc:
        print(f"Prompt Studio: {exc}", file=sys.stderr)
        return 2
    first_run = FirstRun(studio, ingest_sample=not args.no_sample)
    defaults = ui_defaults(settings)
    if args.host not in LOOPBACK or args.share:  # others can reach the page: typed paths stay in our folders
        roots = dict.fromkeys(str(p) for p in (settings.home, settings.models_dir, PROJECT_ROOT / "data"))
        defaults = replace(defaults, ingest_roots=tuple(roots))
    demo = build_ui(studio, first_run, defaults)
    print(f"Prompt Studio: store {settings.chroma_url or settings.store_dir}", file=sys.stderr)
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    app_kwargs: dict = {}
    if auth:  # every endpoint behind the login (Gradio leaves some open), and wrong passwords rate-limited
        from starlette.middleware import Middleware

        from studio.gate import LoginGate

        app_kwargs["middleware"] = [Middleware(LoginGate)]
    demo.queue(default_concurrency_limit=4).launch(
        app_kwargs=app_kwargs,
        server_name=args.host, server_port=args.port, share=args.share, auth=auth, show_error=True,
        inbrowser=False, max_file_size=MAX_UPLOAD,
        # Only generated images and the shipped sample may be fetched as files; nothing else on disk.
        allowed_paths=[str(d) for d in settings.served_dirs],
        prevent_thread_lock=True, **page_options(),
    )
    if not settings.chroma_url:  # a CLI command on this store hands its ingest to this app, or says where it runs
        from studio.search import lock

        lock.announce(settings.store_dir, demo.local_url or f"http://{args.host}:{args.port}/")
    # Only now: loading CLIP (torch, transformers) competes for the CPU and the GIL, and the page comes first.
    first_run.start()
    demo.block_thread()
    return 0

