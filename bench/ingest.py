"""Ingest throughput: Studio.ingest (read -> CLIP -> Chroma, overlapped) against its stages run alone.

Prompts: slices of the real 5000-prompt sample CSV. Images: part folders built from the 3 real sample
PNGs, replicated with small pixel changes, with a DiffusionDB part JSON. CLIP is the shape-true
ViT-B/32 (the real config, random weights: the compute of openai/clip-vit-base-patch32).

Each round runs every arm once on a new slice (arms interleaved, order alternating), so machine noise
hits all arms alike. Target: ingest >= 0.8 x the slower stage, judged on the median over rounds of
the ratio within a round (paired); the ratio of the totals is printed too.

    .venv/bin/python bench/ingest.py            # ~6-8 min on 2 cores
    .venv/bin/python bench/ingest.py --quick    # ~2 min

--feed: image ingest with the decode pool (Studio.ingest, ingest_workers auto or --workers) against the
serial path (ingest_workers 0: decoded one by one in the reader thread), same parts, interleaved; target
pool >= 1.6 x serial images/s. --encoder fast swaps the shape-true CLIP for one with ViT-B/32's input
(224 px) and a tiny tower, standing in for a GPU encoder that waits on decoding.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (sets the offline environment first)

TARGET = 0.8
FEED_TARGET = 1.6


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=1600, help="unique sample prompts in all (default 1600, max 5000)")
    p.add_argument("--images", type=int, default=320, help="images in all (default 320)")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds; each arm sees a new slice per round")
    p.add_argument("--batch-size", type=int, default=None, help="ingest batch (default: Settings.batch_size)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--clip", type=Path, default=None, help="CLIP folder (default: build the shape-true ViT-B/32)")
    p.add_argument("--only", choices=["prompts", "images"], help="run one part only")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (stores, part folders)")
    p.add_argument("--quick", action="store_true", help="400 prompts, 96 images, 4 rounds")
    p.add_argument("--feed", action="store_true", help="image ingest: decode pool against the serial path")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="--feed: pool sizes (default: auto)")
    p.add_argument("--encoder", choices=["shape-true", "fast"], default="shape-true", help="--feed: the CLIP")
    p.add_argument("--json", type=Path, default=None, help="--feed: write the figures here")
    args = p.parse_args()
    if args.quick:
        args.prompts, args.images, args.rounds = min(args.prompts, 400), min(args.images, 96), 4
    return args


# -- data ----------------------------------------------------------------------------------
def prompt_slices(total: int, rounds: int, folder: Path) -> list[tuple[Path, list[str]]]:
    """Real sample rows, first row per unique prompt, cut into `rounds` CSVs (same columns as the sample)."""
    from studio.search.store import normalise, prompt_id

    with open(C.SAMPLE_CSV, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        seen, rows = set(), []
        for row in reader:
            pid = prompt_id(row["prompt"])
            if normalise(row["prompt"]) and pid not in seen:
                seen.add(pid)
                rows.append(row)
    rows = rows[:total]
    out = []
    for r in range(rounds):
        part = rows[r * len(rows) // rounds : (r + 1) * len(rows) // rounds]
        path = folder / f"prompts-round{r}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(part)
        out.append((path, [row["prompt"] for row in part]))
    return out


def image_parts(total: int, rounds: int, folder: Path) -> list[Path]:
    """`rounds` DiffusionDB part folders (PNGs + part-XXXXXX.json) from the 3 real sample PNGs.
    Each copy differs in a few pixels (so no two files are equal) and keeps its source's real prompt,
    with its own seed: like DiffusionDB, where one prompt has several images."""
    import numpy as np
    from PIL import Image

    meta = json.loads((C.SAMPLE_IMAGES / "images.json").read_text(encoding="utf-8"))
    sources = [(np.asarray(Image.open(C.SAMPLE_IMAGES / name).convert("RGB")).copy(), entry["p"])
               for name, entry in sorted(meta.items())]
    samplers = ["k_lms", "k_euler_ancestral", "ddim", "plms", "k_euler"]
    parts = []
    for r in range(rounds):
        part = folder / f"part-{r + 1:06d}"
        part.mkdir(parents=True)
        mapping: dict[str, dict[str, Any]] = {}
        for i in range(r * total // rounds, (r + 1) * total // rounds):
            pixels, prompt = sources[i % len(sources)]
            pixels = pixels.copy()
            h, w, _ = pixels.shape
            pixels[(i * 7) % h, :: max(1, w // 64), i % 3] ^= 0x5A  # a sparse line of changed pixels
            pixels[: 1 + i % 5, : 1 + i % 7] = (i * 37) % 256
            name = hashlib.sha1(f"bench-image-{i}".encode()).hexdigest()[:32] + ".png"
            Image.fromarray(pixels).save(part / name, compress_level=1)
            mapping[name] = {"p": prompt, "se": 1000 + i, "c": 7.0 + i % 8, "st": 50, "sa": samplers[i % 5]}
        (part / f"{part.name}.json").write_text(json.dumps(mapping), encoding="utf-8")
        parts.append(part)
    return parts


# -- arms ----------------------------------------------------------------------------------
class Arm:
    def __init__(self, label: str, run: Callable[[int], int]) -> None:
        self.label, self.run = label, run
        self.items, self.seconds = 0, 0.0
        self.rounds: list[tuple[int, float]] = []  # (items, seconds) per round

    def time(self, r: int) -> None:
        start = time.perf_counter()
        items = self.run(r)
        seconds = time.perf_counter() - start
        self.items += items
        self.seconds += seconds
        self.rounds.append((items, seconds))

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else float("nan")


def run_rounds(rounds: int, encode: Arm, add: Arm, ingest: Arm, extra: list[Arm]) -> None:
    # Order alternates (encode must precede add: add writes the vectors encode made this round).
    for r in range(rounds):
        order = [encode, add, ingest] if r % 2 == 0 else [ingest, encode, add]
        for arm in extra + order:
            arm.time(r)


def report(kind: str, unit: str, encode: Arm, add: Arm, ingest: Arm, extra: list[Arm]) -> bool:
    """The verdict is on the median over rounds of ingest's rate / the slower stage's rate in that same
    round (a paired ratio: a load spike from other processes hits one round, not the verdict); the
    ratio of the totals is printed beside it."""
    arms = extra + [encode, add, ingest]
    print(C.table(["arm", unit, "seconds", f"{unit}/s", "per round /s"],
                  [(a.label, a.items, a.seconds, a.rate, " ".join(f"{i / s:.1f}" for i, s in a.rounds)) for a in arms]))
    paired = []
    for (ni, si), (ne, se), (na, sa) in zip(ingest.rounds, encode.rounds, add.rounds):
        paired.append((ni / si) / min(ne / se, na / sa))
    ratio = statistics.median(paired)
    slower = min(encode.rate, add.rate)
    serial = 1 / (1 / encode.rate + 1 / add.rate)
    print(f"{kind}: ingest / slower stage per round: {' '.join(f'{p:.2f}' for p in paired)}; median {ratio:.2f} "
          f"(target >= {TARGET}) -> {C.verdict(ratio >= TARGET)}")
    print(f"{kind}: totals: ingest {ingest.rate:.1f}/s; slower stage ({'encode' if encode.rate <= add.rate else 'add'}) "
          f"{slower:.1f}/s; ratio {ingest.rate / slower:.2f}; the stages back to back would give {serial:.1f}/s "
          f"(ratio {serial / slower:.2f})")
    return ratio >= TARGET


def bench_prompts(args: argparse.Namespace, tmp: Path, embedder: Any, batch: int) -> bool:
    from studio.config import Settings
    from studio.ingest.pipeline import IngestReport, count_prompts, first_rows, prompt_metadata
    from studio.studio import Studio
    from studio.ingest.sources import read_table
    from studio.search.store import PromptStore, open_client

    slices = prompt_slices(args.prompts, args.rounds, tmp)
    n = sum(len(texts) for _, texts in slices)
    print(f"\n## prompts: {n} unique real sample prompts in {args.rounds} rounds, batch {batch}")
    raw_store = PromptStore(open_client(tmp / "raw-prompts"), embedder.name, embedder.dim)
    studio = Studio(Settings(home=tmp / "studio-prompts", clip_model=embedder.name, offline=True, device="cpu",
                             batch_size=batch), embedder=embedder)
    # What the raw add writes: ingest's own ids, metadata and documents, in ingest's batch size.
    records = []
    for path, _ in slices:
        groups = list(first_rows(read_table(path), count_prompts(read_table(path), IngestReport(str(path)))))
        records.append(([g.id for g in groups], [prompt_metadata(g, "diffusiondb", None) for g in groups],
                        [g.first.prompt.strip() for g in groups]))
    vectors: dict[int, Any] = {}

    def encode(r: int) -> int:
        vectors[r] = embedder.embed_texts(records[r][2], batch_size=batch)
        return len(vectors[r])

    def add(r: int) -> int:
        ids, metas, docs = records[r]
        for s in range(0, len(ids), batch):
            raw_store.upsert("prompts", ids[s : s + batch], vectors[r][s : s + batch], metas[s : s + batch],
                             docs[s : s + batch])
        return len(ids)

    def ingest(r: int) -> int:
        rep = studio.ingest(str(slices[r][0]))
        assert rep.prompts_new == len(records[r][0]), rep.summary()
        return rep.prompts_new

    embedder.embed_texts(records[0][2][:batch], batch_size=batch)  # warm-up (first call allocates)
    arms = Arm("CLIP text encode (raw)", encode), Arm("Chroma add (raw)", add), Arm("Studio.ingest (CSV)", ingest)
    run_rounds(args.rounds, *arms, [])
    assert raw_store.count("prompts") == studio.store.count("prompts") == n
    return report("prompts", "prompts", *arms, [])


def bench_images(args: argparse.Namespace, tmp: Path, embedder: Any, batch: int) -> bool:
    from studio.config import Settings
    from studio.images import open_image
    from studio.ingest.pipeline import image_metadata, image_rows
    from studio.studio import Studio
    from studio.images import read_location
    from studio.ingest.sources import read_folder
    from studio.search.store import PromptStore, open_client

    start = time.perf_counter()
    parts = image_parts(args.images, args.rounds, tmp / "parts")
    rows = [list(image_rows(read_folder(p))) for p in parts]
    n = sum(map(len, rows))
    img_batch = max(1, batch // 2)  # what ingest_rows uses for images
    print(f"\n## images: {n} PNGs (the 3 real sample images, 512x704 and 640x640, varied) in {args.rounds} "
          f"part folders, batch {img_batch} (parts built in {time.perf_counter() - start:.1f} s)")
    raw_store = PromptStore(open_client(tmp / "raw-images"), embedder.name, embedder.dim)
    studio = Studio(Settings(home=tmp / "studio-images", clip_model=embedder.name, offline=True, device="cpu",
                             batch_size=batch), embedder=embedder)
    decoded: dict[int, list[Any]] = {r: [open_image(read_location(row.location)) for row in rows[r]]
                                     for r in range(args.rounds)}
    vectors: dict[int, Any] = {}

    def read(r: int) -> int:
        return len([open_image(read_location(row.location), name=row.image_name) for row in rows[r]])

    def encode(r: int) -> int:
        vectors[r] = embedder.embed_images(decoded[r], batch_size=img_batch)
        return len(vectors[r])

    def add(r: int) -> int:
        todo = rows[r]
        for s in range(0, len(todo), img_batch):
            chunk = todo[s : s + img_batch]
            raw_store.upsert("images", [x.image_name for x in chunk], vectors[r][s : s + img_batch],
                             [image_metadata(x, "diffusiondb") for x in chunk], [x.prompt.strip() for x in chunk])
        return len(todo)

    def ingest(r: int) -> int:
        rep = studio.ingest(str(parts[r]))
        assert rep.images_new == len(rows[r]) and not rep.failed, rep.summary()
        return rep.images_new

    embedder.embed_images(decoded[0][:img_batch], batch_size=img_batch)  # warm-up
    reader = Arm("read + decode PNG (raw, info)", read)
    arms = Arm("CLIP image encode (raw)", encode), Arm("Chroma add (raw)", add), Arm("Studio.ingest (part)", ingest)
    run_rounds(args.rounds, *arms, [reader])
    assert raw_store.count("images") == studio.store.count("images") == n
    print("(Studio.ingest of a part also stores its 3 prompts; reading + decoding is the reader stage, not a target)")
    return report("images", "images", *arms, [reader])


def fast_clip() -> Path:
    """ViT-B/32's image input (224 px, 32 px patches: the same decode and preprocessing) on a 2-layer, 32-wide
    tower: its forward costs next to nothing, as a GPU's does beside CPU decoding. Random weights, cached."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from tests.tiny import build_clip

    folder = C.CACHE / "clip-fast-224"
    if not (folder / "bench-built").is_file():
        build_clip(folder)  # the tokenizer and the tiny text tower
        small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        config = CLIPConfig.from_pretrained(str(folder))
        config.vision_config = type(config.vision_config)(image_size=224, patch_size=32, **small)
        CLIPModel(config).save_pretrained(str(folder))
        CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
            str(folder))
        (folder / "bench-built").write_text("224 px input, tiny towers, random weights\n")
    return folder


