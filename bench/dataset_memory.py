"""Memory of a `datasets` ingest: a save_to_disk dataset of N images and one of 10 x N, each ingested in a fresh
process, side by side: peak anonymous memory (what the process holds) and file-backed pages (the memory-mapped
Arrow files, which the kernel can drop). Target: 10 x the rows costs at most 1.25 x the anonymous peak.

The CLIP is the tiny one of the tests (memory, not speed, is measured here); images are 96 x 96 noise PNGs.

    .venv/bin/python bench/dataset_memory.py            # 500 and 5,000 images, ~2 min on 2 cores
    .venv/bin/python bench/dataset_memory.py --quick    # 200 and 2,000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

TARGET = 1.25
_CHILD = """
import json, sys, threading, time
sys.path.insert(0, {root!r})
from pathlib import Path
from studio.config import Settings
from studio.search.embed import ClipEmbedder
from studio.studio import Studio
s = Settings(home=Path({home!r}), clip_model={clip!r}, offline=True, device="cpu")
studio = Studio(s, embedder=ClipEmbedder.load(s))
peak, done = {{"RssAnon": 0, "RssFile": 0}}, threading.Event()
def poll():
    while not done.is_set():
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in peak:
                peak[key] = max(peak[key], int(line.split()[1]) // 1024)
        time.sleep(0.05)
threading.Thread(target=poll, daemon=True).start()
start = time.perf_counter()
report = studio.ingest({source!r})
done.set()
print(json.dumps({{"s": time.perf_counter() - start, "images": report.images_new, **peak}}))
"""


def make(n: int, folder: Path) -> Path:
    """N rows: a prompt, a seed, a 96 x 96 noise PNG (built once, cached)."""
    if (folder / "dataset_info.json").is_file():
        return folder
    import datasets
    import numpy as np
    from PIL import Image

    def rows():
        rng = np.random.default_rng(n)
        for i in range(n):
            yield {"prompt": f"prompt {i}, " + "detail " * (i % 20), "seed": i,
                   "image": Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))}

    feats = datasets.Features({"prompt": datasets.Value("string"), "seed": datasets.Value("int64"),
                               "image": datasets.Image()})
    datasets.Dataset.from_generator(rows, features=feats, cache_dir=str(folder) + ".cache").save_to_disk(str(folder))
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=500, help="the smaller dataset's rows (the other has 10 x)")
    p.add_argument("--quick", action="store_true", help="200 and 2,000 rows")
    a = p.parse_args()
    small = 200 if a.quick else a.rows
    from tests.tiny import build_clip

    clip = C.CACHE / "tiny-clip-datasets"
    if not (clip / "config.json").is_file():
        build_clip(clip)
    print(f"# bench/dataset_memory{' --quick' if a.quick else ''}: tiny CLIP, 96 x 96 PNGs\n# {C.machine()}")
    results = []
    for n in (small, 10 * small):
        folder = make(n, C.CACHE / f"dataset-{n}")
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        with tempfile.TemporaryDirectory() as home:
            code = _CHILD.format(root=str(C.ROOT), home=home, clip=str(clip), source=str(folder))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        results.append([n, round(size, 1), got["images"], round(got["s"], 1), got["RssAnon"], got["RssFile"]])
    print(C.table(["rows", "dataset MB", "images stored", "s", "anon peak MB", "file-backed peak MB"], results))
    ratio = results[1][4] / results[0][4]
    print(f"anonymous peak, 10 x the rows: {ratio:.2f} x (target <= {TARGET}) {C.verdict(ratio <= TARGET)}")


if __name__ == "__main__":
    main()
