"""History as an artist uses it: favourites, deleting (counts stay exact, the PNG is kept aside), exact reuse,
and the everyday details around it (live progress with an ETA, 'mine', Compare said before it runs)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio.errors import InputError, ModelMissingError
from studio.generate.request import GenerationRequest
from studio.search.results import Filters
from studio.studio import Studio
from tests.conftest import SMALL


def _counts(studio: Studio) -> dict[str, dict[str, int]]:
    return {ix["kind"]: ix["by_source"] for ix in studio.stats(wait=True)["indexes"]}


def test_favourites_are_marked_and_filtered(gen_studio: Studio):
    a = gen_studio.generate("a lighthouse at dusk", seed=1, **SMALL).saved[0]
    b = gen_studio.generate("a fox in the snow", seed=2, **SMALL).saved[0]
    assert gen_studio.history(favourites=True).results == []
    assert gen_studio.favourite(b.image_id) and not gen_studio.favourite("no-such-image")
    favs = gen_studio.history(favourites=True).results
    assert [h.id for h in favs] == [b.image_id] and favs[0].metadata["favourite"] is True
    assert {h.id for h in gen_studio.history().results} == {a.image_id, b.image_id}  # the rest still shows
    assert [h.id for h in gen_studio.history("a fox", favourites=True).results] == [b.image_id]
    gen_studio.favourite(b.image_id, on=False)
    assert gen_studio.history(favourites=True).results == []


def test_delete_keeps_counts_exact_and_the_png_aside(gen_studio: Studio):
    kept = gen_studio.generate("a castle on a hill", seed=3, **SMALL).saved[0]
    gone, twin = gen_studio.generate("a red barn", seed=4, n=2, **SMALL).saved
    before = _counts(gen_studio)
    moved = gen_studio.delete_image(gone.image_id)
    assert moved is not None and moved.is_file() and moved.parent == gen_studio.settings.outputs_dir / ".deleted"
    assert not gone.path.exists()
    after = _counts(gen_studio)
    assert after["images"]["generated"] == before["images"]["generated"] - 1
    assert after["prompts"] == before["prompts"]  # its twin still uses the prompt
    prompt = gen_studio.store.get("prompts", [gone.prompt_id])[0]
    assert prompt.metadata["image_count"] == 1
    gen_studio.delete_image(twin.image_id)  # the prompt's last image: the prompt goes too
    assert gen_studio.store.get("prompts", [gone.prompt_id]) == []
    assert _counts(gen_studio)["prompts"]["generated"] == before["prompts"]["generated"] - 1
    assert [h.id for h in gen_studio.history().results] == [kept.image_id]
    with pytest.raises(InputError, match="already deleted"):
        gen_studio.delete_image(gone.image_id)
    # A repair of outputs/ does not bring deleted images back (they sit in outputs/.deleted/).
    report = gen_studio.ingest(str(gen_studio.settings.outputs_dir))
    assert report.images_new == 0 and len(gen_studio.history().results) == 1


def test_mine_means_generated_and_ingested_user_images(gen_studio: Studio, tmp_path: Path):
    gen_studio.generate("a teapot in space", seed=5, **SMALL)
    gen_studio.ingest(str(Path(__file__).resolve().parent.parent / "data" / "diffusiondb-sample" /
                          "metadata-fullparams-promptsdvis-first99.csv"), limit=20)
    mine = gen_studio.search("a teapot in space", "prompts", 10, Filters(source=("generated", "user")))
    assert mine.results and {h.metadata["source"] for h in mine.results} <= {"generated", "user"}
    assert Filters(source=("generated", "user")).where() == {"source": {"$in": ["generated", "user"]}}
    assert Filters(source="user").where() == {"source": "user"} and Filters().where() is None


def test_progress_every_step_with_an_eta_and_pictures_about_twice_a_second(generator):
    seen = []
    generator.generate(GenerationRequest("a castle", seed=5, width=64, height=64, steps=6), on_preview=seen.append,
                       preview_interval=3600.0)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5] and all(p.total == 6 for p in seen)
    assert [bool(p.images) for p in seen] == [True, False, False, False, False]  # one picture, then progress only
    assert seen[0].eta_s is None and all(p.eta_s is not None and p.eta_s >= 0 for p in seen[1:])
    assert "Step 3 of 6" in seen[2].describe() and "left" in seen[2].describe() or "almost" in seen[2].describe()


def test_second_order_samplers_report_steps_not_loop_turns(generator):
    seen = []
    result = generator.generate(GenerationRequest("a castle", seed=5, width=64, height=64, steps=4, scheduler="Heun"),
                                on_preview=seen.append, preview_interval=3600.0)
    assert result.steps_done == 4 and all(1 <= p.step <= 4 and p.total == 4 for p in seen)


def test_compare_without_sdxl_says_so_before_the_llm_runs(settings, embedder):
    from studio.rewrite.rewriter import Rewriter
    from tests.fakes import RecordingBackend

    backend = RecordingBackend(outputs=["a fox, oil painting"])
    studio = Studio(settings.with_(sdxl_model=str(settings.models_dir / "no-sdxl-here")), embedder=embedder,
                    rewriter=Rewriter(backend, "fake"))
    with pytest.raises(ModelMissingError, match="Compare needs SDXL, and nothing was run"):
        studio.compare("a fox in the snow", seed=1, **SMALL)
    assert backend.calls == []


def test_a_cancelled_job_no_longer_answers_cancel():
    from studio.ui.common import Cancels

    cancels = Cancels()
    with cancels.job("s1") as flag:
        assert cancels.cancel("s1") and flag.is_set()
    assert not cancels.cancel("s1")  # nothing running: the page says so instead of "Cancelling…"
    done = threading.Event()
    with cancels.job("s2"):
        done.set()
    assert done.is_set() and not cancels.cancel("s2")


def older_pngs(studio: Studio, generator, n: int) -> list[str]:
    """n PNGs as this studio writes them, made a year ago (days apart), put in outputs/ and not stored yet:
    what a repair or an ingest of an older outputs folder finds. Returns their image ids."""
    from datetime import datetime, timedelta, timezone

    from studio.library.pngmeta import write_png
    from studio.library.writeback import Lineage, chunk_for, parameters_for

    result = generator.generate(GenerationRequest("an old lighthouse", seed=100, **SMALL))
    ids = []
    for day in range(n):
        made = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)
        chunk = chunk_for(result, 0, Lineage(idea="old"), made) | {"seed": 100 + day}
        write_png(result.images[0], studio.settings.outputs_dir / f"old-{day}.png", parameters_for(chunk), chunk)
        ids.append(chunk["image_id"])
    return ids


def test_newest_first_means_newest_made_after_older_pngs_are_ingested(gen_studio: Studio, generator, monkeypatch):
    """History pages by when images were made, not by when they were stored: the 3 generations made now come
    first although 40 older PNGs were stored after them; and a page reads no more than a page's records."""
    from chromadb.api.models.Collection import Collection

    new = [gen_studio.generate(f"a new idea {i}", seed=i, **SMALL).saved[0].image_id for i in range(3)]
    old = older_pngs(gen_studio, generator, 40)
    assert gen_studio.ingest(str(gen_studio.settings.outputs_dir)).images_new == 40
    read: list[int] = []
    real = Collection.get
    def recording_get(self, *args, **kwargs):
        got = real(self, *args, **kwargs)
        read.append(len(got["ids"]))
        return got

    monkeypatch.setattr(Collection, "get", recording_get)
    assert [h.id for h in gen_studio.history(limit=3).results] == new[::-1]
    assert max(read) <= 3 + 16, read  # a page's records and the margin, not all 43
    assert [h.id for h in gen_studio.history(limit=20).results] == new[::-1] + old[::-1][:17]
    gen_studio.delete_image(new[2])
    assert [h.id for h in gen_studio.history(limit=3).results] == [new[1], new[0], old[-1]]


def test_a_store_from_before_the_index_gets_it_on_the_first_page(gen_studio: Studio, generator):
    from studio.search import newest

    new = gen_studio.generate("a new idea", seed=1, **SMALL).saved[0].image_id
    older_pngs(gen_studio, generator, 3)
    gen_studio.ingest(str(gen_studio.settings.outputs_dir))
    col = gen_studio.client.get_collection(gen_studio.store.names["images"])
    col.modify(metadata={k: v for k, v in col.metadata.items() if k != newest.KEY})  # as a store from before
    assert gen_studio.history(limit=1).results[0].id == new
    assert newest.KEY in gen_studio.client.get_collection(col.name).metadata
