"""Create's handlers: each event calls one typed Studio method (rewrite_stream, generate, search) and says what happened."""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import gradio as gr

from studio.errors import InputError, StudioError
from studio.studio import SEED_RANGE, Filters, Hit, Lineage, RewriteRequest, Studio, has_wildcards
from studio.ui.common import (
    Cancels, as_int, message_for, no_room_to_show, plain_json, seed_or_none, session_of, streamed, uploaded_image,
)
from studio.ui.jobs import Job, Jobs
from studio.ui.steering import chosen, locked_terms
from studio.ui.text import clipped, inert, match, settings_line
from studio.ui.views import MISSING, info_pick

RETRIEVED = ["match", "prompt", "images", "settings"]


def retrieved_rows(hits: list[Hit]) -> list[list[Any]]:
    """The LLM's examples, most similar first (the rewrite shows those with style words first: the table
    is about closeness, so it sorts by it)."""
    return [[match(h, cross_modal=False), clipped(h.prompt), h.metadata.get("image_count", MISSING),
             settings_line(h.settings[0] if h.settings else {}) or MISSING]
            for h in sorted(hits, key=lambda h: h.distance)]


def rewrite_notes(r: Any) -> str:
    """The note under the prompt once a rewrite is done: tokens, warnings, what was put back, notices."""
    cand = r.candidates[0] if r.candidates else None
    first = "Candidate 1: " if len(r.candidates) > 1 else ""  # the box may hold another one later
    notes = [f"{first}**{cand.tokens} CLIP tokens**" if cand else "The model wrote nothing usable."]
    notes += [f"⚠️ {cand.warning}"] if cand and cand.warning else []
    notes += [f"🔒 Put back what the LLM dropped: {inert(', '.join(cand.restored))}"] if cand and cand.restored else []
    notes += [f"{len(r.candidates)} candidates below: **Use this ↑** puts one here."] if len(r.candidates) > 1 else []
    notes += [one_line(r.notice)] if r.notice else []
    notes += [f"Neighbours suggest: {settings_line(r.suggested)}"] if r.suggested else []
    return "\n\n".join(notes)


def one_line(notice: str) -> str:
    """A notice (the starter model's, the LLM on the CPU) as one line, its details behind a click."""
    head, _, rest = notice.partition(". ")
    if not rest:
        return f"ℹ️ {notice}"
    return f"<details class='studio-notice'><summary>ℹ️ {head}.</summary>\n\n{rest}\n\n</details>"


def generation_fields(negative: str, seed: Any, steps: float, cfg: float, width: float, height: float,
                      sampler: str, profile: str) -> dict[str, Any]:
    """The settings panel's values as Studio.generate's keyword arguments (bad ones refused in words)."""
    return {"negative_prompt": negative or "", "seed": seed_or_none(seed), "steps": as_int(steps, "steps"),
            "cfg": float(cfg), "width": as_int(width, "width"), "height": as_int(height, "height"),
            "scheduler": sampler or None, "profile": profile or "standard"}


def captioned(result: Any) -> list[tuple[Any, str]]:
    """The gallery's pictures, each with its seed (and its expansion, for a wildcard batch)."""
    prompts = result.prompts if len(result.prompts) == len(result.images) else []  # a wildcard batch
    return [(img, f"seed {s}" + (f" · {clipped(prompts[i], 80)}" if prompts else ""))
            for i, (img, s) in enumerate(zip(result.images, result.seeds))]


