"""Long text cut at a word with a message (studio/ui/limits.py) and what a reloaded page says of a job (studio/ui/jobs.py)."""

from __future__ import annotations

from studio.ui.jobs import Job, Jobs, after_reload
from studio.ui.limits import cut_at_word, said_cut


def test_a_long_text_is_cut_before_a_word_not_in_one() -> None:
    text = ("a lighthouse on a cliff " * 3000)[:54_900]
    kept = cut_at_word(text, 10_000)
    assert len(kept) <= 10_000 and text.startswith(kept) and text[len(kept)] == " "
    assert cut_at_word("short", 10) == "short"
    assert cut_at_word("x" * 50, 20) == "x" * 20  # one giant word: cut at the limit


def test_the_message_says_how_much_and_the_limit() -> None:
    said = said_cut("Prompt", 54_900, 9_999, 10_000)
    assert "54,900" in said and "10,000" in said and "44,901" in said


def test_a_reloaded_page_hears_of_its_job_once() -> None:
    jobs = Jobs(keep=2)
    assert after_reload(jobs.get("b1")) == (None, False)
    job = jobs.start("b1")
    assert job is not None and jobs.start("") is None
    said, watch = after_reload(job)
    assert "still running" in (said or "") and watch
    job.state, job.line = "done", "1 image(s)"
    said, watch = after_reload(job)
    assert "finished: in History" in (said or "") and not watch
    assert after_reload(job) == (None, False)  # said once
    seen = Job(shown=True)
    assert after_reload(seen) == (None, False)
    jobs.start("b2"), jobs.start("b3")
    assert jobs.get("b1") is None  # only the newest `keep` browsers are remembered
