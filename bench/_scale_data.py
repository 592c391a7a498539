"""bench/scale.py's data: the stand-in encoder and the DiffusionDB-shaped metadata table (cached)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import _common as C

DIM = 512
MODIFIERS = ["trending on artstation", "octane render", "8 k", "highly detailed", "by greg rutkowski", "concept art",
             "digital painting", "unreal engine", "sharp focus", "studio lighting", "cinematic", "by artgerm",
             "matte painting", "4 k", "intricate", "volumetric lighting", "by alphonse mucha", "photorealistic",
             "hyperrealistic", "illustration", "by wlop", "art nouveau", "oil on canvas", "dramatic lighting",
             "bokeh", "symmetrical", "golden hour", "by james gurney", "pastel colors", "by moebius",
             "cel shaded", "ultra wide angle", "35mm film", "by rembrandt", "vaporwave", "isometric"]
SAMPLERS = [(8, 0.55), (4, 0.15), (1, 0.08), (2, 0.07), (3, 0.06), (5, 0.03), (6, 0.02), (7, 0.02), (9, 0.02)]



# -- the stand-in encoder -----------------------------------------------------------------------------
class StandIn:
    """Bag of hashed words: each word a fixed random unit vector, a text the normalised sum. Deterministic,
    ~50k texts/s, and a variant ("base, by wlop") lies near its base, so HNSW sees DiffusionDB-like clusters."""

    name, dim, fingerprint = "stand-in-bag-of-words-512", DIM, "stand-in"

    def __init__(self) -> None:
        import numpy as np

        self.np = np
        self.table: dict[str, Any] = {}
        # Vectors made ahead of a timed arm (remember()): the arm reads them back, so neither arm pays for
        # encoding and what is timed is the store side alone. forget() empties it between shards.
        self.made: dict[str, Any] = {}

    def remember(self, texts: list[str]) -> Any:
        vectors = self.embed_texts(texts)
        self.made.update(zip(texts, vectors))
        return vectors

    def forget(self) -> None:
        self.made.clear()

    def _word(self, word: str) -> Any:
        vec = self.table.get(word)
        if vec is None:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            vec = self.table[word] = self.np.random.default_rng(seed).standard_normal(DIM).astype("float32")
        return vec

    def embed_texts(self, texts: Any, batch_size: int = 64) -> Any:
        np = self.np
        if self.made and all(t in self.made for t in texts):
            return np.stack([self.made[t] for t in texts])
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            words = text.lower().replace(",", " ").split() or ["?"]
            out[i] = np.sum([self._word(w) for w in words[:40]], axis=0)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)

    def embed_images(self, images: Any, batch_size: int = 32) -> Any:
        np = self.np
        return self.embed_texts([hashlib.sha1(np.asarray(im.resize((8, 8))).tobytes()).hexdigest() for im in images])


# -- the table ----------------------------------------------------------------------------------------
def build_table(rows: int, path: Path) -> Path:
    """DiffusionDB's metadata.parquet shape, written in row groups (the bench itself stays small)."""
    if path.is_file():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    bases = sorted({r["prompt"].strip() for r in __import__("csv").DictReader(open(C.SAMPLE_CSV, encoding="utf-8"))
                    if r["prompt"].strip()})
    rng, prng = np.random.default_rng(0), random.Random(0)
    schema = pa.schema([("image_name", pa.string()), ("prompt", pa.string()), ("part_id", pa.uint16()),
                        ("seed", pa.uint32()), ("step", pa.uint16()), ("cfg", pa.float32()), ("sampler", pa.uint8()),
                        ("width", pa.uint16()), ("height", pa.uint16()), ("user_name", pa.string()),
                        ("timestamp", pa.timestamp("us", tz="UTC")), ("image_nsfw", pa.float32()),
                        ("prompt_nsfw", pa.float32())])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    writer = pq.ParquetWriter(tmp, schema)
    made, uniques, chunk = 0, 0, 100_000
    t0 = np.datetime64("2022-08-01T00:00:00", "us")
    while made < rows:
        n = min(chunk, rows - made)
        prompts: list[str] = []
        while len(prompts) < n:  # ~75% unique: a new prompt, then maybe a few repeats of it (its seeds)
            base = bases[uniques % len(bases)]
            k = prng.randrange(0, 4)
            prompt = base if uniques < len(bases) else ", ".join([base, *prng.sample(MODIFIERS, 1 + uniques % 3 + k)])
            prompt += f" #{uniques // (len(bases) * 40)}" if uniques >= len(bases) * 40 else ""
            uniques += 1
            prompts += [prompt] * (1 if prng.random() < 0.8 else prng.randrange(2, 4))
        prompts = prompts[:n]
        idx = np.arange(made, made + n)
        nsfw = rng.beta(0.5, 8, n).astype("float32")  # Detoxify-like: mostly near 0, ~8% over 0.5
        high = rng.random(n) < 0.08
        nsfw[high] = rng.uniform(0.5, 1.0, int(high.sum()))
        image_nsfw = rng.beta(0.6, 7, n).astype("float32")
        image_nsfw[rng.random(n) < 0.01] = 2.0
        codes, weights = zip(*SAMPLERS)
        table = pa.table({
            "image_name": [f"{hashlib.md5(str(i).encode()).hexdigest()}.png" for i in idx],
            "prompt": prompts, "part_id": (idx // 1000 + 1).astype("uint16"),
            "seed": rng.integers(0, 2**32, n, dtype="uint64").astype("uint32"),
            "step": np.where(rng.random(n) < 0.7, 50, rng.integers(10, 150, n)).astype("uint16"),
            "cfg": np.where(rng.random(n) < 0.6, 7.0, rng.uniform(1, 20, n)).astype("float32"),
            "sampler": rng.choice(codes, n, p=weights).astype("uint8"),
            "width": np.where(rng.random(n) < 0.8, 512, rng.choice([640, 768, 1024], n)).astype("uint16"),
            "height": np.where(rng.random(n) < 0.8, 512, rng.choice([640, 768, 1024], n)).astype("uint16"),
            "user_name": [hashlib.sha256(str(u).encode()).hexdigest() for u in rng.integers(0, 10_000, n)],
            "timestamp": t0 + (idx * 1_300_000).astype("timedelta64[us]"),
            "image_nsfw": image_nsfw, "prompt_nsfw": nsfw,
        }, schema=schema)
        writer.write_table(table, row_group_size=chunk)
        made += n
    writer.close()
    tmp.rename(path)
    return path


def shard_tables(table: Path, shards: int, folder: Path) -> list[Path]:
    """The table cut at part boundaries (a part's counts are set by one shard, as a real part zip's are)."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    whole = pq.read_table(table)
    per = -(-whole.num_rows // shards // 1000) * 1000
    paths = []
    for i in range(shards):
        path = folder / f"shard-{i:02d}.parquet"
        if not path.is_file():
            pq.write_table(whole.slice(i * per, per), path)
        paths.append(path)
    return [p for p in paths if pq.ParquetFile(p).metadata.num_rows]
