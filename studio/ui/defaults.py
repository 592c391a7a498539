"""Starting values of the page's controls: full SDXL at home, smaller and quicker in a Hugging Face Space."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from studio.config import Settings
from studio.studio import PROFILES

FEW_STEP_MODELS = ("turbo", "lightning", "hyper", "lcm")  # distilled SDXL: the fast profile suits them


@dataclass(frozen=True)
class UIDefaults:
    width: int = 1024
    height: int = 1024
    profile: str = "standard"
    steps: int = PROFILES["standard"].steps
    cfg: float = PROFILES["standard"].cfg
    sampler: str = PROFILES["standard"].scheduler
    results: int = 10  # search results per query
    space: bool = False  # running as a Hugging Face Space demo
    # Served beyond this machine: the Library ingests server paths only under these folders (empty: anywhere).
    ingest_roots: tuple[str, ...] = ()


def in_space(env: Mapping[str, str] | None = None) -> bool:
    """Hugging Face sets SPACE_ID in every Space."""
    return bool((os.environ if env is None else env).get("SPACE_ID"))


def ui_defaults(settings: Settings, env: Mapping[str, str] | None = None) -> UIDefaults:
    fast = any(word in settings.sdxl_model.lower() for word in FEW_STEP_MODELS)
    profile = "fast" if fast else "standard"
    prof = PROFILES[profile]
    if not in_space(env):
        return UIDefaults(profile=profile, steps=prof.steps, cfg=prof.cfg, sampler=prof.scheduler)
    # A shared (often ZeroGPU) Space: a GPU is lent for about a minute per call, so smaller images, fewer steps.
    side = 512 if fast else 768
    return UIDefaults(width=side, height=side, profile=profile, steps=prof.steps if fast else 20, cfg=prof.cfg,
                      sampler=prof.scheduler, results=8, space=True)
