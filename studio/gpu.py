"""The one owner of the GPU: model slots (each with its own lock) and the turn-taking between the LLM and
SDXL: which model to unload, and whether SDXL needs CPU offload (the policy is pure logic, no torch)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

T = TypeVar("T")

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


class Slot(Generic[T]):
    """One lazily loaded part (a model, a store) with its own lock: a slow load holds only this slot,
    so users of other slots (searches, while the LLM or SDXL loads) never wait for it.

    Two locks: `_loading` is held through a load; `_value` is swapped under a short lock of its own, so
    that unload() (from another slot's turn-taking) never waits for a load in progress."""

    def __init__(self, name: str, load: Callable[[], T] | None = None, value: T | None = None) -> None:
        self.name = name
        self._load = load
        self._value = value
        self._loading = threading.Lock()
        self._swap = threading.Lock()

    @property
    def value(self) -> T | None:
        """What is loaded now, without loading it."""
        return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        """The part, loaded on first use (once, however many threads ask at the same time)."""
        value = self._value
        if value is not None:
            return value
        with self._loading:
            if self._value is None:
                if self._load is None:
                    raise RuntimeError(f"slot {self.name!r} has nothing loaded and no loader")
                loaded = self._load()
                with self._swap:
                    self._value = loaded
            return self._value  # type: ignore[return-value]

    def set(self, value: T | None) -> None:
        with self._swap:
            self._value = value

    def unload(self) -> T | None:
        """Empty the slot and hand back what it held (the caller frees it); the next get() loads again."""
        with self._swap:
            value, self._value = self._value, None
        return value


class Gpu:
    """Owns the two GPU models (slots "llm" and "sdxl") and decides their turns: before one loads or runs,
    the other is moved aside where VRAM is short (plan_load). Without CUDA every plan is None."""

    def __init__(self, device: str, *, load_llm: Callable[[MemoryPlan | None], Any],
                 load_sdxl: Callable[[MemoryPlan | None], Any], llm_bytes: Callable[[], int] = lambda: 0,
                 llm: Any = None, sdxl: Any = None,
                 memory: Callable[[], tuple[int, int] | None] | None = None) -> None:
        self.device = device
        self.llm_bytes = llm_bytes
        self.memory = memory or cuda_memory
        self.llm: Slot[Any] = Slot("llm", lambda: load_llm(self.make_room("llm")), llm)
        self.sdxl: Slot[Any] = Slot("sdxl", lambda: load_sdxl(self.make_room("sdxl")), sdxl)
        self._turns = threading.Lock()  # one plan at a time

    def make_room(self, role: str) -> MemoryPlan | None:
        """Before `role` ("sdxl" | "llm") takes the GPU: unload the other one where VRAM is short.
        Returns the MemoryPlan; None without CUDA (nothing to share)."""
        memory = None if self.device == "cpu" else self.memory()
        if memory is None:
            return None
        with self._turns:
            held: dict[str, int] = {}
            if self.sdxl.value is not None:
                held["sdxl"] = self.sdxl.value.vram_bytes()
            if self.llm.value is not None:
                held["llm"] = self.llm.value.vram_bytes()
            need = llm_need(self.llm_bytes()) if role == "llm" else None
            plan = plan_load(role, memory[0], held, need)
            for other in plan.unload:
                if other == "sdxl" and self.sdxl.value is not None:
                    self.sdxl.value.place("cpu")  # kept in RAM: coming back is seconds, not a reload
                elif other == "llm":
                    self.unload_llm()
            if plan.unload:
                import gc

                import torch

                gc.collect()
                torch.cuda.empty_cache()
            return plan

    def unload_llm(self) -> bool:
        """Free the LLM's RAM/VRAM; the next rewrite reloads it. False: none was loaded."""
        rewriter = self.llm.unload()
        if rewriter is None:
            return False
        rewriter.close()
        return True

    def ready_sdxl(self) -> Any:
        """SDXL, loaded on first use, and back on the GPU if it was moved aside for the LLM."""
        gen = self.sdxl.get()
        if gen.device == "cuda" and gen.placement == "cpu":
            plan = self.make_room("sdxl")
            gen.place(plan.placement if plan else "gpu")
        return gen
