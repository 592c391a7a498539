"""GPU memory turns: which model to unload, and whether SDXL needs CPU offload (pure logic, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

GIB = 1024**3
# SDXL in fp16: ~6.9 GB of weights (UNet 5.1, text encoders 1.6, VAE 0.2) plus ~4 GB of
# activations and the float32 VAE decode at 1024x1024. Below this much free: model CPU offload.
SDXL_FULL = 12 * GIB
# Model offload moves one component at a time onto the GPU: the fp16 UNet (5.1 GB) plus its
# activations must fit. Below this: sequential (layer by layer) offload, slow but it runs in ~3 GB.
SDXL_MODEL_OFFLOAD = 7 * GIB
SDXL_WEIGHTS = int(6.9 * GIB)  # what a fully placed SDXL holds between runs
PLACEMENTS = ("gpu", "model_offload", "sequential_offload", "cpu")


@dataclass(frozen=True)
class MemoryPlan:
    """What to do before `role` loads: unload these others, then place it like this."""

    role: str
    placement: str  # one of PLACEMENTS
    unload: tuple[str, ...] = ()
    free: int = 0  # bytes free before unloading
    need: int = 0  # bytes the role wants for a full GPU placement
    reason: str = ""


def llm_resident(gguf_bytes: int, context_tokens: int = 2048, kv_per_token: int = 512 * 1024) -> int:
    """What a GGUF fully offloaded to the GPU holds: weights and KV cache (fp16 K and V: 512 KiB a
    token for Llama 2 7B's 32 layers x 4096 dims)."""
    return int(gguf_bytes * 1.1) + context_tokens * kv_per_token


def llm_need(gguf_bytes: int, context_tokens: int = 2048) -> int:
    """What loading it takes: llm_resident() and ~0.5 GB of llama.cpp scratch buffers."""
    return llm_resident(gguf_bytes, context_tokens) + GIB // 2


def plan_load(role: str, free: int, loaded: Mapping[str, int], need: int | None = None) -> MemoryPlan:
    """Decide where `role` goes given `free` VRAM bytes and the bytes other models hold now.

    Others are unloaded, largest first, only while that still leaves too little room; if even
    all of them gone is not enough, SDXL is offloaded (model, then sequential) and an LLM stays
    on the CPU. `loaded` maps a role to the VRAM it holds (0 or absent: nothing to free)."""
    if role == "sdxl":
        need = SDXL_FULL if need is None else need
    elif need is None:
        raise ValueError("plan_load needs `need` (bytes) for roles other than sdxl; see llm_need().")
    others = sorted(((r, b) for r, b in loaded.items() if r != role and b > 0), key=lambda rb: -rb[1])
    available, unload = free, []
    for other, held in others:
        if available >= need:
            break
        unload.append(other)
        available += held
    gib = lambda b: f"{b / GIB:.1f} GB"  # noqa: E731
    if available >= need:
        why = f"{gib(available)} free" + (f" after unloading {', '.join(unload)}" if unload else "")
        return MemoryPlan(role, "gpu", tuple(unload), free, need, f"{why}; {role} needs {gib(need)}: on the GPU.")
    if role != "sdxl":
        return MemoryPlan(role, "cpu", tuple(unload), free, need,
                          f"only {gib(available)} free even with {', '.join(unload) or 'nothing'} unloaded; "
                          f"{role} needs {gib(need)}: it runs on the CPU.")
    placement = "model_offload" if available >= SDXL_MODEL_OFFLOAD else "sequential_offload"
    return MemoryPlan(role, placement, tuple(unload), free, need,
                      f"{gib(available)} free{' after unloading ' + ', '.join(unload) if unload else ''}, under "
                      f"{gib(need)}: SDXL uses {placement.replace('_', ' ')} (slower, but it fits).")


def held_by_sdxl(placement: str | None) -> int:
    """VRAM a placed SDXL holds between runs: offloaded components go back to the CPU after each run."""
    return SDXL_WEIGHTS if placement == "gpu" else 0


def cuda_memory() -> tuple[int, int] | None:
    """(free, total) bytes on the current CUDA device, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return int(free), int(total)
