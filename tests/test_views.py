"""What the page says: stored text made inert, readable scores and times, settings adapted for SDXL with
what changed said, the missing-models banner, first-run messages, presets and snapping."""

from __future__ import annotations

import re

from studio.search.results import Hit, SearchResult
from studio.ui.settings_panel import CUSTOM, preset_of, snap
from studio.ui.text import ago, details_markdown, inert, match, missing_banner, token_line
from studio.ui.views import for_sdxl, note, rows

BEACON = "a castle ![x](http://evil.example/beacon.png) <img src=http://evil.example/b.png> [link](http://x.y) $$x$$"


def _markdown_to_html(text: str) -> str:
    """CommonMark as the page renders it (markdown-it-py ships with gradio)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(text)


def test_stored_text_is_inert_in_markdown():
    html = _markdown_to_html(inert(BEACON))
    assert "<img" not in html and "<a " not in html  # the text is shown: &lt;img src=… as characters
    assert "![x](http://evil.example/beacon.png)" in html.replace("&lt;", "<").replace("&gt;", ">")
    hit = Hit("i-1", BEACON, 0.1, {"negative_prompt": "<script>alert(1)</script>", "idea": BEACON,
                                   "created": 1.0, "sdxl_model": "m"}, "image")
    rendered = _markdown_to_html(details_markdown(hit, retrieved=[BEACON]))
    assert "<img" not in rendered and "<script" not in rendered and "<a " not in rendered
    # GitHub-flavoured Markdown (the page's) links bare urls, "www." hosts and emails: none can form
    bare = inert("see http://evil.example/x.png, www.evil.example or me@evil.example")
    assert "http://" not in bare and "www." not in bare and "me@" not in bare
    assert _markdown_to_html(bare).strip() == "<p>see http://evil.example/x.png, www.evil.example or me@evil.example</p>"


def test_scores_are_percentages_a_person_can_read():
    near, far = Hit("a", "x", 0.05, {}), Hit("b", "y", 1.2, {})  # cosine 0.95, and a negative one
    assert match(near, cross_modal=False) == "95%" and match(far, cross_modal=False) == "0%"
    text_image = Hit("c", "z", 1 - 0.32, {})  # a good text-to-image match by CLIP's standards
    assert match(text_image, cross_modal=True) == "80%"
    result = SearchResult("q", "images", [Hit("d", "p", 1.05, {"source": "diffusiondb"}, "image")])
    assert rows(result)[0][0] == "0%" and not rows(result)[0][0].startswith("-")


def test_relative_times():
    now = 1_000_000.0
    assert ago(now - 5, now) == "just now" and ago(now - 120, now) == "2 minutes ago"
    assert ago(now - 7200, now) == "2 hours ago" and ago(now - 86400 * 1.5, now) == "yesterday"
    assert ago(now - 86400 * 3, now) == "3 days ago" and ago(None, now) == "at an unknown time"


def test_settings_for_sdxl_say_what_changed():
    values, changed = for_sdxl({"seed": 42, "cfg": 7.0, "steps": 50, "sampler": "k_lms", "width": 512, "height": 512})
    assert values["width"] == values["height"] == 1024 and values["sampler"] == "LMS" and values["seed"] == 42
    assert changed == ["512×512 → 1024×1024 (SDXL's size for that shape)", "sampler k_lms → LMS"]
    values, changed = for_sdxl({"size": "512x768", "sampler": "others"})
    assert (values["width"], values["height"]) == (832, 1216) and "has no diffusers scheduler" in changed[-1]
    exact, changed = for_sdxl({"width": 64, "height": 64, "seed": 7, "sampler": "Euler", "profile": "fast",
                               "negative_prompt": "blurry"}, exact=True)
    assert (exact["width"], exact["height"], exact["profile"], exact["negative_prompt"]) == (64, 64, "fast", "blurry")
    assert changed == []


def test_presets_and_snapping():
    assert preset_of(1216, 832) == "1216×832" and preset_of(1000, 1000) == CUSTOM
    assert snap(100) == 96 and snap(103) == 104 and snap(5) == 64 and snap(9999) == 2048 and snap("x") is None


def test_empty_states_say_what_is_true():
    empty = SearchResult("q", "prompts", [], hidden=0)
    assert note(empty, "Nothing of yours yet") == "Nothing of yours yet"
    assert "hidden by the NSFW filter" in note(SearchResult("q", "prompts", [], hidden=3), "x")


def test_the_banner_names_the_command_and_the_offline_way():
    models = [{"role": "clip", "found": False, "problem": None}, {"role": "llm", "found": True, "problem": None},
              {"role": "sdxl", "found": True, "problem": None}]
    banner = missing_banner(models)
    assert "`.venv/bin/python -m studio models --download clip`" in banner and "STUDIO_CLIP_MODEL=" in banner
    assert "SDXL" not in banner and missing_banner(models[1:]) == ""


def test_the_token_counter():
    assert token_line("") == "0 / 77 CLIP tokens" and token_line("a photo of a cat") == "7 / 77 CLIP tokens"
    assert re.fullmatch(r"\d+ CLIP tokens: read in 2 chunks of 75", token_line("lighthouse " * 100))


def test_first_run_says_the_sample_is_loading_then_what_it_added(studio):
    from studio.firstrun import FirstRun

    run = FirstRun(studio)
    run.progress.phase, run.progress.detail, run.progress.done, run.progress.total = "ingesting", "prompts", 1216, 4935
    assert run.loading() == "the sample is still loading (1,216/4,935 prompts)"
    run.progress.phase, run.progress.added, run.progress.finished = "ready", (5025, 3), 100.0
    assert run.loading() is None
    assert "5,025 prompts and 3 images added" in run.status_markdown(now=150.0)
    assert run.status_markdown(now=1000.0) == ""


def test_a_library_url_is_a_link_never_an_image():
    from studio.ui.text import link_markdown, link_of

    assert link_of({"url": "https://lexica.art/img/1.png"}) == "https://lexica.art/img/1.png"
    assert link_of({"url": "javascript:alert(1)"}) is None and link_of({"image_url": "ftp://x/y"}) is None
    assert link_of({"url": "http://x.y/a b"}) is None  # not one plain URL
    html = _markdown_to_html(link_markdown("https://lexica.art/img/(1).png"))
    assert '<a href="https://lexica.art/img/(1).png">' in html and "<img" not in html
    assert link_markdown(None) == "" and link_markdown("javascript:alert(1)") == ""


def test_suggested_sizes_never_have_more_pixels_than_the_size_set():
    """A CPU user at 64×64 who takes the neighbours' settings keeps small pictures in their shape, never SDXL's
    1024×1024 (issue 23 item 10); at SDXL's own size the neighbours' SDXL size is taken as before."""
    values, changed = for_sdxl({"width": 512, "height": 512, "cfg": 7.0}, current=(64, 64))
    assert (values["width"], values["height"]) == (64, 64) and changed == ["512×512 → 64×64 (that shape within your 64×64's pixels)"]
    values, changed = for_sdxl({"width": 512, "height": 768}, current=(64, 64))  # SDXL's 64 px floor: 64×64 stays
    assert (values["width"], values["height"]) == (64, 64) and "within your 64×64" in changed[0]
    values, changed = for_sdxl({"width": 512, "height": 768}, current=(512, 512))
    assert values["width"] * values["height"] <= 512 * 512 and values["width"] < values["height"]
    assert values["width"] % 8 == 0 and values["height"] % 8 == 0
    values, _ = for_sdxl({"width": 512, "height": 768}, current=(1024, 1024))
    assert (values["width"], values["height"]) == (832, 1216)
    values, _ = for_sdxl({"width": 512, "height": 768}, current=("", None))  # nothing set: SDXL's size
    assert (values["width"], values["height"]) == (832, 1216)
