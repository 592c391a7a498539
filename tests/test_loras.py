"""LoRAs on the tiny SDXL: tiny LoRAs made with peft (tests/tiny_lora.py) in diffusers' and kohya-ss's layouts,
applied at their weights through diffusers and fused, kept while jobs use the same set, the model exactly as loaded
once a job uses another set or none; refused when missing; kept in
the saved prompt, the PNG (`Lora hashes`) and the record; listed by the CLI and the Create tab's picker."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from studio.config import Settings
from studio.errors import InputError, ModelMissingError
from studio.generate.generator import Generator
from studio.generate.loras import addnet_hash, available, loras_of
from studio.generate.request import GenerationRequest
from studio.library.pngmeta import read_png
from studio.studio import Studio
from tests.appserver import ARTIFACTS
from tests.conftest import SMALL
from tests.tiny_lora import lora_layers, save_diffusers, save_kohya


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, generator: Generator) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    ink = lora_layers(generator.pipe, seed=1)  # UNet and both text encoders
    save_diffusers(ink, folder / "ink.safetensors")
    # The same LoRA as Civitai files come: kohya keys, sgm block names, alpha 2 of rank 4 (lora_up made up for it).
    save_kohya(ink, folder / "ink-kohya.safetensors", generator.pipe.unet.config.layers_per_block, alpha=2)
    save_diffusers(lora_layers(generator.pipe, seed=2, parts=("unet",)), folder / "glow.safetensors")
    return folder


def run(generator: Generator, prompt: str, folder: Path, seen: list | None = None, **fields) -> np.ndarray:
    """The image of `prompt` (seed 3), noting which adapters the pipeline held while it denoised."""
    record = (lambda p: seen.append(generator.pipe.get_list_adapters())) if seen is not None else None
    result = generator.generate(GenerationRequest(prompt, seed=3, **{**SMALL, **fields}), on_preview=record,
                                preview_every=1, loras=loras_of(prompt, folder))
    return np.asarray(result.images[0], dtype=np.int16)


def no_lora_layers(generator: Generator) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    parts = (generator.pipe.unet, generator.pipe.text_encoder, generator.pipe.text_encoder_2)
    return not any(isinstance(m, BaseTunerLayer) for part in parts for m in part.modules())


def test_weight_zero_is_the_model_one_changes_it_and_the_next_job_leaves_nothing(generator: Generator, lora_dir: Path):
    base = run(generator, "a castle", lora_dir)
    seen: list = []
    zero = run(generator, "a castle <lora:ink:0>", lora_dir, seen)
    one = run(generator, "a castle <lora:ink:1>", lora_dir, seen)
    # Loaded both times, on the UNet and both text encoders, while the pipeline ran...
    assert seen == [{"unet": ["studio-0"], "text_encoder": ["studio-0"], "text_encoder_2": ["studio-0"]}] * 2
    assert np.array_equal(zero, base)  # ... at weight 0 it changes nothing ...
    assert np.abs(one - base).max() > 10  # ... at 1 it shows
    assert np.array_equal(run(generator, "a castle", lora_dir), base)  # the next job: the model as loaded, exactly
    assert no_lora_layers(generator) and generator.pipe.get_list_adapters() == {} and not generator.loras.key


def test_a_set_is_fused_once_and_kept_for_the_jobs_that_use_it(generator: Generator, lora_dir: Path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTunerLayer

    loads: list[str] = []
    load = generator.pipe.load_lora_weights
    monkeypatch.setattr(generator.pipe, "load_lora_weights", lambda path, **kw: (loads.append(Path(path).name),
                                                                                  load(path, **kw))[1])
    run(generator, "a castle", lora_dir)  # whatever an earlier test left: gone
    first = run(generator, "a castle <lora:ink:0.8>", lora_dir)
    layers = [m for m in generator.pipe.unet.modules() if isinstance(m, BaseTunerLayer)]
    assert layers and all(m.merged for m in layers)  # fused: the job runs at the bare model's speed
    again = run(generator, "a castle <lora:ink:0.8>", lora_dir)
    assert loads == ["ink.safetensors"] and np.array_equal(first, again)  # loaded once, the same pixels
    other = run(generator, "a castle <lora:ink:0.4>", lora_dir)  # another weight: another set
    assert loads == ["ink.safetensors"] * 2 and not np.array_equal(other, first)
    assert np.array_equal(run(generator, "a castle <lora:ink:0.8>", lora_dir), first)  # put back exactly between sets


def test_kohya_civitai_layout_loads_as_the_diffusers_one(generator: Generator, lora_dir: Path):
    keys = set(load_file(str(lora_dir / "ink-kohya.safetensors")))
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    assert any(k.startswith("lora_te2_") for k in keys) and any(k.startswith("lora_unet_output_blocks_") for k in keys)
    diffusers_layout = run(generator, "a castle <lora:ink:1>", lora_dir)
    kohya_layout = run(generator, "a castle <lora:ink-kohya:1>", lora_dir)
    # Equal only if every key found its layer and alpha 2/rank 4 was applied (else the change would be doubled).
    assert np.abs(kohya_layout - diffusers_layout).max() <= 1
    assert np.abs(kohya_layout - run(generator, "a castle", lora_dir)).max() > 10


def test_several_loras_at_once(generator: Generator, lora_dir: Path):
    seen: list = []
    both = run(generator, "a castle <lora:ink:0.7> <lora:glow:0.5>", lora_dir, seen)
    assert seen[0] == {"unet": ["studio-0", "studio-1"], "text_encoder": ["studio-0"], "text_encoder_2": ["studio-0"]}
    assert not np.array_equal(both, run(generator, "a castle <lora:ink:0.7>", lora_dir))
    assert not np.array_equal(both, run(generator, "a castle <lora:glow:0.5>", lora_dir))
    assert np.abs(both - run(generator, "a castle <lora:glow:0.5> <lora:ink:0.7>", lora_dir)).max() <= 1  # added up
    run(generator, "a castle", lora_dir)
    assert no_lora_layers(generator)


def test_a_lora_on_the_fp16_pipeline(tiny_sdxl_dir: Path, lora_dir: Path):
    """The adapters are fused into fp16 weights (the GPU's dtype, run here on the CPU), and taken out exactly."""
    fp16 = Generator.load(Settings(sdxl_model=str(tiny_sdxl_dir), models_dir=tiny_sdxl_dir.parent, offline=True,
                                   device="cpu", precision="fp16"))
    base = run(fp16, "a castle", lora_dir)
    styled = run(fp16, "a castle <lora:ink:1>", lora_dir)
    assert fp16.pipe.unet.dtype == torch.float16 and np.abs(styled - base).max() > 10
    assert np.array_equal(run(fp16, "a castle", lora_dir), base)


def test_text_encoder_and_unet_weights_apart(generator: Generator, lora_dir: Path):
    base = run(generator, "a castle", lora_dir)
    assert np.array_equal(run(generator, "a castle <lora:ink:0:0>", lora_dir), base)
    text_only = run(generator, "a castle <lora:ink:1:0>", lora_dir)
    unet_only = run(generator, "a castle <lora:ink:0:1>", lora_dir)
    assert not np.array_equal(text_only, base) and not np.array_equal(unet_only, base)
    assert not np.array_equal(text_only, unet_only)


def test_the_tag_is_not_read_by_the_encoders(generator: Generator, lora_dir: Path):
    tagged = generator.encoder.encode("a castle <lora:ink:0.8>, (gold:1.3)", "fog <lora:ink:1>")
    plain = generator.encoder.encode("a castle , (gold:1.3)", "fog ")
    assert all(torch.equal(tagged[k], plain[k]) for k in plain)
    # In the negative prompt a tag applies nothing (LoRAs come from the prompt), and the result says so.
    result = generator.generate(GenerationRequest("a castle", negative_prompt="fog <lora:ink:1>", seed=3, **SMALL),
                                loras=loras_of("a castle", lora_dir))
    assert result.loras == [] and "negative prompt's <lora:...> tags were left out" in result.describe()
    with pytest.raises(InputError, match="not a weight"):
        GenerationRequest("a castle", negative_prompt="<lora:ink:much>").validated()


def test_a_missing_lora_is_refused_before_sdxl_loads(settings: Settings, embedder, tmp_path: Path):
    folder = settings.loras_dir
    (folder / "styles").mkdir(parents=True)
    for name in ("ink.safetensors", "styles/watercolor.safetensors"):
        save_file({"x": torch.zeros(1)}, str(folder / name))
    studio = Studio(settings.with_(sdxl_model=str(tmp_path / "no-such-model")), embedder=embedder)
    with pytest.raises(InputError, match=r"LoRA not found: nope\. Put nope\.safetensors in .*loras.* ink, watercolor"):
        studio.generate("a castle <lora:nope:0.8>")
    assert not studio.sdxl_loaded
    with pytest.raises(InputError, match="LoRA not found"):
        studio.compare("a castle <lora:nope:0.8>", seed=1)
    assert not studio.sdxl_loaded and not studio.llm_loaded
    with pytest.raises(ModelMissingError):  # a LoRA that is there: on to loading SDXL (absent here)
        studio.generate("a castle <lora:watercolor:0.8>")


def test_names_are_looked_up_never_joined_to_a_path(tmp_path: Path):
    for name in ("a.safetensors", "sub/a.safetensors", "my style v1.0.safetensors", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.zeros(1)}, str(tmp_path / name))  # a real (if tiny) safetensors file: headers are checked
    assert list(available(tmp_path)) == ["a", "my style v1.0", "sub/a"]
    assert loras_of("x <lora:sub/a:1> <lora:my style v1.0:0.5>", tmp_path)[1].weight == 0.5
    outside = tmp_path.parent / "outside.safetensors"
    outside.write_bytes(b"")
    with pytest.raises(InputError, match="LoRA not found"):
        loras_of(f"<lora:../{outside.stem}:1>", tmp_path)
    assert available(tmp_path / "absent") == {} and loras_of("no tags", None) == []


