"""One place chooses a reader for a source (studio/ingest/readers.py): sources.py and outputs.py import it never and
each other never (issue 23: the import circle and the three places that chose)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from PIL import Image

import studio.ingest as ingest
from studio.errors import InputError
from studio.ingest.readers import choose_reader, is_image_folder

INGEST = Path(ingest.__file__).parent


def imported(module: str) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    tree = ast.parse((INGEST / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_outputs_and_sources_do_not_import_each_other_nor_the_chooser():
    assert not imported("outputs") & {"studio.ingest.sources", "studio.ingest.readers"}
    assert not imported("sources") & {"studio.ingest.outputs", "studio.ingest.readers"}
    assert "studio.ingest.readers" in imported("ingester")
    # The ingester asks the chooser; it no longer picks a reader itself.
    assert not imported("ingester") & {"studio.ingest.outputs"}


def test_a_folder_of_images_is_read_as_images_and_a_part_folder_as_a_part(tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), "red").save(images / "a.png")
    reader = choose_reader(str(images), tmp_path, offline=True)
    assert reader.images and is_image_folder(images)
    assert [r.source for r in reader.read(False)] == ["user"]

    part = tmp_path / "part"
    part.mkdir()
    Image.new("RGB", (8, 8), "blue").save(part / "b.png")
    (part / "part-000001.json").write_text(json.dumps({"b.png": {"p": "a blue square", "se": 1}}), encoding="utf-8")
    reader = choose_reader(str(part), tmp_path, offline=True)
    assert not reader.images and not is_image_folder(part)
    assert [(r.prompt, r.part) for r in reader.read(False)] == [("a blue square", "part-000001")]


def test_what_is_wrong_with_a_source_is_said_when_it_is_read(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (str(empty), str(tmp_path / "missing"), str(tmp_path / "notes.txt")):
        (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
        reader = choose_reader(source, tmp_path, offline=True)  # choosing never raises
        with pytest.raises(InputError):
            list(reader.read(False))
