"""The memory plan on the cards artists own (8, 12, 16, 24 GB), played through the Card seam: rewrite ->
generate -> rewrite -> generate, and where each model is after each step."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from studio.gpu import GIB, SDXL_FULL, SDXL_WEIGHTS, Gpu, LlmShape, card_table, plan_llm, plan_sdxl, sdxl_need
from studio.rewrite.rewriter import Rewriter
from tests.fakes import RecordingBackend

LLAMA_7B = LlmShape(int(4.08 * GIB))  # a Llama 2 7B Q4_K_M: 32 layers, 2048-token context


@dataclass
class FakeSdxl:
    """A recording SDXL behind the Gpu's model protocol: where it was placed, and what that holds."""

    device: str = "cuda"
    placement: str = "cpu"
    moves: list[str] = field(default_factory=list)

    def place(self, placement: str) -> None:
        if placement != self.placement:
            self.moves.append(placement)
        self.placement = placement

    def weight_bytes(self) -> int:
        return SDXL_WEIGHTS

    def vram_bytes(self) -> int:
        return SDXL_WEIGHTS if self.placement == "gpu" else 0


@dataclass
class FakeCard:
    """A card of `total` GB: the driver's free memory is what the models placed on it leave."""

    total: int
    gpu: Gpu | None = None
    reserved: int = GIB // 2  # the desktop and the CUDA context
    reads: int = 0

    def read(self) -> tuple[int, int]:
        self.reads += 1
        used = sum(slot.value.vram_bytes() for slot in (self.gpu.sdxl, self.gpu.llm) if slot.value is not None)
        return self.total * GIB - self.reserved - used, self.total * GIB

    def name(self) -> str:
        return f"Test card {self.total} GB"


def studio_gpu(total: int) -> tuple[Gpu, FakeCard, list[int | None]]:
    card = FakeCard(total)
    llm_loads: list[int | None] = []

    def load_llm(plan):
        llm_loads.append(plan.layers)
        rewriter = Rewriter(RecordingBackend(["a prompt"] * 4), "llama-2-7b-chat.Q4_K_M.gguf")
        rewriter.gpu_layers, rewriter.gpu_capable, rewriter.shape = plan.layers, True, LLAMA_7B
        return rewriter

    def load_sdxl(plan):
        sdxl = FakeSdxl()
        sdxl.place(plan.placement)
        return sdxl

    gpu = Gpu("cuda", load_llm=load_llm, load_sdxl=load_sdxl, llm_shape=lambda: LLAMA_7B, card=card)
    card.gpu = gpu
    return gpu, card, llm_loads


def where(gpu: Gpu) -> tuple[str | None, int | None]:
    sdxl, llm = gpu.sdxl.value, gpu.llm.value
    return (sdxl.placement if sdxl else None, llm.gpu_layers if llm else None)


@pytest.mark.parametrize("total, steps", [
    # (SDXL's placement, the LLM's layers on the GPU) after rewrite, generate, rewrite, generate.
    (8, [(None, 32), ("model_offload", None), ("model_offload", 32), ("model_offload", None)]),
    (12, [(None, 32), ("gpu", None), ("cpu", 32), ("gpu", None)]),
    (16, [(None, 32), ("gpu", None), ("gpu", 32), ("gpu", None)]),
    (24, [(None, 32), ("gpu", 32), ("gpu", 32), ("gpu", 32)]),
])
def test_rewrite_generate_rewrite_generate(total: int, steps: list[tuple[str | None, int | None]]):
    gpu, card, llm_loads = studio_gpu(total)
    seen = []
    for job in ("rewrite", "generate", "rewrite", "generate"):
        gpu.ready_llm() if job == "rewrite" else gpu.ready_sdxl()
        seen.append(where(gpu))
        free = card.read()[0]
        assert free >= 0, f"{job} on {total} GB: over-committed by {-free / GIB:.1f} GB"
    assert seen == steps
    # The LLM is never left with fewer layers than fit because of one image: each rewrite had all 32.
    assert all(layers == 32 for layers in llm_loads)


