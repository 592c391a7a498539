"""Composition root: settings -> Studio -> UI -> launch (also the Hugging Face Space entry)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Before gradio or chromadb is imported: nothing phones home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from studio.config import Settings  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python launch.py", description="Start the Prompt Studio web app.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--no-sample", action="store_true", help="do not ingest the shipped sample into an empty store")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = parse_args(argv)
    settings = settings or Settings.from_env()

    from studio.firstrun import FirstRun
    from studio.service import Studio
    from studio.ui import build_ui

    studio = Studio(settings)
    first_run = FirstRun(studio, ingest_sample=not args.no_sample).start()
    demo = build_ui(studio, first_run)
    print(f"Prompt Studio: store {settings.chroma_url or settings.store_dir}", file=sys.stderr)
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                    show_error=True, inbrowser=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
