"""Messages that say what happened: a full disk (write-back, ingest, the page), a model folder of the wrong kind,
a LoRA file that is not a safetensors file or lies outside models/loras; never "Nothing was lost" when it was."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from studio.config import Settings
from studio.errors import InputError
from studio.generate.request import GenerationRequest, GenerationResult
from studio.library.pngmeta import write_png
from studio.library.writeback import Lineage, write_back
from studio.studio import Studio
from studio.ui.common import message_for


def _result(n: int) -> GenerationResult:
    req = GenerationRequest("a lighthouse in a storm", seed=5, width=64, height=64, steps=2, n=n).validated()
    images = [Image.new("RGB", (64, 64), (40 * i + 20, 90, 120)) for i in range(n)]
    return GenerationResult(req, images, "tiny-sdxl", "cpu", steps_done=2)


def test_a_full_disk_after_the_first_image_says_which_were_not_saved(settings: Settings, embedder):
    studio = Studio(settings, embedder=embedder)
    written: list[Path] = []

    def fills_up(image, path, parameters, chunk):  # the disk fills after the first PNG
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(write_png(image, path, parameters, chunk))
        return written[-1]

    result = _result(4)
    saved = write_back(result, settings.outputs_dir, Lineage(), lambda: (studio.store_for(create=True), embedder),
                       write=fills_up)
    assert [s.written for s in saved] == [True, False, False, False]
    assert saved[0].stored and saved[0].path == written[0] and saved[0].error is None
    assert all(s.path is None and not s.stored and "disk is full" in s.error for s in saved[1:])
    said = " ".join(result.notes) + result.describe()
    assert "3 of 4 images were NOT saved" in said and "seed 6, 7, 8" in said and str(written[0]) in said
    assert "nothing was lost" not in said.lower()
    assert [p.name for p in settings.outputs_dir.iterdir()] == [written[0].name]  # no partial files left
    assert len(studio.store.get("images", [saved[0].image_id])) == 1


def test_the_page_says_disk_full_and_never_that_nothing_was_lost():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "disk is full" in message_for(full) and "nothing was lost" not in message_for(full).lower()
    try:  # ENOSPC deep in the chain, under a store's own error
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("sqlite3 write failed") from exc
    except RuntimeError as outer:
        assert "disk is full" in message_for(outer)
    corrupt = RuntimeError("database disk image is malformed")
    assert "nothing was lost" not in message_for(corrupt).lower() and "malformed" in message_for(corrupt)


def test_chromas_compaction_error_is_a_full_disk_only_when_the_disk_is_full():
    from chromadb.errors import InternalError

    from studio.errors import disk_full

    compaction = InternalError("Error in compaction: Failed to apply logs to the metadata segment")
    assert disk_full(compaction, free_bytes=0) and not disk_full(compaction, free_bytes=50 * 2**30)
    assert disk_full(InternalError("Error executing plan: database or disk is full"))


def test_outputs_are_written_with_a_normal_files_mode(tmp_path: Path):
    old = os.umask(0o022)
    try:
        path = write_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", _params(), {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _params():
    from studio.library.pngmeta import Parameters

    return Parameters("a test")


class _FullStore:
    """A real store whose writes fail as Chroma's do on a full disk (its compaction error, no errno)."""

    def __init__(self, store) -> None:
        self._store = store
        self.adds = 0

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def add(self, *args, **kwargs):
        from chromadb.errors import InternalError

        self.adds += 1
        raise InternalError("Error in compaction: Failed to apply logs to the metadata segment")


def test_an_ingest_on_a_full_disk_says_disk_full_not_compaction(settings: Settings, embedder):
    from studio.errors import DiskFullError
    from studio.ingest.ingester import Ingester
    from tests.conftest import SAMPLE

    studio = Studio(settings, embedder=embedder)
    full = _FullStore(studio.store_for(create=True))
    ingester = Ingester(settings, lambda create: full, lambda: embedder)
    ingester.free_bytes = lambda: 0  # the seam: the disk the store is on has no space left
    table = str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv")
    with pytest.raises(DiskFullError) as said:
        ingester.ingest(table)
    text = str(said.value)
    assert full.adds and text.startswith("The disk is full") and str(settings.store_dir) in text
    assert "run the same ingest again" in text and "compaction" in text  # the store's own words kept, after ours
    ingester.free_bytes = lambda: 50 * 2**30  # plenty of space: not put down to the disk
    with pytest.raises(Exception) as other:
        ingester.ingest(table)
    assert not isinstance(other.value, DiskFullError) and "compaction" in str(other.value)


def test_a_folder_holding_another_kind_of_model_is_called_the_wrong_kind(settings: Settings, tiny_clip_dir: Path):
    from studio.errors import ModelMissingError
    from studio.weights import ensure

    sdxl = settings.models_dir / "sdxl-base"
    sdxl.mkdir(parents=True)
    (sdxl / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    with pytest.raises(ModelMissingError) as said:
        ensure("clip", settings.with_(clip_model=str(sdxl)))
    text = str(said.value)
    assert "not on this machine" not in text and "wrong kind" in text
    assert "diffusers pipeline (StableDiffusionXLPipeline)" in text and "STUDIO_CLIP_MODEL" in text
    with pytest.raises(ModelMissingError, match=r"holds a transformers model \(clip\).*must be a diffusers SDXL"):
        ensure("sdxl", settings.with_(sdxl_model=str(tiny_clip_dir)))
    with pytest.raises(ModelMissingError, match="not on this machine"):  # really absent: as before
        ensure("sdxl", settings.with_(sdxl_model=str(settings.models_dir / "nowhere")))


def test_a_lora_that_is_no_safetensors_file_or_links_out_is_refused_before_it_is_read(tmp_path: Path):
    from studio.generate.loras import addnet_hash, loras_of

    folder = tmp_path / "loras"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    (folder / "passwd.safetensors").symlink_to(secret)
    (folder / "notes.safetensors").write_text("these are not tensors, just a long text file " * 10)
    with pytest.raises(InputError, match="link to a file outside .*copy the file itself"):
        loras_of("a castle <lora:passwd:0.8>", folder)
    with pytest.raises(InputError, match="notes .*is not a safetensors file"):
        loras_of("a castle <lora:notes:0.8>", folder)
    with pytest.raises(InputError, match="not a safetensors file"):  # never an OSError from a wild seek
        addnet_hash(folder / "notes.safetensors")
    inside = folder / "sub"
    inside.mkdir()
    (inside / "alias.safetensors").symlink_to(folder / "notes.safetensors")  # a link within the folder: followed
    with pytest.raises(InputError, match="alias .*is not a safetensors file"):
        loras_of("<lora:alias>", folder)
