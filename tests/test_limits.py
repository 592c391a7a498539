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


def test_a_job_still_waiting_at_a_reload_is_said_to_be_gone_and_a_failure_the_page_saw_is_not_said_again() -> None:
    jobs = Jobs()
    jobs.queue("b1")  # clicked, waiting behind another job; then the page reloaded (Gradio drops the waiting event)
    said, watch = after_reload(jobs.get("b1"), "comparison", "Compare")
    assert "waiting for its turn" in (said or "") and "press **Compare** again" in (said or "") and not watch
    assert after_reload(jobs.get("b1")) == (None, False)
    jobs.queue("b2")
    try:
        with jobs.running("b2") as job:  # its turn came: it runs, then fails on the page that started it
            assert job is not None and job.state == "running"
            raise ValueError("said in the tab's line")
    except ValueError:
        pass
    assert after_reload(jobs.get("b2")) == (None, False)

    def handler():  # a page that went away: Gradio closes the handler's generator
        with jobs.running("b3") as job:
            job.line = "⏳ Step 3 of 30"
            yield
    run = handler()
    next(run)
    run.close()
    said, watch = after_reload(jobs.get("b3"))
    assert "still running" in (said or "") and watch
