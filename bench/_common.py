"""Shared bench helpers: an offline environment, the shape-true CLIP, the sample, timing and tables."""

from __future__ import annotations

import os
import sys
import tempfile

# Before anything imports huggingface_hub, transformers or chromadb: no network, no telemetry, no bars.
for _key, _value in {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "STUDIO_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False", "DO_NOT_TRACK": "1", "GRADIO_ANALYTICS_ENABLED": "False",
    "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
}.items():
    os.environ[_key] = _value

import math  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "data" / "diffusiondb-sample"
SAMPLE_CSV = SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"  # 5000 real prompts
SAMPLE_IMAGES = SAMPLE / "images"
# Cached between runs (the CLIP folder, the 100k store, the image parts): reruns are quick.
CACHE = Path(os.environ.get("STUDIO_BENCH_CACHE") or Path(tempfile.gettempdir()) / "prompt-studio-bench")


def clip_dir(folder: Path | None = None) -> Path:
    """The shape-true CLIP ViT-B/32 (real config, random weights), built once (~10 s) and cached."""
    from tests.tiny import build_clip

    folder = Path(folder or CACHE / "clip-vit-base-patch32-shape")
    done = folder / "bench-built"  # written last: a half-built folder is rebuilt
    if not done.is_file():
        build_clip(folder, shape_true=True)
        done.write_text("shape-true ViT-B/32, random weights (tests/tiny.py)\n")
    return folder


def load_embedder(folder: Path) -> Any:
    from studio.config import Settings
    from studio.search.embed import ClipEmbedder

    return ClipEmbedder.load(Settings(clip_model=str(folder), offline=True, device="cpu"))


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for an empty sample (an arm with no such queries)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact fixed-width table; numbers right-aligned."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric))

    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(headers))]
    out = [line([str(h) for h in headers], numeric), line(["-" * w for w in widths], [False] * len(widths))]
    out += [line(r, numeric) for r in cells]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> str:
    import chromadb
    import torch
    import transformers

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (load {load}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
            f"chromadb {chromadb.__version__}")


def open_clip(bench: str, folder: Path | None, quick: bool) -> Any:
    """Load the CLIP a bench uses (default: the shape-true ViT-B/32) and print the bench's header."""
    import time

    start = time.perf_counter()
    folder = folder or clip_dir()
    embedder = load_embedder(folder)
    print(f"# bench/{bench}{' --quick' if quick else ''}: CLIP {folder.name} (shape-true ViT-B/32, "
          f"{embedder.dim}-d), loaded in {time.perf_counter() - start:.1f} s")
    print(f"# {machine()}")
    return embedder

