"""Generation speed: Generator.generate against the raw diffusers SDXL pipeline call, in one run.

CPU (default): the tiny SDXL of tests/tiny_sdxl.py (real diffusers code path, random weights) at a
small size; prints s/image and it/s of both arms, and the process's peak memory.
CUDA (--device cuda --shape-true): SDXL base's real UNet, VAE and text-encoder configs
(studio/generate/sdxl_config), random weights, fp16: the compute of stabilityai/stable-diffusion-xl-base-1.0.
Defaults there: 1024x1024, 30 steps, batch 1, DPM++ 2M Karras (the standard profile), cfg 6.
--compile adds torch.compile'd UNet arms next to the eager ones (the same weights, swapped in per run).
Published anchor (diffusers' "Accelerate inference of text-to-image diffusion models" tutorial): an
A100-80GB in bf16, 1024x1024, 30 steps: 3.3 s/image eager (SDPA), 2.5 s with torch.compile and fused QKV
projections. There is no published H100 figure; on other GPUs (and in fp16) it is a reference only.

Arms run interleaved, the order rotating each round, so machine noise hits all alike; the first run
of each arm (warm-up, and compilation) is timed apart and left out. it/s counts the steps after the
first, from step-end timestamps (the raw arm gets a callback that only appends a timestamp).

    .venv/bin/python bench/generate.py                                   # CPU, tiny SDXL, ~1 min
    .venv/bin/python bench/generate.py --device cuda --shape-true        # GPU, shape-true SDXL fp16
    .venv/bin/python bench/generate.py --device cuda --shape-true --compile
    .venv/bin/python bench/generate.py --shape-true --count-only         # parameter counts only (no RAM)
    .venv/bin/python bench/generate.py --shape-true --size 128 --steps 2 --rounds 1   # CPU fp32 check, ~16 GB RAM
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

# diffusers' published SDXL base figures (the "Accelerate inference of text-to-image diffusion models" tutorial):
# an A100-80GB (400 W), bf16, SDPA, 1024x1024, 30 steps, batch 1, seconds per image: 3.3 eager; 2.5 with
# torch.compile (max-autotune) and fused QKV projections. Not fp16, not an H100: elsewhere a reference only.
ANCHOR_GPU = "A100"
ANCHORS = {"eager": 3.3, "compiled": 2.5}
ANCHOR_LABEL = "diffusers' A100-80GB bf16 figures: 3.3 s eager, 2.5 s with torch.compile + fused QKV"
# Parameter counts of stabilityai/stable-diffusion-xl-base-1.0's components (from its weights).
REAL_PARAMS = {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
               "text_encoder_2": 694_659_840}
PROMPT = ("a lighthouse on a cliff in a storm at dusk, dramatic lighting, highly detailed, oil painting, "
          "trending on artstation")
NEGATIVE = "blurry, low quality"
GIB = 1024**3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape-true", action="store_true",
                   help="SDXL base's real configs with random weights (default: the tiny SDXL)")
    p.add_argument("--size", type=int, default=None, help="width = height (default: 1024 shape-true on cuda, "
                                                          "else 256 tiny / 128 shape-true on cpu)")
    p.add_argument("--steps", type=int, default=None, help="default 30 (cuda), 20 (cpu tiny), 2 (cpu shape-true)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="timed runs per arm (default 5 cuda, 10 cpu tiny, 1 cpu shape-true)")
    p.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"], default="auto",
                   help="auto: float16 on cuda, float32 on cpu (as studio.generate.loading.precision)")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd UNet")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (default; max-autotune-no-cudagraphs; max-autotune)")
    p.add_argument("--channels-last", action="store_true", help="UNet in channels_last (both arms)")
    p.add_argument("--no-upcast", action="store_true",
                   help="decode with the VAE in the pipeline's dtype, as with models/sdxl-vae-fp16-fix "
                        "(default: force_upcast, SDXL's own VAE decodes in float32, as studio does)")
    p.add_argument("--count-only", action="store_true", help="shape-true: build on the meta device, count "
                                                             "parameters against the real model's, exit")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    big = args.shape_true and args.device == "cuda"
    args.size = args.size or (1024 if big else 128 if args.shape_true else 256)
    args.steps = args.steps or (30 if args.device == "cuda" else 2 if args.shape_true else 20)
    args.rounds = args.rounds or (1 if args.shape_true and args.device == "cpu" else 5 if big else 10)
    return args


# -- building ------------------------------------------------------------------------------
def torch_dtype(args: argparse.Namespace) -> Any:
    import torch

    from studio.config import torch_dtype

    return torch_dtype(args.device) if args.dtype == "auto" else getattr(torch, args.dtype)


def count_params(device: str = "meta") -> dict[str, int]:
    """The shape-true components built on the meta device (no memory, no init): their parameter counts."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.generate.loading import SDXL_CONFIG

    cfg = str(SDXL_CONFIG)
    with torch.device(device):
        parts = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg, subfolder="unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(cfg, subfolder="vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder")),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder_2")),
        }
    return {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}


