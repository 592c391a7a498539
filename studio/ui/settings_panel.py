"""The generation settings both Create and Compare show: profile, sampler, seed, SDXL's sizes as presets
(typed sizes snap to multiples of 8), steps and CFG; and how a settings dict fills them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.studio import MAX_CFG, MAX_SIDE, MAX_STEPS, MIN_SIDE, PROFILES, SCHEDULERS, SDXL_SIZES
from studio.ui.defaults import UIDefaults

CUSTOM = "custom"


def size_label(w: int, h: int) -> str:
    return f"{w}×{h}"


PRESETS = [size_label(w, h) for w, h in SDXL_SIZES] + [CUSTOM]


def preset_of(width: Any, height: Any) -> str:
    try:
        label = size_label(int(width), int(height))
    except (TypeError, ValueError):
        return CUSTOM
    return label if label in PRESETS else CUSTOM


def snap(value: Any) -> int | None:
    """A typed side -> the nearest multiple of 8 within SDXL's range (None: not a number)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return int(min(MAX_SIDE, max(MIN_SIDE, round(v / 8) * 8)))


@dataclass
class SettingsPanel:
    profile: gr.Radio
    sampler: gr.Dropdown
    seed: gr.Number
    preset: gr.Dropdown
    width: gr.Slider
    height: gr.Slider
    steps: gr.Slider
    cfg: gr.Slider

    @property
    def fillable(self) -> list[Any]:
        """What a settings dict fills (fill_values), in this order."""
        return [self.seed, self.steps, self.cfg, self.width, self.height, self.sampler, self.profile, self.preset]

    def fill_values(self, values: dict[str, Any], with_seed: bool = True) -> list[Any]:
        """Updates for `fillable` from for_sdxl()'s dict: what it lacks stays as it is."""
        v = values or {}
        w, h = v.get("width"), v.get("height")
        return [v["seed"] if with_seed and "seed" in v else gr.skip(),
                v.get("steps", gr.skip()), v.get("cfg", gr.skip()), w or gr.skip(), h or gr.skip(),
                v.get("sampler", gr.skip()),
                v["profile"] if v.get("profile") in PROFILES else gr.skip(),
                preset_of(w, h) if w and h else gr.skip()]


def settings_panel(defaults: UIDefaults, seed_extra: Any = None) -> SettingsPanel:
    """Build the controls inside the caller's accordion, and wire presets, snapping and profiles.
    seed_extra: a callable that adds controls beside the seed (Create's ♻ Last seed)."""
    with gr.Row():
        profile = gr.Radio(list(PROFILES), value=defaults.profile, label="Profile (fast: Turbo/Lightning)")
        sampler = gr.Dropdown(list(SCHEDULERS), value=defaults.sampler, label="Sampler")
        seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
        if seed_extra is not None:
            seed_extra()
    with gr.Row():
        preset = gr.Dropdown(PRESETS, value=preset_of(defaults.width, defaults.height), label="Size (SDXL's sizes)",
                             scale=1)
        width = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.width, step=8, label="Width", scale=2)
        height = gr.Slider(MIN_SIDE, MAX_SIDE, value=defaults.height, step=8, label="Height", scale=2)
    with gr.Row():
        steps = gr.Slider(1, MAX_STEPS, value=defaults.steps, step=1, label="Steps")
        cfg = gr.Slider(0, MAX_CFG, value=defaults.cfg, step=0.5, label="CFG")
    panel = SettingsPanel(profile, sampler, seed, preset, width, height, steps, cfg)

    def pick_size(label: str) -> tuple[Any, Any]:
        if label == CUSTOM or "×" not in (label or ""):
            return gr.skip(), gr.skip()
        w, h = label.split("×")
        return int(w), int(h)

    def snapped(w: Any, h: Any) -> tuple[Any, Any, str]:
        sw, sh = snap(w), snap(h)
        return (gr.skip() if sw in (None, w) else sw, gr.skip() if sh in (None, h) else sh,
                preset_of(sw if sw is not None else w, sh if sh is not None else h))

    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    preset.input(pick_size, preset, [width, height], **private)
    for side in (width, height):
        side.change(snapped, [width, height], [width, height, preset], trigger_mode="always_last", **private)
    profile.input(lambda p: (PROFILES[p].steps, PROFILES[p].cfg, PROFILES[p].scheduler), profile,
                  [steps, cfg, sampler], **private)
    return panel