def test_a_lora_for_another_model_is_refused_and_leaves_the_model_clean(generator: Generator, tmp_path: Path):
    base = run(generator, "a castle", tmp_path)
    wrong = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.randn(4, 320),
             "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.randn(320, 4)}
    save_file(wrong, str(tmp_path / "sd15.safetensors"))  # real SDXL widths: no layer of the tiny model fits
    with pytest.raises(InputError, match="Could not apply the LoRA sd15.*SDXL"):
        run(generator, "a castle <lora:sd15:1>", tmp_path)
    assert no_lora_layers(generator) and np.array_equal(run(generator, "a castle", tmp_path), base)


def test_saved_prompt_png_and_record_keep_the_loras(gen_studio: Studio, lora_dir: Path):
    gen_studio.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ink.safetensors", "glow.safetensors"):
        shutil.copy(lora_dir / name, gen_studio.settings.loras_dir / name)
    prompt = "a castle on a hill <lora:ink:0.8>, (golden light:1.3) <lora:glow:0.5>"
    result = gen_studio.generate(prompt, negative_prompt="(fog:1.2)", seed=5, width=128, height=128, steps=4)
    params, chunk = read_png(result.saved[0].path)
    assert params.prompt == prompt and params.negative_prompt == "(fog:1.2)"  # verbatim, tags and weights
    data = (lora_dir / "ink.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    ink_hash = hashlib.sha256(data[8 + header:]).hexdigest()[:12]  # kohya-ss's addnet hash, as A1111 shows it
    assert addnet_hash(lora_dir / "ink.safetensors") == ink_hash
    assert params.extra["Lora hashes"] == f"ink: {ink_hash}, glow: {addnet_hash(lora_dir / 'glow.safetensors')}"
    assert [(lo["name"], lo["weight"], lo["file"]) for lo in chunk["loras"]] == [
        ("ink", 0.8, "ink.safetensors"), ("glow", 0.5, "glow.safetensors")]
    stored = gen_studio.store.get("images", [result.saved[0].image_id])[0]
    assert [lo["name"] for lo in json.loads(stored.metadata["loras"])] == ["ink", "glow"]
    assert "LoRA ink at 0.8" in result.describe() and result.to_dict()["loras"][1]["name"] == "glow"
    # Evidence for a person: the same seed with and without the LoRAs and the weights, and the parameters text.
    out = ARTIFACTS / "loras"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(result.saved[0].path, out / "with-loras-and-weights.png")
    shown = [np.asarray(result.images[0], dtype=np.int16)]
    for name, text, negative in (("without-loras", "a castle on a hill , (golden light:1.3) ", "(fog:1.2)"),
                                 ("without-loras-or-weights", "a castle on a hill , golden light ", "fog")):
        other = gen_studio.generate(text, negative_prompt=negative, seed=5, width=128, height=128, steps=4)
        shutil.copy(other.saved[0].path, out / f"{name}.png")
        shown.append(np.asarray(other.images[0], dtype=np.int16))
    for name, a, b in (("difference-loras-x8", shown[0], shown[1]), ("difference-weights-x8", shown[1], shown[2])):
        assert not np.array_equal(a, b)
        Image.fromarray(np.clip(np.abs(a - b) * 8, 0, 255).astype(np.uint8)).save(out / f"{name}.png")
    with Image.open(result.saved[0].path) as img:  # the text A1111's PNG Info shows
        (out / "parameters.txt").write_text(img.info["parameters"], encoding="utf-8")


def test_cli_lists_loras_and_generates_with_one(tmp_path: Path, tiny_clip_dir: Path, tiny_sdxl_dir: Path,
                                                lora_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture):
    from studio.cli import main

    models = tmp_path / "models"
    shutil.copytree(lora_dir, models / "loras")
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(models))
    common = ["--home", str(tmp_path / "home"), "--clip-model", str(tiny_clip_dir), "--sdxl-model",
              str(tiny_sdxl_dir), "--device", "cpu", "--offline"]
    assert main(["loras", *common, "--json"]) == 0
    assert [lo["name"] for lo in json.loads(capsys.readouterr().out)["loras"]] == ["glow", "ink", "ink-kohya"]
    assert main(["loras", *common]) == 0 and "<lora:NAME:0.8>" in capsys.readouterr().out
    prompt = "a castle <lora:ink:0.8>, (gold:1.3)"
    assert main(["generate", prompt, "--seed", "5", "--steps", "2", "--width", "64", "--height", "64", *common,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["request"]["prompt"] == prompt and out["loras"][0]["name"] == "ink"
    assert read_png(Path(out["saved"][0]["path"]))[0].prompt == prompt
    assert main(["generate", "a castle <lora:nope:1>", *common, "--json"]) == 2
    assert "glow, ink, ink-kohya" in json.loads(capsys.readouterr().out)["error"]


def test_create_tab_picker_inserts_a_tag(studio: Studio):
    import gradio as gr

    from studio.ui.loras import lora_picker, with_lora

    assert with_lora("a castle", "ink") == "a castle, <lora:ink:0.8>"
    assert with_lora("a castle, ", "ink") == "a castle, <lora:ink:0.8>"
    assert with_lora("", "ink") == "<lora:ink:0.8>" and with_lora("a castle", None) == "a castle"
    names = ["ink"]
    with gr.Blocks() as demo:
        prompt = gr.Textbox(elem_id="create-prompt")
        picked = lora_picker(lambda: list(names), prompt)
    assert [c[0] for c in picked.choices] == ["ink"]
    names.append("glow")  # a file added while the page is open: the list is read again when opened
    refresh = next(f for f in demo.fns.values() if picked in f.inputs or (f.outputs == [picked]))
    assert [c[0] for c in refresh.fn().choices] == ["ink", "glow"]
