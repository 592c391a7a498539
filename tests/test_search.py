"""Search four ways on the real sample: idea -> prompts, idea -> images, image -> images, image -> prompts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studio.errors import InputError
from studio.search.store import normalise
from studio.search.results import Filters
from studio.studio import Studio
from tests.conftest import SAMPLE, SAMPLE_IMAGES

IMAGES = sorted(SAMPLE_IMAGES.glob("*.png"))
POLOCLUB = SAMPLE_IMAGES / "2m-part-000001_from-poloclub-example-loading.png"


def test_a_prompt_searched_verbatim_comes_back_first(sample_studio: Studio) -> None:
    prompts = pd.read_csv(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv")["prompt"].dropna()
    for prompt in prompts.iloc[[0, 2, 3, 1000, 4321]]:
        result = sample_studio.search(prompt, k=5, filters=Filters(nsfw=True))
        top = result.results[0]
        assert normalise(top.prompt) == normalise(prompt)
        assert top.distance == pytest.approx(0.0, abs=1e-5)
        assert [h.distance for h in result.results] == sorted(h.distance for h in result.results)


def test_settings_come_with_prompt_hits(sample_studio: Studio) -> None:
    row = pd.read_csv(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv").iloc[3]
    hit = sample_studio.search(row["prompt"], k=1).results[0]
    assert hit.settings[0] == {"seed": row["seed"], "cfg": row["cfg"], "steps": row["step"], "sampler": "k_lms",
                               "width": row["width"], "height": row["height"], "size": f"{row['width']}x{row['height']}"}


@pytest.mark.parametrize("image", IMAGES, ids=lambda p: p.name[:20])
def test_a_sample_image_searched_by_itself_comes_back_first(sample_studio: Studio, image: Path) -> None:
    result = sample_studio.similar_images(image, k=3)
    assert result.results[0].id == image.name
    assert result.results[0].distance == pytest.approx(0.0, abs=1e-5)
    assert result.results[0].kind == "image" and Path(result.results[0].file).is_file()


def test_reverse_search_returns_the_prompt_and_its_settings(sample_studio: Studio) -> None:
    result = sample_studio.reverse(POLOCLUB, k=5)
    top = result.results[0]
    assert top.prompt.startswith("symmetry!! a tiny cute chinese spring festival")
    assert top.settings[0] | {"image_id": None} == {"seed": 75054762, "cfg": 14.0, "steps": 50, "sampler": "k_lms",
                                                    "image_id": None}
    assert top.metadata["from_images"] is True
    assert len(result.results) == 5 and len({h.id for h in result.results}) == 5  # fused without duplicates


def test_idea_to_images_returns_images_with_files(sample_studio: Studio) -> None:
    result = sample_studio.search("cyberpunk coral emperor", target="images", k=3)
    assert [h.kind for h in result.results] == ["image"] * 3
    assert all(sample_studio.image_bytes(h) for h in result.results)
    assert result.to_dict()["results"][0].keys() >= {"id", "prompt", "distance", "metadata", "file", "settings"}


def test_nsfw_and_source_filters(studio: Studio, tmp_path: Path) -> None:
    rows = pd.read_csv(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv").iloc[:6].copy()
    rows["prompt_nsfw"] = [0.9, 0.1, 0.5, 0.49, None, 0.0]
    rows.to_csv(tmp_path / "scored.csv", index=False)
    studio.ingest(str(tmp_path / "scored.csv"))
    flagged = rows["prompt"][0]
    assert normalise(studio.search(flagged, k=1, filters=Filters(nsfw=True)).results[0].prompt) == normalise(flagged)
    shown = studio.search(flagged, k=10)
    assert all(normalise(h.prompt) != normalise(flagged) for h in shown.results)
    assert shown.hidden == 2  # 0.9 and 0.5 are hidden; 0.49 and unknown scores are shown
    assert studio.search(flagged, k=10, filters=Filters(source="generated")).results == []
    # Images carry both scores; 2.0 means SD had blurred the image.
    f = Filters()
    assert not f.allows({"image_nsfw": 2.0}, "images") and f.allows({"image_nsfw": 2.0}, "prompts")
    assert Filters(nsfw=True).allows({"image_nsfw": 2.0, "prompt_nsfw": 1.0}, "images")


def test_unicode_queries_work(sample_studio: Studio) -> None:
    for text in ("猫がソファで寝ている", "a cat 🐱 on a sofa", "Katze auf dem Sofa, Ölgemälde"):
        assert len(sample_studio.search(text, k=3).results) == 3


def test_bad_queries_say_what_to_do(sample_studio: Studio, tmp_path: Path) -> None:
    for empty in ("", "   \n\t"):
        with pytest.raises(InputError, match="Type an idea"):
            sample_studio.search(empty)
    with pytest.raises(InputError, match="Shorten it"):
        sample_studio.search("castle " * 3000)
    with pytest.raises(InputError, match="prompts or images"):
        sample_studio.search("castle", target="videos")
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file with a .png name")
    with pytest.raises(InputError, match="Could not read .*notes.png"):
        sample_studio.reverse(fake)
    with pytest.raises(InputError, match="No such image"):
        sample_studio.similar_images(tmp_path / "missing.png")


def test_hidden_counts_only_what_ranked_above_the_results(studio: Studio, tmp_path: Path) -> None:
    rows = pd.read_csv(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv").iloc[:6].copy()
    rows["prompt_nsfw"] = [0.9, 0.1, 0.5, 0.49, None, 0.0]
    rows.to_csv(tmp_path / "scored.csv", index=False)
    studio.ingest(str(tmp_path / "scored.csv"))
    # The verbatim prompt is the nearest and safe: nothing was held back above it.
    assert studio.search(rows["prompt"][1], k=1).hidden == 0


def test_a_rare_source_is_found_among_many(studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_OVERFETCH neighbours, the source filter goes to Chroma: one own record among 5,000."""
    import studio.search.searcher as service

    studio.ingest(str(SAMPLE / "metadata-2m-every400th-image_name-prompt.csv"))
    mine = pd.DataFrame({"prompt": ["my own prompt about a teapot"]})
    mine.to_csv(tmp_path / "mine.csv", index=False)
    studio.ingest(str(tmp_path / "mine.csv"), source_tag="user")
    monkeypatch.setattr(service, "MAX_OVERFETCH", 64)
    for query in ("a castle on a hill, oil painting", "portrait of a knight"):
        found = studio.search(query, k=3, filters=Filters(source="user")).results
        assert [h.prompt for h in found] == ["my own prompt about a teapot"]
        assert found[0].metadata["source"] == "user"


def test_first_run_warms_both_indexes_before_it_says_ready(settings, embedder) -> None:
    """The background first run ends with a search of each kind, so the first search an artist makes does
    not pay Chroma's index load (measured at scale by bench/scale.py)."""
    from studio.firstrun import FirstRun

    studio = Studio(settings, embedder=embedder)
    seen: list[str] = []
    warm = studio.warm
    studio.warm = lambda: seen.append(run.progress.detail) or warm()  # type: ignore[method-assign]
    run = FirstRun(studio).start()
    progress = run.wait(300)
    assert progress.phase == "ready", progress.error
    assert seen == ["search index"] and studio.search("a castle", k=1).results
