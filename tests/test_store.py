"""The store: refusal of another CLIP's store, and the same store tests through a real `chroma run` server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.errors import StoreMismatchError, StoreUnavailableError
from studio.search.store import normalise
from studio.studio import Studio
from studio.search.store import model_key
from tests.chromaserver import ChromaServer, free_port
from tests.conftest import SAMPLE, SAMPLE_IMAGES
from tests.tiny import build_clip



@pytest.fixture(scope="module")
def other_clip(tmp_path_factory: pytest.TempPathFactory):
    from studio.config import Settings
    from studio.search.embed import ClipEmbedder

    folder = build_clip(tmp_path_factory.mktemp("models") / "other-clip", seed=1, projection_dim=24)
    return ClipEmbedder.load(Settings(clip_model=str(folder), offline=True, device="cpu"))


def test_model_keys_are_collection_safe() -> None:
    assert model_key("openai/clip-vit-base-patch32") == "clip-vit-base-patch32"
    assert model_key("/home/me/models/CLIP ViT-L/14@336/") == "14-336"
    assert model_key("???") == "clip"


def test_a_store_made_with_another_clip_is_refused(studio: Studio, other_clip) -> None:
    studio.ingest(str(SAMPLE_IMAGES))
    other = Studio(studio.settings.with_(clip_model=other_clip.name), embedder=other_clip)
    with pytest.raises(StoreMismatchError, match=r"built with CLIP .*tiny-clip \(16-d\), not .*other-clip"):
        other.search("a castle")
    assert "STUDIO_CLIP_MODEL" in (other.check_store() or "")
    # Building a second index beside it is allowed, and keeps the two apart.
    other.ingest(str(SAMPLE_IMAGES))
    assert other.store.count("images") == 3 and studio.store.count("images") == 3
    assert {c.name for c in studio.client.list_collections()} == {
        "prompts__tiny-clip", "images__tiny-clip", "prompts__other-clip", "images__other-clip"}


def test_same_name_other_dimension_is_refused(studio: Studio, other_clip, tmp_path: Path) -> None:
    """The weights in a model folder changed (same name, other size): say so, never a dimension crash."""
    studio.ingest(str(SAMPLE_IMAGES))
    other_clip_same_name = type(other_clip)(other_clip.model, other_clip.tokenizer, other_clip.image_processor,
                                            name=studio.embedder.name)
    swapped = Studio(studio.settings, embedder=other_clip_same_name)
    with pytest.raises(StoreMismatchError, match="holds 16-d vectors.*makes 24-d"):
        swapped.search("a castle")


@pytest.fixture(scope="module")
def same_name_other_weights(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path):
    """A copy of the tiny CLIP's folder name with other weights (a fine-tune, another revision), same size."""
    from studio.config import Settings
    from studio.search.embed import ClipEmbedder

    folder = build_clip(tmp_path_factory.mktemp("elsewhere") / tiny_clip_dir.name, seed=7)
    return ClipEmbedder.load(Settings(clip_model=str(folder), offline=True, device="cpu"))


def _records(studio: Studio) -> dict[str, int]:
    return {c.name: c.count() for c in studio.client.list_collections()}


def test_same_folder_name_other_weights_is_refused_and_the_store_unchanged(studio: Studio, same_name_other_weights):
    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    before = _records(studio)
    assert same_name_other_weights.fingerprint != studio.embedder.fingerprint
    assert model_key(same_name_other_weights.name) == studio.store.key  # the old guard saw one model
    swapped = Studio(studio.settings.with_(clip_model=same_name_other_weights.name), embedder=same_name_other_weights)
    with pytest.raises(StoreMismatchError) as err:
        swapped.ingest(str(SAMPLE_IMAGES))
    message = str(err.value)
    assert studio.embedder.fingerprint in message and same_name_other_weights.fingerprint in message
    assert studio.settings.clip_model in message and same_name_other_weights.name in message
    assert "nothing was changed" in message and "another name" in message
    with pytest.raises(StoreMismatchError):
        swapped.search("a castle")
    assert _records(studio) == before