def bench_feed(args: argparse.Namespace, tmp: Path, embedder: Any, batch: int) -> bool:
    """Studio.ingest of the same part folders with the decode pool and without it (each arm its own store),
    interleaved round by round, order rotating; decode + preprocess alone and encoding alone beside them."""
    import torch

    from studio.config import Settings
    from studio.images import open_image, read_location
    from studio.ingest.feed import default_workers
    from studio.ingest.pipeline import image_rows
    from studio.ingest.sources import read_folder
    from studio.studio import Studio

    parts = image_parts(args.images, args.rounds, tmp / "parts")
    rows = [list(image_rows(read_folder(p))) for p in parts]
    img_batch = max(1, batch // 2)
    pools = args.workers or [default_workers(embedder.device)]
    print(f"\n## feed: {sum(map(len, rows))} PNGs in {args.rounds} parts, batch {img_batch}, pool sizes {pools} "
          f"(auto here: {default_workers(embedder.device)}), torch threads {torch.get_num_threads()}")

    def studio_arm(workers: int) -> Arm:
        studio = Studio(Settings(home=tmp / f"feed-w{workers}", clip_model=embedder.name, offline=True, device="cpu",
                                 batch_size=batch, ingest_workers=workers), embedder=embedder)

        def run(r: int) -> int:
            rep = studio.ingest(str(parts[r]))
            assert rep.images_new == len(rows[r]) and not rep.failed, rep.summary()
            return rep.images_new

        return Arm(f"Studio.ingest, {'serial (workers 0)' if not workers else f'pool of {workers}'}", run)

    pixels: dict[int, Any] = {}

    def decode(r: int) -> int:
        pixels[r] = torch.cat([embedder.preprocess_images([open_image(read_location(x.location), name=x.image_name)])
                               for x in rows[r]])
        return len(rows[r])

    def encode(r: int) -> int:
        return sum(len(embedder.encode_pixels(pixels[r][s : s + img_batch])) for s in range(0, len(rows[r]), img_batch))

    serial, pooled = studio_arm(0), [studio_arm(w) for w in pools]
    info = [Arm("decode + preprocess, 1 thread (info)", decode), Arm("CLIP encode_pixels alone (info)", encode)]
    decode(0), encode(0)  # warm-up
    ingest_arms = [serial, *pooled]
    for r in range(args.rounds):
        k = r % len(ingest_arms)
        for arm in info + ingest_arms[k:] + ingest_arms[:k]:
            arm.time(r)
    arms = info + ingest_arms
    print(C.table(["arm", "images", "seconds", "images/s", "per round /s"],
                  [(a.label, a.items, a.seconds, a.rate, " ".join(f"{i / s:.1f}" for i, s in a.rounds)) for a in arms]))
    figures: dict[str, Any] = {"encoder": args.encoder, "batch": img_batch, "torch_threads": torch.get_num_threads(),
                               "cores": __import__("os").cpu_count(), "target": FEED_TARGET,
                               "arms": {a.label: {"images": a.items, "seconds": a.seconds, "images_per_s": a.rate,
                                                  "rounds": [i / s for i, s in a.rounds]} for a in arms}}
    best = 0.0
    for arm in pooled:
        paired = [(ni / si) / (ns / ss) for (ni, si), (ns, ss) in zip(arm.rounds, serial.rounds)]
        ratio = statistics.median(paired)
        best = max(best, ratio)
        print(f"feed: {arm.label} / serial per round: {' '.join(f'{p:.2f}' for p in paired)}; median {ratio:.2f} "
              f"(totals {arm.rate:.1f} / {serial.rate:.1f} = {arm.rate / serial.rate:.2f}; target >= {FEED_TARGET}) "
              f"-> {C.verdict(ratio >= FEED_TARGET)}")
        figures.setdefault("ratios", {})[arm.label] = {"median_ratio": ratio, "totals_ratio": arm.rate / serial.rate, "paired": paired}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return best >= FEED_TARGET


def main() -> int:
    args = parse_args()
    C.set_threads(args.threads)
    if args.feed:
        return feed_main(args)
    from studio.config import Settings

    batch = args.batch_size or Settings().batch_size
    start = time.perf_counter()
    embedder = C.open_clip("ingest.py", args.clip, args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results: dict[str, bool] = {}
    try:
        if args.only in (None, "prompts"):
            results["prompts/s"] = bench_prompts(args, tmp, embedder, batch)
        if args.only in (None, "images"):
            results["images/s"] = bench_images(args, tmp, embedder, batch)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n## summary: " + "; ".join(f"{k} {C.verdict(v)}" for k, v in results.items())
          + f" (target: ingest >= {TARGET} x the slower stage); {time.perf_counter() - start:.0f} s in all")
    return 0 if all(results.values()) else 1


def feed_main(args: argparse.Namespace) -> int:
    from studio.config import Settings

    start = time.perf_counter()
    folder = fast_clip() if args.encoder == "fast" else args.clip
    embedder = C.open_clip("ingest.py --feed", folder, args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    try:
        ok = bench_feed(args, tmp, embedder, args.batch_size or Settings().batch_size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n## summary: feed {C.verdict(ok)} (target: pool >= {FEED_TARGET} x serial images/s); "
          f"{time.perf_counter() - start:.0f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