def test_the_llm_gets_the_layers_that_fit_beside_other_programs():
    gpu, card, llm_loads = studio_gpu(8)
    card.reserved = int(4.5 * GIB)  # a game or a browser holds 4.5 GB of the 8
    gpu.ready_llm()
    layers = gpu.llm.value.gpu_layers
    assert 0 < layers < 32 and card.read()[0] >= 0
    card.reserved = GIB // 2  # the other program closed: the next rewrite loads it again with every layer
    gpu.ready_llm()
    assert gpu.llm.value.gpu_layers == 32 and llm_loads == [layers, 32]


def test_sdxl_comes_back_to_the_gpu_when_there_is_room():
    gpu, card, _ = studio_gpu(12)
    card.reserved = int(4.5 * GIB)  # little room: offloaded
    gpu.ready_sdxl()
    assert gpu.sdxl.value.placement == "model_offload"
    card.reserved = GIB // 2
    gpu.ready_sdxl()
    assert gpu.sdxl.value.placement == "gpu" and gpu.sdxl.value.moves == ["model_offload", "gpu"]


def test_the_plan_reads_memory_before_every_job():
    gpu, card, _ = studio_gpu(24)
    gpu.ready_sdxl()
    gpu.ready_llm()
    before = card.reads
    gpu.ready_sdxl()
    gpu.ready_llm()
    assert card.reads >= before + 2
    assert [p.role for p in gpu.log.plans[-2:]] == ["sdxl", "llm"]


def test_offload_setting_is_obeyed():
    plan = plan_sdxl(20 * GIB, {}, SDXL_FULL, offload="sequential")
    assert plan.placement == "sequential_offload" and "STUDIO_OFFLOAD=sequential" in plan.reason
    assert plan_sdxl(4 * GIB, {}, SDXL_FULL, offload="none").placement == "gpu"  # the user said so
    assert plan_sdxl(6 * GIB, {"llm": 5 * GIB}, SDXL_FULL, offload="model").unload == ("llm",)


def test_plans_in_numbers():
    assert plan_sdxl(20 * GIB, {"llm": 5 * GIB}, SDXL_FULL).unload == ()
    assert plan_sdxl(8 * GIB, {"llm": 5 * GIB}, SDXL_FULL).unload == ("llm",)
    assert plan_sdxl(3 * GIB, {}, SDXL_FULL).placement == "sequential_offload"
    assert plan_sdxl(8 * GIB, {}, SDXL_FULL).placement == "model_offload"
    assert sdxl_need(4) > sdxl_need(1) > sdxl_need(1, 512, 512)
    plan = plan_llm(2 * GIB, {"sdxl": SDXL_WEIGHTS}, LLAMA_7B)
    assert plan.to_ram == ("sdxl",) and plan.layers == 32
    plan = plan_llm(2 * GIB, {}, LLAMA_7B)
    assert plan.placement == "partial" and 0 < plan.layers < 32
    assert plan_llm(GIB // 4, {}, LLAMA_7B).placement == "cpu"


def test_the_readme_table_is_the_plan():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for row in card_table():
        line = f"| {row['card']} | {row['sdxl']} | {row['llm']} | {row['rewrite']} | {row['generate']} |"
        assert line in readme, line


def test_without_cuda_nothing_is_planned(gen_studio):
    assert gen_studio.make_room("sdxl") is None and gen_studio.generator.placement == "cpu"


def test_the_models_command_says_the_plan_for_this_machine(settings, capsys):
    from studio.cli import main

    assert main(["models", "--home", str(settings.home), "--device", "cpu", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "gpu   no CUDA GPU" in out and "llama-cpp GPU offload:" in out


def test_machine_plan_on_a_card():
    from studio.gpu import machine_plan

    gpu, card, _ = studio_gpu(12)
    out = machine_plan(card, "cuda", LLAMA_7B, llm_gpu=False)
    assert out["card"] == "Test card 12 GB" and out["total_gb"] == 12.0
    assert "this llama-cpp has no GPU offload" in out["plan"]
