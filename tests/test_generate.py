"""Generation: requests, a tiny SDXL from configs on the CPU, the real TAESDXL, loading, memory, CLI."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.config import Settings
from studio.errors import InputError, ModelMissingError
from studio.generate.request import PROFILES, SCHEDULERS, GenerationRequest
from studio.generate.generator import Generator
from studio.studio import Studio
from tests.conftest import SAMPLE_IMAGES, SMALL


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)

# -- requests ------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, says", [
    (dict(prompt="   "), "prompt is empty"),
    (dict(prompt="x", width=500), "multiple of 8"),
    (dict(prompt="x", height=56), "multiple of 8"),
    (dict(prompt="x", width=4096), "multiple of 8 from 64 to 2048"),
    (dict(prompt="x", width="512"), "width"),
    (dict(prompt="x", steps=0), "steps=0"),
    (dict(prompt="x", steps=151), "1 to 150"),
    (dict(prompt="x", steps=2.5), "whole number"),
    (dict(prompt="x", cfg=-1.0), "cfg=-1.0"),
    (dict(prompt="x", cfg=31), "0 to 30"),
    (dict(prompt="x", cfg="7"), "cfg"),
    (dict(prompt="x", n=0), "1 to 8"),
    (dict(prompt="x", seed=-5), "seed=-5"),
    (dict(prompt="x", seed=2**32), "seed"),
    (dict(prompt="x", scheduler="heun++"), "Euler a"),
    (dict(prompt="x", profile="turbo"), "standard, fast"),
])
def test_bad_requests_are_refused_with_what_to_do(fields, says):
    with pytest.raises(InputError, match=re.escape(says)):
        GenerationRequest(**fields).validated()


def test_bad_request_is_refused_before_any_model_loads(settings: Settings, embedder, tmp_path: Path):
    # No SDXL exists at this path: a load would raise ModelMissingError, so InputError proves the order.
    studio = Studio(settings.with_(sdxl_model=str(tmp_path / "no-such-model")), embedder=embedder)
    with pytest.raises(InputError, match="multiple of 8"):
        studio.generate("a cat", width=1000 + 1)
    assert not studio.sdxl_loaded
    with pytest.raises(ModelMissingError):
        studio.generate("a cat")


def test_defaults_profiles_seed_and_scheduler_names():
    req = GenerationRequest("a cat").validated()
    assert (req.steps, req.cfg, req.scheduler) == (30, 6.0, "DPM++ 2M Karras")
    assert 0 <= req.seed < 2**32 and req.validated().seed == req.seed  # chosen once, then kept
    fast = GenerationRequest("a cat", profile="fast").validated()
    assert (fast.steps, fast.cfg, fast.scheduler, fast.timestep_spacing) == (4, 0.0, "Euler a", "trailing")
    assert GenerationRequest("a", scheduler="k_euler_ancestral").validated().scheduler == "Euler a"
    assert GenerationRequest("a", scheduler="dpm++ 2m karras").validated().scheduler == "DPM++ 2M Karras"
    assert GenerationRequest("a", seed=2**32 - 1, n=3).validated().seeds == [2**32 - 1, 0, 1]
    assert {"Euler", "Euler a", "DPM++ 2M Karras"} <= set(SCHEDULERS) and set(PROFILES) == {"standard", "fast"}


# -- the pipeline --------------------------------------------------------------------------
def test_size_count_and_same_seed_same_pixels(generator: Generator):
    req = GenerationRequest("a red fox in the snow", negative_prompt="blurry", seed=1234, n=2, width=64, height=80,
                            steps=2)
    first = generator.generate(req)
    assert [im.size for im in first.images] == [(64, 80), (64, 80)]
    assert first.seeds == [1234, 1235] and first.steps_done == 2 and not first.cancelled
    again = generator.generate(req)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first.images, again.images))
    # Each image of a batch is what its own seed gives alone (A1111's seed, seed+1, ...): the same noise;
    # batched float math may round a few pixels one level apart.
    alone = generator.generate(GenerationRequest(req.prompt, req.negative_prompt, seed=1235, width=64, height=80,
                                                 steps=2))
    assert np.abs(pixels(alone.images[0]) - pixels(first.images[1])).max() <= 1
    other = generator.generate(GenerationRequest(req.prompt, req.negative_prompt, seed=99, width=64, height=80,
                                                 steps=2))
    assert not np.array_equal(pixels(other.images[0]), pixels(first.images[0]))


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_runs(generator: Generator, name: str):
    result = generator.generate(GenerationRequest("a lighthouse", seed=3, scheduler=name, **SMALL))
    assert type(generator.pipe.scheduler).__name__ == SCHEDULERS[name][0]
    assert result.images[0].size == (64, 64) and pixels(result.images[0]).std() > 0


def test_fast_profile_uses_trailing_timesteps_and_no_guidance(generator: Generator):
    result = generator.generate(GenerationRequest("a lighthouse", seed=3, profile="fast", width=64, height=64))
    assert generator.pipe.scheduler.config.timestep_spacing == "trailing"
    assert result.steps_done == 4 and not generator.pipe.do_classifier_free_guidance


def test_previews_fire_with_real_taesdxl_images_of_the_right_size(generator: Generator):
    from safetensors.torch import load_file

    from studio.generate.taesd import taesd_dir

    seen = []
    result = generator.generate(GenerationRequest("a castle", seed=5, n=2, width=64, height=96, steps=4),
                                on_preview=seen.append, preview_every=1)
    assert [p.step for p in seen] == [1, 2, 3] and all(p.total == 4 for p in seen)
    assert all([im.size for im in p.images] == [(64, 96), (64, 96)] for p in seen)
    assert len(result.images) == 2
    taesd = generator.taesd()
    trained = load_file(str(taesd_dir() / "taesdxl_decoder.safetensors"))["1.weight"].float()
    assert type(taesd).__name__ == "AutoencoderTiny" and np.array_equal(
        taesd.decoder.layers[0].weight.detach().numpy(), trained.numpy())


def test_taesdxl_round_trip_of_a_real_diffusiondb_image():
    from studio.generate.taesd import decode, encode, load_taesd

    image = Image.open(SAMPLE_IMAGES / "2m_first_1k-idx507_from-nobbettt-demo.png").convert("RGB")
    image = image.crop((0, 0, image.width // 8 * 8, image.height // 8 * 8))
    taesd = load_taesd(encoder=True)
    latents = encode(taesd, image)
    assert tuple(latents.shape) == (1, 4, image.height // 8, image.width // 8)
    out = decode(taesd, latents)[0]
    a, b = pixels(image).astype(np.float64), pixels(out).astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    flat = 10 * np.log10(255**2 / np.mean((a - a.mean(axis=(0, 1))) ** 2))  # a mean-colour "reconstruction"
    assert out.size == image.size and psnr > 22.0 and psnr > flat + 5, (psnr, flat)


def test_cancel_stops_the_run_and_saves_nothing(gen_studio: Studio):
    stop = threading.Event()
    seen = []

    def on_preview(p) -> None:
        seen.append(p.step)
        stop.set()  # as the UI's Stop button would, from another thread, mid-run

    result = gen_studio.generate("a castle", seed=1, width=64, height=64, steps=6, on_preview=on_preview, cancel=stop)
    assert result.cancelled and result.images == [] and result.saved == []
    assert seen == [1] and result.steps_done == 2  # the step after the flag was seen did not run on
    assert not gen_studio.settings.outputs_dir.exists() or not list(gen_studio.settings.outputs_dir.iterdir())
    already = gen_studio.generator.generate(GenerationRequest("a castle", seed=1, **SMALL), cancel=stop)
    assert already.cancelled and already.steps_done == 0


# -- loading and memory ----------------------------------------------------------------------
def test_load_errors_say_what_to_do(tmp_path: Path):
    missing = Settings(sdxl_model=str(tmp_path / "nothing-here"), models_dir=tmp_path, offline=True, device="cpu")
    with pytest.raises(ModelMissingError, match="STUDIO_SDXL_MODEL"):
        Generator.load(missing)
    checkpoint = tmp_path / "my-sdxl.safetensors"
    checkpoint.write_bytes(b"")  # an empty download: said as such; its tokenizers are no longer what is missing
    with pytest.raises(ModelMissingError, match=r"Could not load SDXL from .*my-sdxl\.safetensors"):
        Generator.load(missing.with_(sdxl_model=str(checkpoint)))


def test_a_single_file_checkpoint_needs_no_tokenizer_download(tmp_path: Path):
    """Offline, with no SDXL folder anywhere: SDXL's two tokenizers come from the shipped CLIP vocabulary."""
    from studio.generate.loading import single_file_tokenizers

    one, two = single_file_tokenizers(Settings(models_dir=tmp_path, offline=True, device="cpu"))
    assert one("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert two.pad_token == "!" and one.pad_token == "<|endoftext|>" and one.model_max_length == 77


def test_shipped_sdxl_configs_are_sdxl_base_shapes():
    """The single-file loader and the shape-true bench build from these: same parameter counts as SDXL base 1.0."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.generate.loading import SDXL_CONFIG

    cfg = str(SDXL_CONFIG)
    with init_empty_weights():
        models = [UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg, subfolder="unet")),
                  AutoencoderKL.from_config(AutoencoderKL.load_config(cfg, subfolder="vae")),
                  CLIPTextModel(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder")),
                  CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder_2"))]
    counts = [sum(p.numel() for p in m.parameters()) for m in models]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    assert StableDiffusionXLPipeline.load_config(cfg)["_class_name"] == "StableDiffusionXLPipeline"


# -- CLI -----------------------------------------------------------------------------------
def test_cli_generate(tmp_path: Path, tiny_clip_dir: Path, tiny_sdxl_dir: Path, capsys: pytest.CaptureFixture):
    from studio.cli import main

    common = ["--home", str(tmp_path / "home"), "--clip-model", str(tiny_clip_dir), "--sdxl-model",
              str(tiny_sdxl_dir), "--device", "cpu", "--offline", "--json"]
    assert main(["generate", "a red kite", "--seed", "5", "--steps", "2", "--width", "64", "--height", "64",
                 "--scheduler", "Euler", "-n", "2", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seeds"] == [5, 6] and out["request"]["scheduler"] == "Euler"
    assert all(Path(s["path"]).is_file() and s["stored"] for s in out["saved"])
    assert main(["generate", "a red kite", "--width", "100", *common]) == 2
    assert "multiple of 8" in json.loads(capsys.readouterr().out)["error"]
