"""Styles mined from the library and negative prompts from the neighbours."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, PngImagePlugin

from studio.library.negatives import add_negatives, common_negatives
from studio.library.stylecache import mined_styles
from studio.library.styles import apply_style, mine, modifiers
from studio.studio import Studio


def _by_hand(prompts: list[str], phrase: str) -> int:
    """The independent count: prompts with a segment (split at commas and A1111's "|"; not the first) that is the
    phrase once brackets, quotes and periods are gone."""
    return sum(any(re.sub(r"[\s.()\[\]“”\"]+", " ", seg).strip().lower() == phrase for seg in re.split(r"[,|]", p)[1:])
               for p in prompts)


def test_a_known_modifier_is_found_with_its_exact_count_on_the_sample(sample_studio: Studio, tmp_path: Path):
    docs = [r.document or "" for r in sample_studio.store.get("prompts")]
    mined = mined_styles(sample_studio.store, tmp_path / "styles.json")  # a cache of our own: the fixture stays as it was
    expected = _by_hand(docs, "trending on artstation")
    assert expected > 100 and mined.counts["trending on artstation"] == expected and mined.prompts == len(docs)
    assert mined.counts["octane render"] == _by_hand(docs, "octane render")
    assert len(mined.styles) >= 5 and all(len(s.phrases) >= 2 and s.prompts > 0 for s in mined.styles)
    top = mined.styles[0]
    assert top.prompts == sum(top.phrases[0] in (m := set(modifiers(d))) and len(m & set(top.phrases)) >= 2
                              for d in docs)
    assert any(s.thumbnail and Path(s.thumbnail).is_file() for s in mined.styles)  # the sample's 3 images
    again = mined_styles(sample_studio.store, tmp_path / "styles.json")  # from the cache, the same
    assert [s.phrases for s in again.styles] == [s.phrases for s in mined.styles]


def test_mining_stays_bounded_when_phrases_outnumber_the_cap(monkeypatch):
    import studio.library.styles as styles

    monkeypatch.setattr(styles, "CAP", 50)  # lossy pass 1, exact pass 2
    prompts = [f"a thing {i}, rare phrase {i}, octane render, 8 k" for i in range(400)]
    mined = mine(lambda: iter(prompts))
    assert mined.pruned and mined.counts["octane render"] == 400 and mined.counts["8 k"] == 400
    assert mined.styles[0].phrases == ["8 k", "octane render"] and mined.styles[0].prompts == 400


def test_applying_a_style_appends_and_dedupes():
    out = apply_style("a fox in the snow, Octane Render", ["octane render", "8 k", "trending on artstation"])
    assert out["prompt"] == "a fox in the snow, Octane Render, 8 k, trending on artstation"
    assert out["skipped"] == ["octane render"] and out["tokens"] > 10 and not out["over"]


def test_negatives_from_neighbours_with_counts(studio: Studio, tmp_path: Path):
    folder = tmp_path / "a1111"
    folder.mkdir()
    negatives = ["blurry, (worst quality:1.4), watermark", "blurry, lowres, watermark", "blurry, text"]
    for i, negative in enumerate(negatives):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"a castle at dusk {i}\nNegative prompt: {negative}\nSteps: 20, Sampler: Euler a, "
                                    f"CFG scale: 7, Seed: {i}, Size: 64x64, Model: sdxl")
        Image.new("RGB", (64, 64), (40 * i, 90, 120)).save(folder / f"{i:05d}.png", pnginfo=info)
    studio.ingest(str(folder))
    found = studio.negatives("a castle at dusk")
    assert found.with_negative == 3 and dict(found.terms)["blurry"] == 3 and dict(found.terms)["watermark"] == 2
    assert found.terms[0] == ("blurry", 3) and ("worst quality", 1) in found.terms
    assert add_negatives("lowres", ["blurry", "lowres", "watermark"]) == "lowres, blurry, watermark"
    assert common_negatives([]).terms == []


def test_favourites_make_a_style_of_their_own(gen_studio: Studio):
    from tests.conftest import SMALL

    made = gen_studio.generate("a quiet harbour, 35mm film, golden hour, grainy", seed=1, **SMALL)
    gen_studio.favourite(made.saved[0].image_id)
    styles = gen_studio.styles()
    own = styles.styles[0]
    assert own.kind == "favourites" and own.phrases == ["35mm film", "golden hour", "grainy"]
    assert own.thumbnail == str(made.saved[0].path)