def test_the_same_weights_under_another_path_open_the_store(studio: Studio, tiny_clip_dir: Path, tmp_path: Path):
    import shutil

    from studio.search.embed import ClipEmbedder

    studio.ingest(str(SAMPLE_IMAGES))
    copy = shutil.copytree(tiny_clip_dir, tmp_path / "moved" / tiny_clip_dir.name)
    moved = ClipEmbedder.load(studio.settings.with_(clip_model=str(copy)))
    assert moved.fingerprint == studio.embedder.fingerprint
    assert Studio(studio.settings.with_(clip_model=str(copy)), embedder=moved).search("a castle").results


def test_a_store_from_before_fingerprints_is_checked_by_its_own_vectors(studio: Studio, same_name_other_weights):
    from studio.search.store import PromptStore

    legacy = PromptStore(studio.client, studio.embedder.name, studio.embedder.dim)  # as stores were made before
    from studio.ingest.pipeline import ingest_rows
    from studio.ingest.readers import read_source

    ingest_rows(read_source(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"), studio.settings.home, True),
                legacy, studio.embedder, bars=False)
    assert "fingerprint" not in (legacy.collections["prompts"].metadata or {})
    swapped = Studio(studio.settings.with_(clip_model=same_name_other_weights.name), embedder=same_name_other_weights)
    with pytest.raises(StoreMismatchError, match=r"do not match what this model makes \(similarity"):
        swapped.search("a castle")
    assert studio.search("a castle").results  # the model that made it: checked, then its fingerprint recorded
    meta = studio.client.get_collection(legacy.names["images"]).metadata
    assert meta["fingerprint"] == studio.embedder.fingerprint
    with pytest.raises(StoreMismatchError, match="fingerprint"):
        Studio(studio.settings, embedder=same_name_other_weights).search("a castle")


def test_a_store_made_with_a_shallower_search_opens_with_ours(studio: Studio) -> None:
    """A store from before ef_search was raised (or made by Chroma's default, 100) searches at HNSW's depth
    once opened (bench/hnsw.py: recall@10 at 1M stand-in prompts rises with it)."""
    from studio.search.store import HNSW, PromptStore

    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    names = studio.store.names
    for kind in names:
        studio.client.get_collection(names[kind]).modify(configuration={"hnsw": {"ef_search": 100}})
    assert studio.client.get_collection(names["prompts"]).configuration["hnsw"]["ef_search"] == 100
    PromptStore(studio.client, studio.embedder.name, studio.embedder.dim)  # opened as a new launch opens it
    for kind in names:
        assert studio.client.get_collection(names[kind]).configuration["hnsw"]["ef_search"] == HNSW["ef_search"]
    assert HNSW["ef_search"] > 100


@pytest.fixture
def chroma_url(tmp_path_factory: pytest.TempPathFactory):
    """A real Chroma server (`chroma run`) on 127.0.0.1, for STUDIO_CHROMA_URL: one per test, since a test that
    starts from an empty server must not find another's collections (pytest-randomly picks the order)."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server")).start()
    yield server.url
    server.stop()


def test_server_store_ingests_searches_and_refuses(settings, embedder, other_clip, chroma_url: str) -> None:
    studio = Studio(settings.with_(chroma_url=chroma_url), embedder=embedder)
    assert studio.is_empty()
    studio.ingest(str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"))
    report = studio.ingest(str(SAMPLE_IMAGES))
    assert report.images_new == 3
    assert not settings.store_dir.exists()  # nothing written to the embedded store
    prompt = "royal side - view portrait of a man wearing a slim crown"
    top = studio.search(prompt + ", buzzcut, stubble, wears a red coat, gothic stained glass window, shiny blue "
                        "background, very masterful, backlit", k=3).results[0]
    assert normalise(top.prompt).startswith(prompt)
    image = SAMPLE_IMAGES / "2m_first_1k-idx507_from-nobbettt-demo.png"
    assert studio.similar_images(image, k=1).results[0].id == image.name
    assert studio.reverse(image, k=3).results[0].prompt.startswith("cyberpunk coral emperor")
    assert studio.stats().store == chroma_url
    # A rerun through the server is idempotent too.
    again = studio.ingest(str(SAMPLE_IMAGES))
    assert (again.prompts_new, again.images_new, again.images_unchanged) == (0, 0, 3)
    other = Studio(settings.with_(chroma_url=chroma_url, clip_model=other_clip.name), embedder=other_clip)
    with pytest.raises(StoreMismatchError, match="tiny-clip"):
        other.search("a castle")


def test_server_store_refuses_same_name_other_weights(settings, embedder, same_name_other_weights, chroma_url: str):
    studio = Studio(settings.with_(chroma_url=chroma_url), embedder=embedder)
    studio.ingest(str(SAMPLE_IMAGES))
    swapped = Studio(settings.with_(chroma_url=chroma_url), embedder=same_name_other_weights)
    with pytest.raises(StoreMismatchError, match="fingerprint"):
        swapped.ingest(str(SAMPLE_IMAGES))


def test_unreachable_server_says_how_to_start_one(settings, embedder) -> None:
    studio = Studio(settings.with_(chroma_url=f"http://127.0.0.1:{free_port()}"), embedder=embedder)
    with pytest.raises(StoreUnavailableError, match="chroma run --path"):
        studio.search("a castle")


def _server_prompts(port: int) -> int:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    return sum(c.count() for c in client.list_collections() if c.name.startswith("prompts__"))


def test_a_server_stopped_and_restarted_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path, tiny_clip_dir: Path):
    import json
    import os

    from tests.conftest import ROOT

    server = ChromaServer(tmp_path / "server").start()
    port = server.port
    env = os.environ | {"STUDIO_HOME": str(tmp_path / "home"), "STUDIO_CLIP_MODEL": str(tiny_clip_dir),
                        "STUDIO_CHROMA_URL": server.url, "STUDIO_CHROMA_RETRY_S": "60"}
    source = str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv")
    cmd = [sys.executable, "-m", "studio", "ingest", source, "--json"]
    ingest = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ingest.poll() is None:
            try:
                if _server_prompts(port) > 0:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        assert ingest.poll() is None, "the ingest ended before the server could be stopped"
        server.stop()
        time.sleep(3)  # the ingest meets a dead server for a few seconds
        server.start()
        out, err = ingest.communicate(timeout=300)
        assert ingest.returncode == 0, err[-2000:]
        first = json.loads(out)
        total = _server_prompts(port)
        assert first["prompts_new"] + first["prompts_unchanged"] + first["prompts_updated"] == total
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        report = json.loads(again.stdout)
        assert report["prompts_new"] == 0 and report["prompts_unchanged"] == total  # nothing lost, nothing twice
        assert _server_prompts(port) == total
    finally:
        ingest.kill()
        server.stop()


def test_a_server_that_stays_down_ends_the_ingest_in_one_line(tmp_path: Path, tiny_clip_dir: Path):
    import os

    from tests.conftest import ROOT

    server = ChromaServer(tmp_path / "server").start()
    port = server.port
    env = os.environ | {"STUDIO_HOME": str(tmp_path / "home"), "STUDIO_CLIP_MODEL": str(tiny_clip_dir),
                        "STUDIO_CHROMA_URL": server.url, "STUDIO_CHROMA_RETRY_S": "3"}
    cmd = [sys.executable, "-m", "studio", "ingest", str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv")]
    ingest = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ingest.poll() is None:
            try:
                if _server_prompts(port) > 0:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        server.stop(kill=True)
        _, err = ingest.communicate(timeout=120)
        assert ingest.returncode == 2 and "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: The Chroma server at") and "run the same command to resume" in last
    finally:
        ingest.kill()
