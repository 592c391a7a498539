"""Cold start of the web app and the cost of the Gradio layer on a search, measured side by side.

1. Cold start: `python launch.py` on a fresh STUDIO_HOME -> first HTTP 200 (CLIP and the sample load
   in the background, so this is what a user waits for the page). `import gradio` alone is timed too.
2. Search round trip: the same Studio (shape-true CLIP ViT-B/32, the 5,000-prompt sample) called
   directly and through `gradio_client` against the app served in this process.

    .venv/bin/python bench/coldstart.py [--runs 3] [--queries 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c  # noqa: F401 - sets the offline environment first

import httpx

QUERIES = ["a lighthouse in a storm, oil painting", "cyberpunk city at night, neon", "portrait of an old sailor",
           "a cute robot reading a book", "mountain lake at sunrise, watercolor", "a dragon made of glass"]


def cold_start(runs: int, clip: Path) -> list[float]:
    from tests.appserver import free_port

    times = []
    for _ in range(runs):
        home = Path(tempfile.mkdtemp(prefix="coldstart-"))
        port = free_port()
        env = os.environ | {"STUDIO_HOME": str(home), "STUDIO_CLIP_MODEL": str(clip), "STUDIO_DEVICE": "cpu"}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port)], cwd=c.ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit("launch.py exited before answering")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            times.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(20)
    return times


def import_gradio(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gradio"], check=True)
        times.append(time.perf_counter() - start)
    return times


def round_trips(queries: int, clip: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    from gradio_client import Client

    from studio.config import Settings
    from studio.studio import Studio
    from studio.ui import build_ui
    from studio.ui.views import gallery

    home = c.CACHE / "coldstart-home"  # the embedded sample is kept between runs
    studio = Studio(Settings(home=home, clip_model=str(clip), offline=True, device="cpu", sample_dir=c.SAMPLE))
    if studio.is_empty():
        print("embedding the 5,000-prompt sample once (cached in", home, ")...", file=sys.stderr)
        studio.ingest_sample()
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=4).launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                                                   quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        texts = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(queries)]
        client.predict(texts[0], "prompts", False, 10, api_name="/search")  # warm both paths
        studio.search(texts[0], "prompts", 10)
        direct, work, ui, floor = [], [], [], []
        for text in texts:  # interleaved, so both see the same machine state
            start = time.perf_counter()
            studio.search(text, "prompts", 10)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()  # what the /search handler does: prompts, images, gallery pixels
            studio.search(text, "prompts", 10)
            gallery(studio, studio.search(text, "images", 10).results)
            work.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(text, "prompts", False, 10, api_name="/search")
            ui.append(time.perf_counter() - start)
            start = time.perf_counter()  # the transport alone: a handler that reads a few file names
            client.predict(api_name="/models")
            floor.append(time.perf_counter() - start)
        return direct, work, ui, floor
    finally:
        demo.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=30)
    args = ap.parse_args()
    clip = c.clip_dir()
    print(c.machine())
    starts, imports = cold_start(args.runs, clip), import_gradio(args.runs)
    med = statistics.median
    print("\nCold start (fresh STUDIO_HOME, shape-true CLIP loading in the background)")
    print(c.table(["measure", "median s", "min s", "max s", "runs"],
                  [["launch.py -> first HTTP 200", med(starts), min(starts), max(starts), len(starts)],
                   ["python -c 'import gradio'", med(imports), min(imports), max(imports), len(imports)]]))
    print(f"target < 5 s: {c.verdict(med(starts) < 5.0)}")
    direct, work, ui, floor = round_trips(args.queries, clip)
    ms = [[name, med(v) * 1000, c.percentile(v, 95) * 1000] for name, v in
          (("Studio.search (prompts)", direct), ("same work as /search (prompts + images + gallery)", work),
           ("gradio_client /search round trip", ui), ("gradio_client /models round trip (transport floor)", floor))]
    print(f"\nSearch, k=10, {len(direct)} queries interleaved, 5,000-prompt sample")
    print(c.table(["path", "median ms", "p95 ms"], ms))
    print(f"gradio overhead over the same work: {(med(ui) - med(work)) * 1000:.1f} ms median "
          f"({med(ui) / med(work):.2f}x); over Studio.search alone: {(med(ui) - med(direct)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
