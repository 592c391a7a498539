"""Tiny LoRAs for the tiny SDXL (tests/tiny_sdxl.py): made with peft on copies of its UNet and text encoders,
saved the two ways they come: diffusers' save_lora_weights, and kohya-ss/Civitai keys (`lora_unet_...`,
`lora_te1_...`, `.lora_down.weight`, `.alpha`) with SDXL's sgm block names (`input_blocks_4_1_...`)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
PARTS = {"unet": ("lora_unet_", UNET_TARGETS), "text_encoder": ("lora_te1_", TEXT_TARGETS),
         "text_encoder_2": ("lora_te2_", TEXT_TARGETS)}


def lora_layers(pipe: Any, seed: int, rank: int = 4, std: float = 0.3,
                parts: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2")) -> dict[str, dict[str, Any]]:
    """{part: PEFT state dict (lora_A / lora_B)}: peft names the layers; the values are seeded noise, large
    enough to change the tiny model's pixels (peft's own init leaves lora_B at zero: no effect at all)."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for part in parts:
        model = copy.deepcopy(getattr(pipe, part))
        model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=PARTS[part][1], init_lora_weights=False))
        out[part] = {k: torch.randn(v.shape, generator=gen) * std
                     for k, v in sorted(get_peft_model_state_dict(model).items())}
    return out


def save_diffusers(layers: dict[str, dict[str, Any]], path: Path) -> Path:
    """The layout diffusers' training scripts write (StableDiffusionXLPipeline.save_lora_weights)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    given = {f"{part}_lora_layers": convert_state_dict_to_diffusers(sd) for part, sd in layers.items()}
    StableDiffusionXLPipeline.save_lora_weights(str(path.parent), weight_name=path.name, **given)
    return path


def _sgm(module: str, layers_per_block: int) -> str:
    """A diffusers UNet module name in the sgm names kohya-ss uses for SDXL (the inverse of diffusers'
    _maybe_map_sgm_blocks_to_diffusers): down_blocks.1.attentions.0 -> input_blocks.4.1, and so on."""
    per = layers_per_block + 1
    module = re.sub(r"^down_blocks\.(\d+)\.attentions\.(\d+)",
                    lambda m: f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1", module)
    module = re.sub(r"^mid_block\.attentions\.0", "middle_block.1", module)
    return re.sub(r"^up_blocks\.(\d+)\.attentions\.(\d+)", lambda m: f"output_blocks.{int(m[1]) * per + int(m[2])}.1",
                  module)


def save_kohya(layers: dict[str, dict[str, Any]], path: Path, layers_per_block: int, alpha: float | None = None) -> Path:
    """The same LoRA as kohya-ss writes it. With `alpha` below the rank, lora_up is scaled up by rank/alpha,
    so a loader that applies alpha/rank gets back exactly the same change."""
    import torch
    from safetensors.torch import save_file

    sd: dict[str, Any] = {}
    for part, weights in layers.items():
        prefix = PARTS[part][0]
        for key, value in weights.items():
            module, kind = key.rsplit(".lora_", 1)
            if part == "unet":
                module = _sgm(module, layers_per_block)
            elif not module.startswith("text_model."):
                module = "text_model." + module  # transformers 4's names, which real files carry
            name = prefix + module.replace(".", "_")
            rank = value.shape[0] if kind == "A.weight" else value.shape[1]
            a = float(rank if alpha is None else alpha)
            if kind == "A.weight":
                sd[f"{name}.lora_down.weight"] = value.contiguous()
                sd[f"{name}.alpha"] = torch.tensor(a)
            else:
                sd[f"{name}.lora_up.weight"] = (value * (rank / a)).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path
