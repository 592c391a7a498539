"""The offer of real DiffusionDB pictures (hub:2m:1-2, 2,000 images with their prompts): its size said before it
starts, what is already downloaded (a stopped download resumes), and, offline, how to get them by hand."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from studio.config import Settings
from studio.ingest.sources import HUB_REPO, parse_hub

SPEC = "hub:2m:1-2"
# The hub's file sizes (huggingface.co/datasets/poloclub/diffusiondb, Git LFS): metadata.parquet is 195 MB; the 2M
# part zips hold 1,000 PNGs each, 1.6 TB over 2,000 parts, about 800 MB a part. Said when the hub is not asked.
KNOWN_BYTES = {"metadata.parquet": 195_000_000}
PART_BYTES = 800_000_000
SAMPLE_IMAGES = 3  # the shipped sample's images: a library with no more than these is offered the real ones


@dataclass(frozen=True)
class HubOffer:
    spec: str
    images: int
    files: tuple[str, ...]
    total_bytes: int
    cached_bytes: int  # already under STUDIO_HOME/cache/diffusiondb (a download stopped part-way resumes)
    offline: bool
    exact: bool  # sizes read from the hub (else DiffusionDB's published sizes)

    @property
    def left_bytes(self) -> int:
        return max(0, self.total_bytes - self.cached_bytes)

    @property
    def left_text(self) -> str:
        return size_text(self.left_bytes)

    def button(self) -> str:
        if self.offline:
            return f"Add {self.images:,} real DiffusionDB images (needs a connection)"
        return f"Add {self.images:,} real DiffusionDB images ({size_text(self.left_bytes)} to download)"

    def markdown(self) -> str:
        """What the offer says: the size before anything starts; offline, the steps by hand."""
        parts = " and ".join(f"`{f}`" for f in self.files)
        if self.offline:
            return (f"**Real pictures for Explore**: the shipped sample has only {SAMPLE_IMAGES} images. This studio "
                    f"is offline (`STUDIO_OFFLINE` or `HF_HUB_OFFLINE` is set), so it cannot fetch more. Either run "
                    f"`python -m studio ingest {self.spec}` once with a connection (about "
                    f"{size_text(self.total_bytes)}), or download {parts} from "
                    f"huggingface.co/datasets/{HUB_REPO} on another machine, then upload the part zips here (or type "
                    f"their folder's path) and press **Ingest**.")
        done = f"; {size_text(self.cached_bytes)} of it is already here" if self.cached_bytes else ""
        about = "" if self.exact else "about "
        return (f"**Real pictures for Explore**: {self.images:,} DiffusionDB images with their prompts and settings "
                f"({self.spec}): {about}{size_text(self.total_bytes)} to download from huggingface.co{done}. A stopped "
                f"download or ingest picks up where it left off when you press the button again.")


def size_text(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{max(1, round(n / 1e6))} MB"


def is_offline(settings: Settings) -> bool:
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")


def offer(settings: Settings, sizes: Callable[[list[str]], dict[str, int]] | None = None) -> HubOffer:
    """The offer as it stands: sizes from `sizes` (the hub's own, when online and asked) or DiffusionDB's published
    ones; what the cache already holds counts as downloaded (partly downloaded files count for what they hold)."""
    hub = parse_hub(SPEC)
    files = (hub.metadata_path, *(hub.zip_path(p) for p in hub.parts))
    offline = is_offline(settings)
    known = {f: KNOWN_BYTES.get(f, PART_BYTES) for f in files}
    exact = False
    if sizes is not None and not offline:
        try:
            got = sizes(list(files))
            if set(got) >= set(files):
                known, exact = {f: int(got[f]) for f in files}, True
        except Exception:  # noqa: BLE001 - the hub not answering: the published sizes are said instead
            pass
    cache = settings.home / "cache" / "diffusiondb"
    cached = sum(min(known[f], _held(cache, f)) for f in files)
    return HubOffer(SPEC, 1000 * len(hub.parts), files, sum(known.values()), cached, offline, exact)


def _held(cache: Path, name: str) -> int:
    """Bytes of `name` in the download cache: the finished file, or what a stopped download left."""
    done = cache / name
    if done.is_file():
        return done.stat().st_size
    # huggingface_hub (local_dir downloads) writes into .cache/huggingface/download/<folder>/<hash>.<etag>.incomplete,
    # <hash> the urlsafe base64 of sha1("<file name>.metadata"), and resumes from it.
    partial = cache / ".cache" / "huggingface" / "download" / Path(name).parent
    tag = base64.urlsafe_b64encode(hashlib.sha1(f"{Path(name).name}.metadata".encode()).digest()).decode()
    return sum(p.stat().st_size for p in partial.glob(f"{tag}.*.incomplete")) if partial.is_dir() else 0


def hub_sizes(files: list[str]) -> dict[str, Any]:
    """The files' sizes as the hub lists them (one request; raises when it cannot be reached)."""
    from huggingface_hub import HfApi

    infos = HfApi().get_paths_info(HUB_REPO, files, repo_type="dataset")
    return {i.path: i.size for i in infos if getattr(i, "size", None)}
