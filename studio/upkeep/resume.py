"""Finishing at start what a stop cut off: write-backs whose PNGs were saved but whose records were not all
stored (their markers in outputs/.pending/). The first run's sample load resumes in studio.firstrun."""

from __future__ import annotations

from typing import Any

from studio.search import counts
from studio.upkeep.check import by_model, studio_key
from studio.upkeep.repair import recount_outputs, restore_outputs


def finish_write_backs(studio: Any) -> str | None:
    """Store every PNG in outputs/ that is missing (ingest converges: stored ones are not read again), then set each
    prompt's count of your images from the image records: a crash between a prompt's update and its image's add
    left one counted and not stored. Returns what was done, in words."""
    said = restore_outputs(studio)
    cols = by_model(studio.client).get(studio_key(studio), {})
    if {"prompts", "images"} <= cols.keys():
        with counts.LOCK:
            recount_outputs(cols["prompts"], cols["images"])
            for col in cols.values():
                counts.recount(col)
    return said
