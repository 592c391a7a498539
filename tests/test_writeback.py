"""Results kept: A1111 PNG metadata, write-back to Chroma with lineage, history, repair, compare."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.config import Settings
from studio.errors import InputError
from studio.generate.request import GenerationRequest
from studio.generate.generator import Generator
from studio.search.store import prompt_id
from studio.library.pngmeta import (
    PARAMETERS_KEY,
    STUDIO_KEY,
    Parameters,
    format_parameters,
    parse_parameters,
    read_png,
)
from studio.studio import Studio
from studio.ingest.outputs import read_outputs
from studio.ingest.readers import read_source
from studio.library.writeback import Lineage, save_outputs
from tests.conftest import SAMPLE_IMAGES, SMALL

# -- PNG metadata --------------------------------------------------------------------------
_A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_parse(x: str) -> dict[str, str]:
    """AUTOMATIC1111's parse_generation_parameters (modules/infotext_utils.py): the text-reading part, as it is."""
    res: dict[str, str] = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(_A1111_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt
    for k, v in _A1111_PARAM.findall(lastline):
        if v[:1] == '"' and v[-1:] == '"':
            v = json.loads(v)
        m = re.match(r"^(\d+)x(\d+)$", v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def png_chunks(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8].decode("ascii"), data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def test_parameters_text_is_a1111s_format():
    p = Parameters("a castle, (masterpiece:1.2)", "blurry, lowres", 30, "DPM++ 2M Karras", 7.0, 1234, 1024, 768,
                   "sd_xl_base_1.0")
    text = format_parameters(p)
    assert text == ("a castle, (masterpiece:1.2)\nNegative prompt: blurry, lowres\n"
                    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 1024x768, Model: sd_xl_base_1.0")
    assert a1111_parse(text) == {"Prompt": "a castle, (masterpiece:1.2)", "Negative prompt": "blurry, lowres",
                                 "Steps": "30", "Sampler": "DPM++ 2M Karras", "CFG scale": "7", "Seed": "1234",
                                 "Size-1": "1024", "Size-2": "768", "Model": "sd_xl_base_1.0"}
    assert parse_parameters(text) == p
    # A1111 omits the negative line when there is none; values with commas/colons are JSON-quoted.
    odd = Parameters("line one\nline two", "", 4, "Euler a", 0.0, 7, 512, 512, "my, model: v2")
    text = format_parameters(odd)
    assert "Negative prompt" not in text and 'Model: "my, model: v2"' in text
    assert a1111_parse(text)["Model"] == "my, model: v2" and a1111_parse(text)["Prompt"] == "line one\nline two"
    assert parse_parameters(text) == odd
    # Someone else's A1111 text, straight from A1111's docstring.
    theirs = parse_parameters("girl with a beret\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                              "Seed: 965400086, Size: 512x512, Model hash: 45dee52b")
    assert (theirs.prompt, theirs.negative_prompt, theirs.steps, theirs.seed, theirs.width) == (
        "girl with a beret", "ugly", 20, 965400086, 512)
    assert theirs.extra == {"Model hash": "45dee52b"}


def test_generated_png_reads_back_in_a1111_and_ours(gen_studio: Studio):
    lineage = Lineage(idea="a fox", retrieved_ids=["p-1", "p-2"], llm_model="smollm2", parent="p-1")
    result = gen_studio.generate("a red fox, snow — ☃ winter", negative_prompt="blurry", seed=77, lineage=lineage,
                                 scheduler="Euler a", cfg=5.5, **SMALL)
    path = result.saved[0].path
    with Image.open(path) as img:  # how A1111's PNG Info reads it: image.info["parameters"]
        info = dict(img.info)
    parsed = a1111_parse(info[PARAMETERS_KEY])
    assert parsed == {"Prompt": "a red fox, snow — ☃ winter", "Negative prompt": "blurry", "Steps": "2",
                      "Sampler": "Euler a", "CFG scale": "5.5", "Seed": "77", "Size-1": "64", "Size-2": "64",
                      "Model": "tiny-sdxl"}
    params, chunk = read_png(path)
    assert params is not None and params.prompt == "a red fox, snow — ☃ winter" and params.cfg == 5.5
    assert chunk is not None and chunk["image_id"] == result.saved[0].image_id and chunk["seed"] == 77
    assert chunk["lineage"]["retrieved_ids"] == ["p-1", "p-2"] and chunk["model"] == str(gen_studio.generator.name)
    chunks = png_chunks(path)
    # Non-Latin-1 text goes into iTXt (UTF-8), which A1111 reads through PIL; both come before the pixels.
    keys = {data.split(b"\0", 1)[0].decode(): t for t, data in chunks if t in ("tEXt", "iTXt")}
    assert keys == {PARAMETERS_KEY: "iTXt", STUDIO_KEY: "iTXt"}
    types = [t for t, _ in chunks]
    assert max(i for i, t in enumerate(types) if t == "iTXt") < types.index("IDAT")
    plain = gen_studio.generate("a plain latin prompt", seed=1, **SMALL).saved[0].path
    assert {data.split(b"\0", 1)[0].decode(): t for t, data in png_chunks(plain) if t in ("tEXt", "iTXt")}[
        PARAMETERS_KEY] == "tEXt"


# -- write-back, history, repair -------------------------------------------------------------
def test_write_back_adds_one_image_and_one_prompt_with_lineage(gen_studio: Studio):
    gen_studio.ingest(str(SAMPLE_IMAGES))  # three DiffusionDB images and their prompts already stored
    store = gen_studio.store
    before = (store.count("images"), store.count("prompts"))
    lineage = Lineage(idea="fox", retrieved_ids=["p-a"], llm_model="llm.gguf", parent="p-a")
    prompt = "a small red fox sleeping in fresh snow, golden hour"
    result = gen_studio.generate(prompt, seed=11, lineage=lineage, **SMALL)
    saved = result.saved[0]
    assert saved.stored and saved.error is None and saved.path.is_file()
    assert (store.count("images"), store.count("prompts")) == (before[0] + 1, before[1] + 1)
    image = store.get("images", [saved.image_id])[0]
    assert image.metadata["source"] == "generated" and image.metadata["prompt_id"] == prompt_id(prompt)
    assert image.metadata["file"] == str(saved.path.resolve()) and image.metadata["seed"] == 11
    assert (image.metadata["idea"], image.metadata["llm_model"], image.metadata["parent"]) == ("fox", "llm.gguf", "p-a")
    assert json.loads(image.metadata["retrieved_ids"]) == ["p-a"]
    assert image.metadata["sdxl_model"] == gen_studio.generator.name
    hit = gen_studio.search(prompt, k=1).results[0]
    assert hit.id == prompt_id(prompt) and hit.metadata["source"] == "generated"
    assert hit.metadata["idea"] == "fox" and hit.metadata["image_id"] == saved.image_id
    assert hit.metadata["image_count"] == 1


def test_generating_from_a_stored_prompt_keeps_its_record(gen_studio: Studio):
    gen_studio.ingest(str(SAMPLE_IMAGES))
    theirs = gen_studio.store.get("images", limit=1)[0]
    old = gen_studio.store.get("prompts", [theirs.metadata["prompt_id"]])[0]
    count = gen_studio.store.count("prompts")
    gen_studio.generate(old.document, seed=1, n=2, **SMALL)
    new = gen_studio.store.get("prompts", [old.id])[0]
    assert gen_studio.store.count("prompts") == count
    assert new.metadata["source"] == "diffusiondb" and json.loads(new.metadata["counts"])["outputs"] == 2
    assert new.metadata["image_count"] == old.metadata["image_count"] + 2


def test_history_newest_first_and_by_text_or_image(gen_studio: Studio):
    gen_studio.ingest(str(SAMPLE_IMAGES))  # DiffusionDB images: never part of our history
    first = gen_studio.generate("a lighthouse in a storm", seed=1, **SMALL).saved[0]
    second = gen_studio.generate("a bowl of ramen", seed=2, n=2, **SMALL).saved
    newest = gen_studio.history()
    assert [h.id for h in newest.results] == [second[0].image_id, second[1].image_id, first.image_id]
    assert [h.id for h in gen_studio.history(limit=1).results] == [second[0].image_id]
    by_text = gen_studio.history("a lighthouse in a storm", limit=10)
    # only what the text matches (the ramen is not "closest" to a lighthouse: it is left out, and counted)
    assert [h.id for h in by_text.results] == [first.image_id] and by_text.hidden == 2
    by_image = gen_studio.history(str(first.path), limit=1)
    assert by_image.results[0].id == first.image_id and by_image.results[0].distance == pytest.approx(0, abs=1e-5)
    from tests.test_counts import from_stats, scanned

    assert from_stats(gen_studio) == scanned(gen_studio)  # write-back keeps the counters exact
    assert from_stats(gen_studio)[gen_studio.store.names["images"]]["generated"] == 3


def test_reingesting_outputs_adds_nothing(gen_studio: Studio):
    gen_studio.generate("a cabin in the woods", seed=4, n=2, **SMALL)
    counts = (gen_studio.store.count("images"), gen_studio.store.count("prompts"))
    report = gen_studio.ingest(str(gen_studio.settings.outputs_dir))
    assert (report.rows, report.images_new, report.prompts_new, report.images_unchanged) == (2, 0, 0, 2)
    assert (gen_studio.store.count("images"), gen_studio.store.count("prompts")) == counts


def test_a_killed_write_back_is_repaired_by_ingest(gen_studio: Studio, generator: Generator):
    outputs = gen_studio.settings.outputs_dir
    result = generator.generate(GenerationRequest("a paper boat on a river", seed=8, **SMALL))
    # The process dies right after the file is written (write-back's first step), before any store write.
    saved, chunk, _ = save_outputs(result, outputs, Lineage(idea="boat", parent="p-x"))[0]
    report = gen_studio.ingest(str(outputs))
    assert (report.images_new, report.prompts_new) == (1, 1)
    image = gen_studio.store.get("images", [saved.image_id])[0]
    assert image.metadata["source"] == "generated" and image.metadata["idea"] == "boat"
    assert image.metadata["parent"] == "p-x" and image.metadata["seed"] == 8
    assert gen_studio.search("a paper boat on a river", k=1).results[0].id == saved.prompt_id
    # Killed between the image record and the prompt record: the ingest adds the prompt only.
    gen_studio.store.collections["prompts"].delete(ids=[saved.prompt_id])
    report = gen_studio.ingest(str(outputs))
    assert (report.images_new, report.prompts_new) == (0, 1)
    assert gen_studio.store.get("prompts", [saved.prompt_id])[0].metadata["image_count"] == 1


def test_a_store_failure_keeps_the_file_and_says_how_to_repair(settings: Settings, embedder, generator: Generator):
    settings.home.mkdir(parents=True)
    settings.store_dir.write_text("a file where the store folder should be")  # Chroma cannot open it
    result = Studio(settings, embedder=embedder, generator=generator).generate("a windmill", seed=2, **SMALL)
    saved = result.saved[0]
    assert saved.path.is_file() and not saved.stored and "python -m studio ingest" in (saved.error or "")
    settings.store_dir.unlink()
    report = Studio(settings, embedder=embedder).ingest(str(settings.outputs_dir))
    assert (report.images_new, report.prompts_new) == (1, 1)


def test_outputs_folder_reader_and_a1111_pngs(gen_studio: Studio, tmp_path: Path):
    gen_studio.generate("a teapot", seed=6, **SMALL)
    rows = list(read_source(str(gen_studio.settings.outputs_dir), tmp_path, offline=True))  # via read_folder
    assert [(r.prompt, r.part, r.settings["seed"], r.settings["sampler"]) for r in rows] == [
        ("a teapot", "outputs", 6, "DPM++ 2M Karras")]
    foreign = tmp_path / "a1111"
    foreign.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a tower\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                "Seed: 42, Size: 64x64, Model: sdxl")
    Image.new("RGB", (64, 64), "gray").save(foreign / "00001-42.png", pnginfo=info)
    Image.new("RGB", (64, 64), "gray").save(foreign / "no-metadata.png")
    row, plain = list(read_outputs(foreign))  # the image without metadata is a row too (embedded, no prompt)
    assert row.image_name.startswith("png-") and (row.prompt, row.settings["seed"], row.settings["steps"]) == (
        "a tower", 42, 20)
    assert (plain.prompt, plain.source, plain.location) == ("", "user", str((foreign / "no-metadata.png").resolve()))
    assert row.image_name == next(read_outputs(foreign)).image_name  # the same id every time
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="STUDIO_HOME/outputs"):
        list(read_source(str(empty), tmp_path, offline=True))


# -- compare -------------------------------------------------------------------------------
def test_compare_variants_from_a_rewrite_result():
    from types import SimpleNamespace as NS

    from studio.library.compare import variants
    from studio.search.results import Hit

    hit = Hit("p-best", "a fox, highly detailed, by greg rutkowski", 0.1, {"source": "diffusiondb"})
    tried, notes = variants("a fox", NS(retrieved=[hit], candidates=[NS(text="a fox in snow, cinematic light")]))
    assert [(v.name, v.prompt, v.parent) for v in tried] == [
        ("original", "a fox", None), ("retrieved", hit.prompt, "p-best"),
        ("rewritten", "a fox in snow, cinematic light", "p-best")] and notes == []
    tried, notes = variants("a fox", NS(retrieved=[], candidates=[]))
    assert [v.name for v in tried] == ["original"] and len(notes) == 2


def test_the_retrieved_column_is_someone_elses_prompt_not_the_idea_again():
    """The closest stored prompt is often the user's own earlier generation of the very idea: comparing
    the idea with itself shows nothing, so the column takes the closest prompt someone else wrote."""
    from types import SimpleNamespace as NS

    from studio.library.compare import variants
    from studio.search.results import Hit

    mine = Hit("p-mine", "A fox  in the snow", 0.0, {"source": "generated"})
    typed = Hit("p-same", "a fox in the snow!", 0.01, {"source": "diffusiondb"})  # the idea again, as DiffusionDB has it
    other = Hit("p-other", "a fox in the snow, watercolor, by beatrix potter", 0.2, {"source": "diffusiondb"})
    tried, notes = variants("a fox in the snow", NS(retrieved=[mine, typed, other], candidates=[]))
    assert [(v.name, v.parent) for v in tried][:2] == [("original", None), ("retrieved", "p-other")]
    tried, notes = variants("a fox in the snow", NS(retrieved=[mine, typed], candidates=[]))
    assert [v.name for v in tried] == ["original"] and "your own work or the idea itself" in notes[0]


def test_compare_stores_three_linked_records_with_one_seed(gen_studio: Studio):
    from studio.rewrite.rewriter import Rewriter

    gen_studio.ingest(str(SAMPLE_IMAGES))
    # The real starter LLM, told to be brief: the test is about the comparison, not the prose.
    gen_studio.rewriter = Rewriter.load(gen_studio.settings, max_tokens=24, retries=0)
    out = gen_studio.compare("a dragon over a city", seed=21, **SMALL)
    assert [e.variant for e in out.entries] == ["original", "retrieved", "rewritten"] and out.seed == 21
    assert all(e.result.request.seed == 21 and e.result.request.steps == 2 for e in out.entries)
    assert all(-1.0 <= e.score <= 1.0 for e in out.entries) and out.best is not None
    linked = gen_studio.store.get("images", where={"comparison_id": out.comparison_id})
    assert sorted(r.metadata["variant"] for r in linked) == ["original", "retrieved", "rewritten"]
    assert all(r.metadata["idea"] == "a dragon over a city" and "score" in r.metadata for r in linked)


def test_a_folder_of_a1111_pngs_is_ingested_as_the_users(gen_studio: Studio, tmp_path: Path):
    foreign = tmp_path / "a1111"
    foreign.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a tower\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                "Seed: 42, Size: 64x64, Model: sdxl")
    Image.new("RGB", (64, 64), "gray").save(foreign / "00001-42.png", pnginfo=info)
    report = gen_studio.ingest(str(foreign))
    assert report.images_new == 1
    (record,) = gen_studio.store.get("images")
    assert record.metadata["source"] == "user" and record.metadata["seed"] == 42
