"""Wildcards through dynamicprompts: seeded and combinatorial expansions, A1111 syntax and locked terms kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.errors import InputError
from studio.generate.wildcards import expand, has_syntax


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    folder = tmp_path / "wildcards"
    (folder / "styles").mkdir(parents=True)
    (folder / "animal.txt").write_text("cat\ndog\nfox\nowl\n# a comment\n")
    (folder / "styles" / "paint.txt").write_text("oil painting\nwatercolor\n")
    return folder


def test_the_same_seed_gives_the_same_expansions(lists: Path) -> None:
    template = "a {red|blue|green} __animal__, __styles/paint__"
    first = expand(template, n=4, seed=7, folder=lists)
    assert first.prompts == expand(template, n=4, seed=7, folder=lists).prompts
    assert all("__" not in p and "{" not in p for p in first.prompts)
    draws = {tuple(expand(template, n=4, seed=s, folder=lists).prompts) for s in range(6)}
    assert len(draws) > 1  # another seed, other draws


def test_combinatorial_lists_every_combination_up_to_the_cap(lists: Path) -> None:
    out = expand("a {red|blue} __animal__", mode="combinatorial", n=20, folder=lists)
    assert len(out.prompts) == 8 and not out.capped and out.prompts[0] == "a red cat"
    capped = expand("a {red|blue} __animal__", mode="combinatorial", n=3, folder=lists)
    assert len(capped.prompts) == 3 and capped.capped and "first 3" in capped.notes[0]


def test_a1111_syntax_and_a_locked_term_survive(lists: Path) -> None:
    template = "(masterpiece:1.2), a {red|blue} __animal__ BREAK [sky:sea:0.5] <lora:add__detail__xl:0.7> {x|y}-ray"
    for prompt in expand(template, mode="combinatorial", n=8, folder=lists, locked=["{x|y}-ray"]).prompts:
        assert prompt.startswith("(masterpiece:1.2), a ") and " BREAK [sky:sea:0.5] " in prompt
        assert "<lora:add__detail__xl:0.7>" in prompt and prompt.endswith("{x|y}-ray")


def test_library_lists_and_a_missing_wildcard(lists: Path) -> None:
    favourites = ["a castle at dusk, oil painting", "a quiet harbour, 35mm film"]
    seen = []

    def library(name: str) -> list[str] | None:
        seen.append(name)
        return favourites if name == "favourites" else None

    out = expand("__library/favourites__, trending on artstation", mode="combinatorial", n=5, folder=lists,
                 library=library)
    assert sorted(out.prompts) == sorted(f"{f}, trending on artstation" for f in favourites) and seen == ["favourites"]
    with pytest.raises(InputError, match=r"No wildcard list for __planet__.*__animal__"):
        expand("a __planet__", folder=lists)
    assert has_syntax("a {red|blue} fox") and not has_syntax("a fox <lora:a__b__c:1>")


def test_a_grid_row_per_expansion_of_a_wildcard_idea(gen_studio) -> None:
    from tests.conftest import SMALL

    folder = gen_studio.settings.models_dir / "wildcards"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "animal.txt").write_text("cat\nfox\n")
    out = gen_studio.grid("a {red|blue} __animal__", seeds=1, candidates=0, wildcards=True, wildcard_mode="combinatorial",
                          expansions=4, seed=2, **SMALL)
    assert [r.prompt for r in out.plan.rows] == ["a red cat", "a red fox", "a blue cat", "a blue fox"]
    assert {r.kind for r in out.plan.rows} == {"wildcard"} and out.plan.reference == "a red cat"


def test_create_makes_one_image_per_expansion(gen_studio) -> None:
    """Issue 24 item 2 in Create: a wildcard prompt gives one image per expansion, image i at seed + i, each saved
    and stored with its own prompt; the same seed draws the same prompts; a cancel keeps the images made."""
    import threading

    from tests.conftest import SMALL

    out = gen_studio.generate_each("a {red|blue|green|gold} fox", seed=7, n=3, **SMALL)
    assert len(out.images) == 3 and out.seeds == [7, 8, 9] and len(out.prompts) == 3
    assert all(p.startswith("a ") and p.endswith(" fox") and "{" not in p for p in out.prompts)
    assert [s.seed for s in out.saved] == [7, 8, 9] and all(s.stored for s in out.saved)
    stored = {r.id: r.document for r in gen_studio.store.get("images", [s.image_id for s in out.saved])}
    assert sorted(stored.values()) == sorted(out.prompts)
    again = gen_studio.expand("a {red|blue|green|gold} fox", n=3, seed=7, repeats=True).prompts
    assert again == out.prompts  # the same seed draws the same prompts
    assert "one image per expansion" in out.describe()

    from studio.generate.batch import each_expansion
    from studio.generate.request import GenerationRequest

    stop = threading.Event()

    def then_cancel(one: GenerationRequest):  # Cancel pressed while the first image is made
        made = gen_studio.generate(one)
        stop.set()
        return made

    request = GenerationRequest("a {red|blue} boat", seed=1, n=2, **SMALL).validated()
    cut = each_expansion(request, ["a red boat", "a blue boat"], [], then_cancel, stop)
    assert len(cut.images) == 1 and not cut.cancelled and "cancelled after 1 of 2" in cut.describe()
    assert cut.saved[0].stored and cut.prompts == ["a red boat"]
