"""History: our own generations, newest first or searched by text or image, with settings and lineage in
words, a full-size view, favourites and delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.ingest.sources import IMAGE_SUFFIXES
from studio.search.results import Hit
from studio.studio import Studio
from studio.ui.common import as_int, handler, said_in, uploaded_image
from studio.ui.text import clipped, details_markdown, retrieved_ids
from studio.ui.views import picture

NOTHING_YET = "Nothing generated yet: make something in **Create** or **Compare**, and it shows here."
PICK_FIRST = "Click one of your images first."


@dataclass
class HistoryControls:
    reuse: gr.Button
    picked: gr.State  # the picked entry: {"prompt", "negative_prompt", "seed", "steps", ...}
    add: gr.Button  # + its prompt to the examples the LLM sees (Create)
    note: gr.Markdown

    @property
    def settings(self) -> gr.State:
        """The picked entry, as Explore's picks are named."""
        return self.picked


def _entry(hit: Hit) -> dict[str, Any]:
    m = hit.metadata
    keys = ("seed", "cfg", "steps", "sampler", "width", "height", "negative_prompt", "idea", "profile", "favourite")
    return {"prompt": hit.prompt, "id": hit.id, **{k: m.get(k) for k in keys}}


def history_query(text: str | None, payload: Any, roots: tuple[str, ...] = ()) -> Any:
    """What History searches by: an upload, the text, or None (newest first). A typed path of an image is
    read as that image; served to others (`roots`), only under those folders, like the Library's paths,
    so the box cannot tell a visitor which server files exist, nor make the server open them."""
    if payload:
        return uploaded_image(payload)
    query = (text or "").strip() or None
    if query and roots and len(query) < 4096 and Path(query).suffix.lower() in IMAGE_SUFFIXES:
        real = Path(query).expanduser().resolve()  # links followed; whether it exists is never looked at
        if not any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
            raise InputError("This studio is served to other machines, so History opens an image path only under "
                             f"{', '.join(roots)}: drop the image in the box beside instead, or search by words.")
    return query


