"""The one owner of the GPU: model slots (each with its own lock) and the turn-taking between the LLM and
SDXL, planned again before every job from what the card has free (the policy is pure logic, no torch;
the CUDA memory queries sit behind `Card`, which tests play)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, TypeVar

T = TypeVar("T")

GIB = 1024**3
# SDXL in fp16: ~6.9 GB of weights (UNet 5.1, text encoders 1.6, VAE 0.2). A run at 1024x1024 adds the UNet's
# activations (two latents for guidance) and the float32 VAE decode of one image (the VAE decodes image by
# image: slicing), ~3 GB; each further image at that size ~0.5 GB of latents and activations.
SDXL_WEIGHTS = int(6.9 * GIB)  # what a fully placed SDXL holds between runs (measured from the pipe when loaded)
SDXL_RUN = 3 * GIB  # what one 1024x1024 image adds while it runs
SDXL_RUN_EXTRA = GIB // 2  # each further image of the batch, at 1024x1024
# Model offload moves one component at a time onto the GPU: the fp16 UNet (5.1 GB) plus its activations
# must fit. Below this: sequential (layer by layer) offload, slow but it runs in ~3 GB.
SDXL_MODEL_OFFLOAD = 7 * GIB
SDXL_FULL = SDXL_WEIGHTS + SDXL_RUN  # one 1024x1024 image with SDXL wholly on the GPU
LLM_SCRATCH = GIB // 2  # llama.cpp's compute buffers on the GPU, whatever the layers
PLACEMENTS = ("gpu", "model_offload", "sequential_offload", "cpu")
OFFLOAD_PLACEMENT = {"none": "gpu", "model": "model_offload", "sequential": "sequential_offload"}


def sdxl_need(n: int = 1, width: int = 1024, height: int = 1024, weights: int = SDXL_WEIGHTS) -> int:
    """VRAM for SDXL wholly on the GPU running n images of this size."""
    scale = width * height / 1024**2
    return weights + int((SDXL_RUN + (max(1, n) - 1) * SDXL_RUN_EXTRA) * max(scale, 0.25))


@dataclass(frozen=True)
class LlmShape:
    """What a GGUF holds on the GPU: its weights split over `layers` repeating blocks, and the KV cache."""

    file_bytes: int
    layers: int = 32  # Llama 2 7B
    kv_per_token: int = 512 * 1024  # fp16 K and V over all layers: 32 layers x 4096 dims x 2 x 2 bytes
    n_ctx: int = 2048

    def layer_bytes(self) -> int:
        """One block on the GPU: its share of the weights and of the KV cache."""
        return (int(self.file_bytes * 1.05) + self.n_ctx * self.kv_per_token) // max(1, self.layers)

    def resident(self, layers: int | None = None) -> int:
        """What `layers` blocks (default all) hold on the GPU, llama.cpp's scratch buffers included."""
        n = self.layers if layers is None else layers
        return 0 if n <= 0 else n * self.layer_bytes() + LLM_SCRATCH

    def layers_in(self, available: int) -> int:
        """As many blocks as fit in `available` bytes (0 to all)."""
        return max(0, min(self.layers, (available - LLM_SCRATCH) // max(1, self.layer_bytes())))


@dataclass(frozen=True)
class MemoryPlan:
    """What to do before `role` runs: unload these others, move these to RAM, then place it like this."""

    role: str
    placement: str  # one of PLACEMENTS; for the LLM "gpu" (all layers), "partial" or "cpu"
    unload: tuple[str, ...] = ()  # freed entirely (the LLM: llama.cpp cannot shrink in place; reloaded later)
    to_ram: tuple[str, ...] = ()  # moved to RAM and back later (SDXL: seconds, not a reload)
    free: int = 0  # bytes free before anything moved
    need: int = 0  # bytes the role wants for a full GPU placement
    layers: int | None = None  # the LLM's blocks on the GPU
    reason: str = ""


def _gib(b: int) -> str:
    return f"{b / GIB:.1f} GB"


def plan_sdxl(free: int, held: dict[str, int], need: int, offload: str = "auto") -> MemoryPlan:
    """SDXL's placement for the next job. `held`: what SDXL and the LLM hold now (SDXL's own bytes count
    as available to it). The LLM is unloaded only when SDXL's placement would not fit beside it; when even
    that is too little, SDXL is offloaded (model, then sequential). `offload` other than auto is obeyed."""
    available = free + held.get("sdxl", 0)
    if offload != "auto":
        placement = OFFLOAD_PLACEMENT[offload]
        wanted = {"gpu": need, "model_offload": SDXL_MODEL_OFFLOAD}.get(placement, 3 * GIB)
        unload = ("llm",) if held.get("llm", 0) and available < wanted else ()
        return MemoryPlan("sdxl", placement, unload, (), free, need,
                          reason=f"STUDIO_OFFLOAD={offload}: SDXL uses {placement.replace('_', ' ')}.")
    llm = held.get("llm", 0)
    if available >= need:
        return MemoryPlan("sdxl", "gpu", (), (), free, need,
                          reason=f"{_gib(available)} free for SDXL, which needs {_gib(need)}: on the GPU.")
    unload = ("llm",) if llm else ()
    available += llm
    if available >= need:
        return MemoryPlan("sdxl", "gpu", unload, (), free, need,
                          reason=f"{_gib(available)} free once the LLM is unloaded; SDXL needs {_gib(need)}: on the GPU.")
    placement = "model_offload" if available >= SDXL_MODEL_OFFLOAD else "sequential_offload"
    return MemoryPlan("sdxl", placement, unload, (), free, need,
                      reason=f"{_gib(available)} free{' once the LLM is unloaded' if unload else ''}, under "
                      f"{_gib(need)}: SDXL uses {placement.replace('_', ' ')} (slower, but it fits).")


def plan_llm(free: int, held: dict[str, int], shape: LlmShape) -> MemoryPlan:
    """The LLM's blocks on the GPU for the next rewrite: all that fit. SDXL is moved to RAM when that puts
    more blocks on the GPU (it comes back for the next image); what the LLM holds now counts as available."""
    available = free + held.get("llm", 0)
    need = shape.resident()
    to_ram: tuple[str, ...] = ()
    if available < need and held.get("sdxl", 0) > 0:
        to_ram = ("sdxl",)
        available += held["sdxl"]
    layers = shape.layers_in(available)
    placement = "gpu" if layers == shape.layers else "partial" if layers else "cpu"
    moved = " once SDXL is moved to RAM" if to_ram else ""
    return MemoryPlan("llm", placement, (), to_ram, free, need, layers,
                      reason=f"{_gib(available)} free{moved}; the LLM needs {_gib(need)} for all {shape.layers} "
                      f"layers: {layers} on the GPU.")


class Card(Protocol):
    """The CUDA memory queries (tests play a card of any size)."""

    def read(self) -> tuple[int, int] | None:
        """(free, total) bytes, PyTorch's cache emptied first (cached blocks are not in use); None: no CUDA."""

    def name(self) -> str: ...


class CudaCard:
    """The real card, through torch.cuda."""

    def read(self) -> tuple[int, int] | None:
        import gc

        import torch

        if not torch.cuda.is_available():
            return None
        gc.collect()  # tensors only the garbage collector still holds
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info()
        return int(free), int(total)

    def name(self) -> str:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"


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


@dataclass
class PlanLog:
    """The plans made, newest last (the models command and tests read them)."""

    plans: list[MemoryPlan] = field(default_factory=list)

    def add(self, plan: MemoryPlan) -> MemoryPlan:
        self.plans = (self.plans + [plan])[-20:]
        return plan


class Gpu:
    """Owns the two GPU models (slots "llm" and "sdxl") and plans their turns before every job: the job's
    model gets the room it needs, the other is moved aside only as far as that takes (SDXL to RAM, the LLM
    unloaded), and each comes back when its own job asks. Without CUDA every plan is None.

    The models it places: SDXL (studio.generate.generator.Generator: device, placement, place(), vram_bytes(),
    weight_bytes()) and the LLM (studio.rewrite.rewriter.Rewriter: gpu_layers, vram_bytes(), close())."""

    def __init__(self, device: str, *, load_llm: Callable[[MemoryPlan | None], Any],
                 load_sdxl: Callable[[MemoryPlan | None], Any], llm_shape: Callable[[], LlmShape | None] = lambda: None,
                 llm: Any = None, sdxl: Any = None, card: Card | None = None, offload: str = "auto",
                 llm_gpu: Callable[[], bool] = lambda: True) -> None:
        self.device = device
        self.llm_shape = llm_shape
        self.llm_gpu = llm_gpu  # whether the installed llama-cpp can put layers on a GPU at all
        self.card: Card = card or CudaCard()
        self.offload = offload
        self.log = PlanLog()
        self._job = (1, 1024, 1024)  # the next generation's n, width, height: what SDXL's plan is made for
        self.llm: Slot[Any] = Slot("llm", lambda: load_llm(self.make_room("llm")), llm)
        self.sdxl: Slot[Any] = Slot("sdxl", lambda: load_sdxl(self.make_room("sdxl")), sdxl)
        self._turns = threading.Lock()  # one plan at a time

    def _held(self) -> dict[str, int]:
        held: dict[str, int] = {}
        for role, slot in (("sdxl", self.sdxl), ("llm", self.llm)):
            if slot.value is not None:
                held[role] = int(slot.value.vram_bytes())
        return held

    def make_room(self, role: str) -> MemoryPlan | None:
        """Before `role` ("sdxl" | "llm") runs: plan from the card's free memory now, and move the other model
        aside as the plan says. Returns the plan; None without CUDA (nothing to share)."""
        memory = None if self.device == "cpu" else self.card.read()
        if memory is None:
            return None
        with self._turns:
            held = self._held()
            if role == "sdxl":
                sdxl = self.sdxl.value
                weights = sdxl.weight_bytes() if sdxl is not None else SDXL_WEIGHTS
                plan = plan_sdxl(memory[0], held, sdxl_need(*self._job, weights=weights), self.offload)
            else:
                shape = self.llm_shape() if self.llm_gpu() else None
                if shape is None:  # a CPU-only llama-cpp build, or no GGUF: nothing to plan
                    return self.log.add(MemoryPlan("llm", "cpu", free=memory[0], layers=0,
                                                   reason="this llama-cpp has no GPU offload: the LLM runs on the CPU."))
                plan = plan_llm(memory[0], held, shape)
            for other in plan.unload:
                if other == "llm":
                    self.unload_llm()
            for other in plan.to_ram:
                if other == "sdxl" and self.sdxl.value is not None:
                    self.sdxl.value.place("cpu")  # kept in RAM: coming back is seconds, not a reload
            if plan.unload or plan.to_ram:
                self.card.read()  # empties the cache the moved model left
            return self.log.add(plan)

    def unload_llm(self) -> bool:
        """Free the LLM's RAM/VRAM; the next rewrite reloads it. False: none was loaded."""
        rewriter = self.llm.unload()
        if rewriter is None:
            return False
        rewriter.close()
        return True

    def ready_sdxl(self, n: int = 1, width: int = 1024, height: int = 1024) -> Any:
        """SDXL for the next job of n images of this size: loaded on first use, planned again before every job
        (back on the GPU when there is room, offloaded when not)."""
        self._job = (n, width, height)
        gen = self.sdxl.value
        if gen is None:
            return self.sdxl.get()
        if gen.device == "cuda":
            plan = self.make_room("sdxl")
            if plan is not None:
                gen.place(plan.placement)
        return gen

    def ready_llm(self) -> Any:
        """The LLM for the next rewrite, with every layer on the GPU that fits now: one loaded with fewer
        (SDXL held the card then) is loaded again with more, so it never stays on the CPU because of one image."""
        rewriter = self.llm.value
        if rewriter is not None and self.device != "cpu" and getattr(rewriter, "gpu_capable", False):
            plan = self.make_room("llm")
            if plan is not None and plan.layers is not None and plan.layers > rewriter.gpu_layers:
                self.unload_llm()  # llama.cpp cannot add layers in place: get() loads it again, planned anew
        return self.llm.get()

    def where(self) -> dict[str, str]:
        """Where each loaded model is now: SDXL's placement, the LLM's layers on the GPU."""
        out = {}
        if self.sdxl.value is not None:
            out["sdxl"] = self.sdxl.value.placement
        if self.llm.value is not None:
            out["llm"] = f"{getattr(self.llm.value, 'gpu_layers', 0)} layers on the GPU"
        return out


def card_table(totals_gib: tuple[int, ...] = (8, 12, 16, 24), shape: LlmShape | None = None,
               reserved: int = GIB // 2) -> list[dict[str, str]]:
    """The plans on cards of these sizes for SDXL (fp16, one 1024x1024 image) and a Llama 2 7B Q4_K_M
    (~4.1 GB file, 2048-token context), rewrite then generate, as the README's table gives them."""
    shape = shape or LlmShape(int(4.08 * GIB))
    rows = []
    for total in totals_gib:
        free = total * GIB - reserved  # the desktop and the CUDA context
        first = plan_sdxl(free, {}, SDXL_FULL)
        sdxl_held = SDXL_WEIGHTS if first.placement == "gpu" else 0
        llm = plan_llm(free - sdxl_held, {"sdxl": sdxl_held}, shape)
        llm_held = shape.resident(llm.layers)
        sdxl_back = 0 if llm.to_ram else sdxl_held
        gen = plan_sdxl(free - llm_held - sdxl_back, {"llm": llm_held, "sdxl": sdxl_back}, SDXL_FULL)
        rows.append({"card": f"{total} GB", "sdxl": gen.placement.replace("_", " "),
                     "llm": f"{llm.layers}/{shape.layers} layers on the GPU",
                     "rewrite": "SDXL moved to RAM" if llm.to_ram else
                     "SDXL stays on the GPU" if sdxl_held else "nothing moves (SDXL is offloaded)",
                     "generate": "LLM unloaded (reloaded at the next rewrite)" if gen.unload else "LLM stays"})
    return rows


def machine_plan(card: Card, device: str, shape: LlmShape | None, llm_gpu: bool, offload: str = "auto") -> dict[str, Any]:
    """What `python -m studio models` says of this machine: the card, whether llama-cpp can use it, and the
    plan for SDXL and the LLM on it (rewrite then generate)."""
    memory = None if device == "cpu" else card.read()
    if memory is None:
        return {"device": "cpu", "card": None, "llm_gpu_offload": llm_gpu,
                "plan": "No CUDA GPU (or STUDIO_DEVICE=cpu): SDXL and the LLM run on the CPU."}
    free, total = memory
    row = card_table((max(1, round(total / GIB)),), shape or LlmShape(int(4.08 * GIB)), reserved=total - free)[0]
    sdxl = OFFLOAD_PLACEMENT.get(offload, row["sdxl"]).replace("_", " ") if offload != "auto" else row["sdxl"]
    plan = (f"SDXL: {sdxl}; LLM: {row['llm'] if llm_gpu else 'on the CPU (this llama-cpp has no GPU offload)'}; "
            f"during a rewrite {row['rewrite']}; during a generation {row['generate']}.")
    return {"device": "cuda", "card": card.name(), "total_gb": round(total / GIB, 1), "free_gb": round(free / GIB, 1),
            "llm_gpu_offload": llm_gpu, "plan": plan}