def build_pipe(args: argparse.Namespace, dtype: Any) -> tuple[Any, str, float]:
    """(pipeline on args.device in dtype, a label, seconds to build)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    start = time.perf_counter()
    if args.shape_true:
        from tests.tiny_sdxl import build_shape_true_sdxl

        folder = C.CACHE / "sdxl-tokenizers"
        pipe = build_shape_true_sdxl(device=args.device, dtype=dtype, tokenizer_dir=folder)
        label = "shape-true SDXL base 1.0 (studio/generate/sdxl_config, random weights)"
    else:
        from tests.tiny_sdxl import build_tiny_sdxl

        pipe = build_tiny_sdxl(C.CACHE / "tiny-sdxl").to(device=args.device, dtype=dtype)
        label = "tiny SDXL (tests/tiny_sdxl.py, random weights)"
    # As studio.generate.loading.load_pipeline: SDPA attention; SDXL's own VAE decodes in float32 under fp16.
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    if dtype == torch.float16:
        pipe.vae.register_to_config(force_upcast=not args.no_upcast)
    if args.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return pipe, label, time.perf_counter() - start


# -- timing --------------------------------------------------------------------------------
class Arm:
    def __init__(self, label: str, run: Callable[[], tuple[int, float]], unet: Any) -> None:
        self.label, self.run, self.unet = label, run, unet
        self.seconds: list[float] = []
        self.its: list[float] = []
        self.vram: list[int] = []
        self.warmup = 0.0


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(arm: Arm, pipe: Any, device: str) -> tuple[float, float, int]:
    import torch

    pipe.unet = arm.unet  # eager or compiled: the same weights
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    _, its = arm.run()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return seconds, its, peak


def its_of(stamps: list[float], start: float) -> float:
    if len(stamps) >= 2:
        return (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    return 1 / max(stamps[0] - start, 1e-9) if stamps else float("nan")


def main() -> int:
    args = parse_args()
    import torch

    if args.count_only:
        counts = count_params()
        print(C.table(["component", "parameters (built)", "real SDXL base 1.0", "same"],
                      [(k, v, REAL_PARAMS[k], "yes" if v == REAL_PARAMS[k] else "NO") for k, v in counts.items()]))
        print(f"total {sum(counts.values()):,} parameters; fp16 weights {sum(counts.values()) * 2 / GIB:.2f} GiB, "
              f"fp32 {sum(counts.values()) * 4 / GIB:.2f} GiB")
        return 0 if counts == REAL_PARAMS else 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA GPU here. Run it where one is (or use --device cpu).")
        return 2

    from studio.generate.request import GenerationRequest

    from studio.generate.generator import Generator

    dtype = torch_dtype(args)
    pipe, label, built = build_pipe(args, dtype)
    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in REAL_PARAMS}
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    print(f"# bench/generate.py: {label}, {str(dtype).replace('torch.', '')} on {gpu or args.device}; built in "
          f"{built:.1f} s; UNet {counts['unet']:,} parameters"
          + (" (= the real SDXL UNet)" if counts["unet"] == REAL_PARAMS["unet"] else ""))
    print(f"# {C.machine()}" + (f"; CUDA {torch.version.cuda}" if gpu else ""))
    weights = torch.cuda.memory_allocated() if gpu else 0

    generator = Generator(pipe, name="bench-sdxl", device=args.device)
    request = GenerationRequest(PROMPT, negative_prompt=NEGATIVE, seed=1234, steps=args.steps,
                                width=args.size, height=args.size, n=args.batch).validated()
    print(f"# {args.size}x{args.size}, {request.steps} steps, batch {request.n}, {request.scheduler}, cfg "
          f"{request.cfg}; VAE decode in {'float32 (force_upcast)' if pipe.vae.config.force_upcast and dtype == torch.float16 else str(dtype).replace('torch.', '')}")
    raw_scheduler = generator.scheduler_for(request)  # the same scheduler class and config as Generator's

    def via_generator() -> tuple[int, float]:
        result = generator.generate(request)
        assert len(result.images) == request.n and result.steps_done == request.steps
        return len(result.images), result.its

    def raw() -> tuple[int, float]:
        stamps: list[float] = []

        def stamp(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            stamps.append(time.perf_counter())
            return {}

        pipe.scheduler = raw_scheduler
        start = time.perf_counter()
        out = pipe(prompt=request.prompt, negative_prompt=request.negative_prompt or None, width=request.width,
                   height=request.height, num_inference_steps=request.steps, guidance_scale=request.cfg,
                   num_images_per_prompt=request.n,
                   generator=[torch.Generator("cpu").manual_seed(s) for s in request.seeds],
                   callback_on_step_end=stamp, output_type="pil")
        assert len(out.images) == request.n
        return len(out.images), its_of(stamps, start)

    eager = pipe.unet
    unets = {"eager": eager}
    if args.compile:
        unets[f"compiled ({args.compile_mode})"] = torch.compile(eager, mode=args.compile_mode)
    arms = [Arm(f"{who} / {kind}", fn, unet) for kind, unet in unets.items()
            for who, fn in (("raw pipeline", raw), ("Generator", via_generator))]

    for arm in arms:  # warm-up: the first call allocates (and compiles); timed apart, not counted
        arm.warmup = timed(arm, pipe, args.device)[0]
    print("# warm-up (first call of each arm; with --compile, compilation too): "
          + "; ".join(f"{a.label} {a.warmup:.1f} s" for a in arms))
    for r in range(args.rounds):
        order = arms[r % len(arms):] + arms[: r % len(arms)]
        for arm in order:
            seconds, its, peak = timed(arm, pipe, args.device)
            arm.seconds.append(seconds / request.n)
            arm.its.append(its)
            arm.vram.append(peak)
    pipe.unet = eager

    rows = []
    for a in arms:
        row = [a.label, len(a.seconds), statistics.median(a.seconds), min(a.seconds), statistics.median(a.its)]
        if gpu:
            row.append(max(a.vram) / GIB)
        rows.append(row)
    headers = ["arm", "runs", "s/image (median)", "s/image (best)", "it/s (median)"] + (["peak VRAM GiB"] if gpu else [])
    print()
    print(C.table(headers, rows))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    if gpu:
        print(f"VRAM: weights {weights / GIB:.2f} GiB after building; peak per run above (torch allocated; "
              f"reserved now {torch.cuda.memory_reserved() / GIB:.2f} GiB)")
    else:
        print(f"memory: peak RSS of this process {peak_rss:.2f} GiB (CPU: no per-arm peak)")
    results: dict[str, Any] = {"device": gpu or "cpu", "model": label, "dtype": str(dtype), "size": args.size,
                               "steps": request.steps, "batch": request.n, "scheduler": request.scheduler,
                               "arms": {}}
    for kind in unets:
        g = next(a for a in arms if a.label == f"Generator / {kind}")
        w = next(a for a in arms if a.label == f"raw pipeline / {kind}")
        ratio = statistics.median(g.seconds) / statistics.median(w.seconds)
        print(f"{kind}: Generator / raw s/image {ratio:.3f} (median of {len(g.seconds)} interleaved runs each)")
    standard = args.shape_true and args.size == 1024 and request.steps == 30 and request.n == 1
    if gpu and standard:
        same_class = ANCHOR_GPU in gpu
        for kind in unets:
            anchor = ANCHORS["compiled" if kind.startswith("compiled") else "eager"]
            g = statistics.median(next(a for a in arms if a.label == f"Generator / {kind}").seconds)
            print(f"anchor ({ANCHOR_LABEL}{'' if same_class else f'; {gpu} is not an A100: a reference only'}): "
                  f"Generator {kind} {g:.2f} s against {anchor} s -> {'BEAT' if g < anchor else 'MISS'} "
                  f"({g / anchor:.2f}x)")
    elif gpu:
        print(f"anchor ({ANCHOR_LABEL}; 1024x1024, 30 steps, batch 1) applies only to that run's settings")
    for a in arms:
        results["arms"][a.label] = {"s_per_image": a.seconds, "its": a.its, "warmup_s": a.warmup,
                                    "peak_vram_gib": [v / GIB for v in a.vram]}
    results["peak_rss_gib"] = peak_rss
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
