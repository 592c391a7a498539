"""Shared fixtures: tiny real CLIP from a config, a real Chroma store in tmp, the real sample; no network."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub, gradio or chromadb: nothing may phone home.
_TMP = Path(tempfile.mkdtemp(prefix="studio-tests-"))
for key, value in {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "STUDIO_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False", "ANONYMIZED_TELEMETRY": "False", "DO_NOT_TRACK": "1",
    "HOME": str(_TMP / "home"), "HF_HOME": str(_TMP / "hf"), "TMPDIR": str(_TMP / "tmp"),
}.items():
    os.environ[key] = value
(_TMP / "home").mkdir(exist_ok=True)
(_TMP / "tmp").mkdir(exist_ok=True)
tempfile.tempdir = None  # re-read TMPDIR

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from studio.config import Settings  # noqa: E402
from studio.studio import Studio  # noqa: E402
from tests.tiny import build_clip  # noqa: E402
from tests.tiny_sdxl import build_tiny_sdxl  # noqa: E402

SAMPLE = ROOT / "data" / "diffusiondb-sample"
SAMPLE_IMAGES = SAMPLE / "images"
SMALL = dict(width=64, height=64, steps=2)  # the tiny SDXL's sizes: a whole run well under a second


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def embedder(tiny_clip_dir: Path):
    from studio.search.embed import ClipEmbedder

    return ClipEmbedder.load(Settings(clip_model=str(tiny_clip_dir), offline=True, device="cpu"))


@pytest.fixture(scope="session")
def multilingual_dir(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, embedder) -> Path:
    """A tiny multilingual encoder distilled from the tiny CLIP on the sample's prompts and their
    translations (tests/tiny_multilingual.py), saved as a SentenceTransformer folder."""
    from tests.tiny_multilingual import build_multilingual

    folder = tmp_path_factory.mktemp("models") / "tiny-multilingual"
    build_multilingual(folder, embedder, str(tiny_clip_dir))
    return folder


@pytest.fixture(scope="session")
def multilingual(multilingual_dir: Path, tiny_clip_dir: Path):
    """That encoder, loaded the way users load theirs (MultilingualEncoder.load -> SentenceTransformer)."""
    from studio.search.multilingual import MultilingualEncoder

    return MultilingualEncoder.load(Settings(clip_model=str(tiny_clip_dir), multilingual_model=str(multilingual_dir),
                                             offline=True, device="cpu"))


@pytest.fixture
def settings(tmp_path: Path, tiny_clip_dir: Path) -> Settings:
    return Settings(home=tmp_path / "home", models_dir=tmp_path / "models", clip_model=str(tiny_clip_dir),
                    offline=True, device="cpu", sample_dir=SAMPLE)


@pytest.fixture
def studio(settings: Settings, embedder) -> Studio:
    return Studio(settings, embedder=embedder)


@pytest.fixture(scope="session")
def sample_studio(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, embedder) -> Studio:
    """A store holding the whole shipped sample; read-only for the tests that share it."""
    home = tmp_path_factory.mktemp("sample-home")
    s = Settings(home=home, models_dir=home / "models", clip_model=str(tiny_clip_dir), offline=True,
                 device="cpu", sample_dir=SAMPLE)
    studio = Studio(s, embedder=embedder)
    studio.ingest_sample()
    return studio


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    build_tiny_sdxl(folder)
    return folder


@pytest.fixture(scope="session")
def generator(tiny_sdxl_dir: Path):
    """Loaded the way users load a diffusers folder (Generator.load -> from_pretrained), once."""
    from studio.generate.generator import Generator

    return Generator.load(Settings(sdxl_model=str(tiny_sdxl_dir), models_dir=tiny_sdxl_dir.parent, offline=True,
                                   device="cpu"))


@pytest.fixture
def gen_studio(settings: Settings, embedder, generator) -> Studio:
    return Studio(settings, embedder=embedder, generator=generator)