def history_tab(studio: Studio, roots: tuple[str, ...] = ()) -> HistoryControls:
    """roots: where typed paths may point when the page is served to others (UIDefaults.ingest_roots)."""
    def history(text: str, payload: Any, limit: float, favourites: bool = False) -> tuple[list, str, dict, list]:
        limit = max(1, min(as_int(limit, "limit"), 500))
        query = history_query(text, payload, roots)
        if studio.is_empty():  # a fresh library: nothing generated yet is not an error
            return [], NOTHING_YET, {}, []
        result = studio.history(query, limit, bool(favourites))
        shown, pics = [], []
        for hit in result.results:
            if (pic := picture(studio, hit)) is not None:
                shown.append(hit)
                star = "★ " if hit.metadata.get("favourite") else ""
                pics.append((pic, f"{star}{clipped(hit.prompt, 80)} · seed {hit.metadata.get('seed')}"))
        how = "newest first" if query is None else ("closest to the image" if payload else "closest to the text")
        which = "favourites" if favourites else "images"
        if shown:
            msg = f"{len(shown)} of your {which}, {how}. Click one for its settings and where it came from."
        elif favourites:
            msg = "No favourites yet: click an image, then ★ Favourite."
        elif not mine_count():
            msg = NOTHING_YET
        else:
            msg = "None of your images matches that."
        return pics, msg, result.to_dict(), [_entry(h) for h in shown]

    def mine_count() -> int:
        try:
            return sum(ix["by_source"].get("generated", 0) for ix in studio.stats()["indexes"] if ix["kind"] == "images")
        except Exception:
            return 0

    def pick(entries: list[dict], evt: gr.SelectData) -> tuple[str, dict, Any]:
        if not entries or evt.index is None or evt.index >= len(entries):
            return gr.skip(), gr.skip(), gr.skip()
        entry = entries[evt.index]
        hit = next(iter(studio.store.get("images", [entry["id"]])), None)
        if hit is None:
            return "That image is no longer in the library.", {}, gr.update(interactive=False)
        ids = retrieved_ids(hit.metadata)
        texts = [r.document or "" for r in studio.store.get("prompts", ids)] if ids else []
        from studio.search.searcher import to_hit

        return details_markdown(to_hit(hit, "images"), texts), entry, gr.update(interactive=True)

    def favourite(entry: dict) -> tuple[str, dict]:
        if not entry:
            raise InputError(PICK_FIRST)
        on = not entry.get("favourite")
        if not studio.favourite(entry["id"], on):
            raise InputError("That image is no longer in the library.")
        return ("★ Marked as a favourite." if on else "☆ No longer a favourite."), {**entry, "favourite": on}

    def delete(entry: dict) -> tuple[str, dict, Any]:
        if not entry:
            raise InputError(PICK_FIRST)
        moved = studio.delete_image(entry["id"])
        where = (f" Its PNG is in `{moved.parent.name}/` under your outputs: move it back and run "
                 "`python -m studio ingest` on the outputs folder to restore it.") if moved else ""
        return f"🗑️ Deleted from your library.{where}", {}, gr.update(interactive=False)

    with gr.Tab("History", id="history") as tab:
        gr.Markdown("Everything you generated, newest first. Search it by words or by an image; click a picture "
                    "for its settings and where it came from (click again for the full size).")
        with gr.Row():
            text = gr.Textbox(label="Search by text", placeholder="lighthouse", scale=3, elem_id="history-text")
            image = gr.Image(type="filepath", label="…or by image", sources=["upload", "clipboard"], height=140,
                             scale=1)
            with gr.Column(scale=1):
                limit = gr.Slider(1, 200, value=40, step=1, label="Show")
                favourites = gr.Checkbox(label="★ Favourites only", value=False, elem_id="history-favourites")
                go = gr.Button("Search", variant="primary", elem_id="history-go")
                newest = gr.Button("Newest first")
        msg = gr.Markdown(elem_id="history-note")
        pics = gr.Gallery(label="Your images", columns=6, height="auto", object_fit="contain", allow_preview=True,
                          elem_id="history-gallery")
        details = gr.Markdown("Click an image for its settings and where it came from.", elem_id="history-details")
        with gr.Row():
            reuse = gr.Button("Reuse these settings in Create →", interactive=False, elem_id="history-reuse")
            add = gr.Button("+ Add to the LLM's examples", elem_id="history-add", scale=0, min_width=200)
            fav = gr.Button("★ Favourite", elem_id="history-favourite", scale=0, min_width=140)
            remove = gr.Button("🗑️ Delete", variant="stop", elem_id="history-delete", scale=0, min_width=120)
        action = gr.Markdown(elem_id="history-action")
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        entries, picked = gr.State([]), gr.State({})
        inputs, out = [text, image, limit, favourites], [pics, msg, raw, entries]
        said_in(go.click(handler(history), inputs, out, api_name="history", preprocess=False,
                         show_progress_on=[msg]), msg)
        said_in(text.submit(handler(history), inputs, out, api_visibility="private", preprocess=False,
                            show_progress_on=[msg]), msg)
        for trigger in (newest.click, tab.select, favourites.input):
            said_in(trigger(handler(lambda n, f: history("", None, n, f)), [limit, favourites], out,
                            api_visibility="private", show_progress_on=[msg]), msg)
        pics.select(handler(pick), entries, [details, picked, reuse], api_visibility="private")
        said_in(fav.click(handler(favourite), picked, [action, picked], api_visibility="private"), action)
        deleted = remove.click(handler(delete), picked, [action, picked, reuse], api_visibility="private")
        said_in(deleted, action)
        deleted.success(handler(lambda n, f: history("", None, n, f)), [limit, favourites], out,
                        api_visibility="private")
    return HistoryControls(reuse, picked, add, action)