class CreateHandlers:
    """The Create tab's event handlers, over one Studio and the page's cancel flags."""

    def __init__(self, studio: Studio, cancels: Cancels, jobs: Jobs | None = None) -> None:
        self.studio = studio
        self.cancels = cancels
        self.jobs = jobs or Jobs()

    def neighbours(self, idea: str, k: int, nsfw: bool) -> list[str]:
        """Studio.search: the idea's own stored neighbours (none without CLIP or with another CLIP's store)."""
        try:
            return [h.id for h in self.studio.search(idea, "prompts", k, Filters(nsfw=nsfw)).results]
        except StudioError:  # no CLIP, another CLIP's store: the brought examples alone
            return []

    def rewrite(self, idea: str, k: float, nsfw: bool, note: str = "", n: float = 1, ticked: list[str] | None = None,
                locked: str = "", examples_for: str = "", progress: gr.Progress = gr.Progress()) -> Iterator[Any]:
        """Studio.rewrite_stream -> [retrieved, prompt, note, raw, suggested, lineage, steer.result,
        steer.examples_for, rewritten]."""
        progress(0, desc="Loading the LLM…" if not self.studio.llm_loaded else "Retrieving…")
        ids, texts = chosen(ticked)
        many, k = as_int(n, "candidates"), as_int(k, "k")
        if (idea or "").strip() != (examples_for or "").strip():
            # A new idea: its own neighbours, beside any examples the user brought (ticked) for it.
            ids = self.neighbours(idea, k, bool(nsfw)) if texts and k else []
        table: list[list[Any]] = []
        text, suggested = "", {}
        skip4, skip5 = [gr.skip()] * 4, [gr.skip()] * 5
        request = RewriteRequest(idea, k, many, Filters(nsfw=bool(nsfw)), example_ids=tuple(ids),
                                 example_texts=tuple(texts), note=(note or "").strip() or None,
                                 locked=tuple(locked_terms(locked)))
        for ev in self.studio.rewrite_stream(request):
            if ev.kind == "retrieved":
                table, suggested = retrieved_rows(ev.hits or []), ev.suggested or {}
                progress(0.1, desc="Rewriting…")
                yield table, "", "✍️ Writing…", gr.skip(), suggested, *skip4
            elif ev.kind == "start" and ev.index == 0:
                text = ""
            elif ev.kind == "start":
                yield gr.skip(), gr.skip(), f"✍️ Writing candidate {ev.index + 1} of {many}…", gr.skip(), *skip5
            elif ev.kind == "token" and ev.index == 0:
                text = ev.partial or text + ev.text
                yield gr.skip(), text, gr.skip(), gr.skip(), *skip5
            elif ev.kind == "done" and ev.result is not None:
                r = ev.result
                lineage = Lineage.of_rewrite(r).to_dict()
                yield (retrieved_rows(r.retrieved) or table, r.text, rewrite_notes(r), r.to_dict(),
                       r.suggested or suggested, lineage, r.to_dict(), r.idea, lineage)

    def generate(self, prompt: str, negative: str, seed: Any, steps: float, cfg: float, width: float, height: float,
                 sampler: str, profile: str, n: float, lineage: dict | None = None, visitor: str = "",
                 request: gr.Request = None,
                 progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Iterator[Any]:
        """Studio.generate with live previews -> [preview, images, info, raw, last seed]. The job is recorded
        under `visitor` (this browser) as it goes, so a reloaded page finds it (jobs.after_reload)."""
        with self.jobs.running(visitor) as job, self.cancels.job(session_of(request)) as flag:
            if job is not None:
                job.stop = flag
            fields = generation_fields(negative, seed, steps, cfg, width, height, sampler, profile)
            fields["n"] = as_int(n, "n")
            lin = Lineage.from_dict(lineage)
            first = not self.studio.sdxl_loaded
            progress(0, desc="Loading SDXL…" if first else "Starting…")
            said = "⏳ Loading SDXL (the first run after a launch)…" if first else "⏳ Starting…"
            yield gr.skip(), gr.skip(), said, gr.skip(), gr.skip()
            result = None
            work = lambda emit: self._recorded(job, emit, prompt, flag, lin, fields)  # noqa: E731
            for kind, item in streamed(work):
                if kind == "event":
                    (p,) = item
                    progress((p.step, p.total), desc="Denoising", unit="steps")
                    picture = p.images[0] if p.images else gr.skip()  # a picture about twice a second
                    yield picture, gr.skip(), f"⏳ {p.describe()}…", gr.skip(), gr.skip()
                else:
                    result = item
            last = result.seeds[0] if result.seeds else gr.skip()
            if job is not None:  # the page that started it sees its end (after a reload, this is never reached)
                job.shown = True
            if result.cancelled:  # the last preview stays: it shows where the run was
                said = f"⏹️ Cancelled after {result.steps_done} of {result.request.steps} steps; nothing saved."
                yield gr.skip(), [], said, plain_json(result.to_dict()), last
                return
            if (full := no_room_to_show(result.images)) is not None:  # else Gradio's "Could not postprocess"
                yield gr.skip(), gr.skip(), f"⚠️ {full}  \n" + result.describe().replace("\n", "  \n"), gr.skip(), last
                return
            pics = captioned(result)
            yield result.images[0], pics, result.describe().replace("\n", "  \n"), plain_json(result.to_dict()), last

    def _recorded(self, job: Job | None, emit: Any, prompt: str, flag: Any, lineage: Lineage,
                  fields: dict[str, Any]) -> Any:
        """Studio.generate in the worker thread, its progress and end written to `job` as they happen."""
        def seen(p: Any) -> None:
            if job is not None:
                job.line, job.preview = f"⏳ {p.describe()}…", (p.images[0] if p.images else job.preview)
            emit(p)

        try:
            # A wildcard prompt ({a|b}, __name__): one image per expansion, as sd-dynamic-prompts does in A1111.
            make = self.studio.generate_each if has_wildcards(prompt) else self.studio.generate
            result = make(prompt, on_preview=seen, cancel=flag, lineage=lineage, **fields)
        except Exception as exc:
            if job is not None:
                job.state, job.line = "failed", message_for(exc)
            raise
        if job is not None:
            job.pictures = captioned(result)
            job.preview = result.images[0] if result.images else job.preview
            job.line = (f"after {result.steps_done} of {result.request.steps} steps; nothing saved."
                        if result.cancelled else result.describe().replace("\n", "  \n"))
            job.state = "cancelled" if result.cancelled else "done"
        return result

    def generate_all(self, result: dict, rewritten: dict, negative: str, seed: Any, steps: float, cfg: float,
                     width: float, height: float, sampler: str, profile: str,
                     request: gr.Request = None) -> Iterator[Any]:
        """Studio.generate for every candidate of the last rewrite, one seed and these settings: a look side by
        side -> [looks, info]."""
        cands = [c for c in (result or {}).get("candidates") or [] if c.get("text")]
        if len(cands) < 2:
            raise InputError("Rewrite with 2 or more candidates first (Steer the rewrite → Candidates).")
        fields = generation_fields(negative, seed, steps, cfg, width, height, sampler, profile)
        fixed = fields["seed"] = secrets.randbelow(SEED_RANGE) if fields["seed"] is None else fields["seed"]
        lineage = Lineage.from_dict(rewritten)  # the last rewrite's, from Lineage.of_rewrite
        looks: list[tuple[Any, str]] = []
        with self.cancels.job(session_of(request)) as flag:
            for i, cand in enumerate(cands):
                yield gr.update(visible=True, value=looks or None), f"⏳ Candidate {i + 1} of {len(cands)}…"
                out = self.studio.generate(cand["text"], cancel=flag, lineage=lineage, **fields)
                if out.cancelled:
                    yield gr.update(value=looks or None), f"⏹️ Cancelled after {len(looks)} of {len(cands)}."
                    return
                looks.append((out.images[0], f"{i + 1} · {cand.get('tokens')} tokens"))
        yield gr.update(value=looks), (f"Seed **{fixed}**: the {len(looks)} candidates side by side, each saved to "
                                       "your library. **Use this ↑** above puts one in the Prompt box.")

    def image_info(self, payload: Any) -> tuple[dict, Any]:
        """An image dropped in Create -> its own prompt and settings (PNG Info) as a pick that fills the boxes, or
        a line under the prompt saying it carries none (and nothing changes). A file that is no picture: InputError."""
        uploaded_image(payload)  # a text file named .png is said in words, not read as "no metadata"
        path = payload.get("path") if isinstance(payload, dict) else payload
        name = (payload.get("orig_name") if isinstance(payload, dict) else None) or "That image"
        info = self.studio.image_info(str(path))
        if info is None:
            return {}, (f"{name} carries no prompt or settings (no PNG Info from AUTOMATIC1111, ComfyUI, Fooocus, "
                        "InvokeAI, NovelAI or this studio): nothing changed. Reverse finds the prompts that "
                        "likely made it.")
        return info_pick(info), gr.skip()  # the fill says what came (build_ui wires it after this)

    def cancel(self, visitor: str = "", request: gr.Request = None) -> str:
        """Stop this page's generation at its next step. A job that stops at once has already said "Cancelled
        after …" by the time this answer lands (and this one would hide it): then this says the same."""
        stopped = self.cancels.stopped_within(session_of(request), seconds=2.0)
        if stopped is None:
            job = self.jobs.get(visitor)  # one started before a reload: this page's session is a new one
            if job is not None and job.state == "running" and job.stop is not None:
                job.stop.set()
                return "⏹️ Cancelling the generation started before the reload, at its next step…"
            return "Nothing is running."
        job = self.jobs.get(visitor) if stopped else None
        if job is not None and job.state == "cancelled":
            return f"⏹️ Cancelled {job.line}"
        return "⏹️ Cancelling at the next step…"
