"""A 4 x 4 grid: Studio.grid's wall time against the sum of raw pipeline calls for its 16 cells, then a reopen.

The same tiny SDXL pipeline object serves both arms (tests/tiny_sdxl.py, random weights, real diffusers code):
the raw arm calls `pipe(...)` once per cell with the cell's prompt, seed and scheduler; the studio arm runs
Studio.grid on a fresh STUDIO_HOME (nothing to reuse), so its time holds everything a grid does besides the
pipeline: the plan, the reuse lookup, CLIP scoring of each image, the PNG and the Chroma write-back (which runs
in a thread while the next cell denoises). Each round times both arms one after the other, their order swapped
every round (this machine is shared and its load moves); medians are compared. (Timing each raw call inside the
grid's callback, as this bench once did, would run it beside that background write and charge the write to the
raw arm.) Then the finished grid is reopened: its time, and how many cells it generated.

    .venv/bin/python bench/grid.py                    # tiny SDXL 256x256, 20 steps; tiny CLIP; ~3 min
    .venv/bin/python bench/grid.py --clip shape       # ViT-B/32-shaped CLIP scoring (random weights)
    .venv/bin/python bench/grid.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

IDEA = "a lighthouse on a cliff in a storm at dusk"
VARIANTS = ["a lighthouse on a cliff in a storm at dusk, oil painting, dramatic lighting",
            "a lighthouse on a cliff in a storm at dusk, 35mm film, grainy",
            "a lighthouse on a cliff in a storm at dusk, trending on artstation, concept art"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of both arms (default 3)")
    p.add_argument("--clip", choices=["tiny", "shape"], default="tiny",
                   help="tiny: the tests' CLIP (matches the tiny SDXL's scale); shape: ViT-B/32's shape")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()

    import torch

    from studio.config import Settings
    from studio.generate.generator import Generator
    from studio.studio import Studio
    from tests.tiny import build_clip
    from tests.tiny_sdxl import build_tiny_sdxl

    torch.manual_seed(0)
    pipe = build_tiny_sdxl(C.CACHE / "tiny-sdxl")
    clip = C.clip_dir() if args.clip == "shape" else C.CACHE / "tiny-clip"
    if args.clip == "tiny" and not (clip / "config.json").is_file():
        build_clip(clip)
    embedder = C.load_embedder(clip)
    generator = Generator(pipe, name="bench-tiny-sdxl", device="cpu")
    fields = dict(steps=args.steps, width=args.size, height=args.size, cfg=6.0, scheduler="Euler")
    print(f"# bench/grid.py: tiny SDXL {args.size}x{args.size}, {args.steps} steps, Euler, cfg 6; CLIP {clip.name}; "
          f"4 prompts x 4 seeds; {args.rounds} round(s), arm order swapped each round")
    print(f"# {C.machine()}")

    def raw_call(req: Any) -> float:
        """One raw pipeline call of a cell's request (the scheduler as the Generator makes it)."""
        scheduler = pipe.scheduler
        pipe.scheduler = generator.scheduler_for(req)
        start = time.perf_counter()
        out = pipe(prompt=req.prompt, negative_prompt=req.negative_prompt or None, width=req.width,
                   height=req.height, num_inference_steps=req.steps, guidance_scale=req.cfg,
                   generator=[torch.Generator("cpu").manual_seed(req.seed)], output_type="pil")
        seconds = time.perf_counter() - start
        pipe.scheduler = scheduler
        assert len(out.images) == 1
        return seconds

    def grid_arm(home: Path, seeds: int = 4, variants: list[str] = VARIANTS) -> tuple[float, Any, Any]:
        """Studio.grid on a fresh home, timed whole (nothing of the bench runs inside it)."""
        settings = Settings(home=home, models_dir=home / "models", clip_model=str(clip), offline=True, device="cpu")
        studio = Studio(settings, embedder=embedder, generator=generator)
        start = time.perf_counter()
        result = studio.grid(IDEA, seeds=seeds, candidates=0, variants=variants, seed=100, **fields)
        return time.perf_counter() - start, result, studio

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        warm_s, warm, _ = grid_arm(Path(tmp) / "warm", seeds=1, variants=[])  # loads, first calls, Chroma
        raw_call(warm.cells[0].request)
        studio_s, raw_s, requests = [], [], []
        for r in range(args.rounds):  # the arms one after the other, their order swapped each round (load moves)
            if r % 2 and requests:
                raw_s.append(sum(raw_call(req) for req in requests))
            seconds, result, studio = grid_arm(Path(tmp) / f"round-{r}")
            assert result.made == 16 and result.reused == 0
            studio_s.append(seconds)
            requests = [c.request for c in result.cells]  # the same 16 every round (seed 100 onwards)
            if not r % 2:
                raw_s.append(sum(raw_call(req) for req in requests))
        start = time.perf_counter()
        reopened = studio.reopen_grid(result.plan.grid_id)
        reopen_s = time.perf_counter() - start
    ratio = statistics.median(studio_s) / statistics.median(raw_s)
    rows = [["studio grid (16 cells)", statistics.median(studio_s), min(studio_s)],
            ["sum of 16 raw pipeline calls", statistics.median(raw_s), min(raw_s)],
            ["studio overhead per cell (s)", (statistics.median(studio_s) - statistics.median(raw_s)) / 16,
             (min(studio_s) - min(raw_s)) / 16],
            ["reopen (complete grid)", reopen_s, reopen_s]]
    print(C.table(["arm", "median s", "best s"], rows))
    rounds = [a / b for a, b in zip(studio_s, raw_s)]  # each round's two arms ran back to back: the same load
    print(f"studio / raw: {ratio:.3f} (target <= 1.1) {C.verdict(ratio <= 1.1)}; median of the rounds' own ratios "
          f"{statistics.median(rounds):.3f} ({', '.join(f'{r:.2f}' for r in rounds)}); warm-up grid {warm_s:.1f} s")
    print(f"reopen: {reopened.made} cells generated, {reopened.reused} reused, {reopen_s:.2f} s "
          f"(target: no generation) {C.verdict(reopened.made == 0 and reopened.reused == 16)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"studio_s": studio_s, "raw_s": raw_s, "ratio": ratio, "round_ratios": rounds,
                                               "reopen_s": reopen_s, "reopen_made": reopened.made,
                                               "reopen_reused": reopened.reused, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
