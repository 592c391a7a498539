"""History: our own generations, newest first or searched by text or image, with settings and lineage in
words, a full-size view, favourites and delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import InputError
from studio.studio import IMAGE_SUFFIXES, Hit, Studio
from studio.ui.common import as_int, quiet, said_in, uploaded_image
from studio.ui.text import clipped, details_markdown
from studio.ui.views import page_json, picture

NOTHING_YET = "Nothing generated yet: make something in **Create** or **Compare**, and it shows here."
PICK_FIRST = "Click one of your images first."
CLICK_ONE = "Click an image for its settings and where it came from."


def fav_label(on: bool) -> str:
    """The Favourite button says the picked image's state: ★ it is one, ☆ it is not."""
    return "★ Favourite" if on else "☆ Favourite"


def actions(entry: dict | None) -> list[Any]:
    """Reuse, + examples, Favourite (its ★/☆ state) and Delete: usable only while an image is picked."""
    on = bool(entry)
    return [gr.update(interactive=on), gr.update(interactive=on),
            gr.update(interactive=on, value=fav_label(bool(entry and entry.get("favourite")))),
            gr.update(interactive=on)]


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
        elif isinstance(query, str):
            msg = f"None of your images matches “{clipped(query, 80)}”: try other words, or **Newest first**."
        else:
            msg = "None of your images matches that."
        # selected_index=None: a new list opens unpicked (the full-size view of the last one would show a stranger)
        return gr.Gallery(pics, selected_index=None), msg, page_json(result.to_dict()), [_entry(h) for h in shown]

    def mine_count() -> int:
        try:
            return studio.stats().by_source("images").get("generated", 0)
        except Exception:
            return 0

    def pick(entries: list[dict], evt: gr.SelectData) -> list[Any]:
        if not entries or evt.index is None or evt.index >= len(entries):
            return [gr.skip()] * 6
        entry = entries[evt.index]
        details = studio.image_details(entry["id"])
        if details is None:
            return ["That image is no longer in the library.", {}, *actions(None)]
        entry = {**entry, "favourite": bool(details.hit.metadata.get("favourite"))}  # as stored now
        return [details_markdown(details.hit, details.retrieved_texts), entry, *actions(entry)]

    def favourite(entry: dict) -> tuple[str, dict, Any]:
        if not entry:
            raise InputError(PICK_FIRST)
        on = not entry.get("favourite")
        if not studio.favourite(entry["id"], on):
            raise InputError("That image is no longer in the library.")
        said = "★ Marked as a favourite." if on else "☆ No longer a favourite."
        return said, {**entry, "favourite": on}, gr.update(value=fav_label(on))

    def delete(entry: dict) -> list[Any]:
        if not entry:
            raise InputError(PICK_FIRST)
        details = studio.image_details(entry["id"])
        original = (details.hit.file if details else None) or ""
        moved = studio.delete_image(entry["id"])
        undo = {"deleted": str(moved), "original": original, "favourite": bool(entry.get("favourite"))} \
            if moved and original else {}
        where = (f" Its PNG is in `{moved.parent.name}/` under your outputs: **↩ Undo delete** puts it back.")\
            if undo else ""
        return [f"🗑️ Deleted from your library.{where}", {}, *actions(None), CLICK_ONE, undo,
                gr.update(visible=bool(undo))]

    def undelete(undo: dict) -> list[Any]:
        if not undo:
            raise InputError("Nothing to undo: delete an image first.")
        hit = studio.restore_image(undo["deleted"], undo["original"])
        if undo.get("favourite"):
            studio.favourite(hit.id, True)
        return [f"↩️ Restored: “{clipped(hit.prompt, 80)}” is back in your library.", {}, gr.update(visible=False)]

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
        details = gr.Markdown(CLICK_ONE, elem_id="history-details")
        with gr.Row():
            reuse = gr.Button("Reuse these settings in Create →", interactive=False, elem_id="history-reuse")
            add = gr.Button("+ Add to the LLM's examples", elem_id="history-add", scale=0, min_width=200,
                            interactive=False)
            fav = gr.Button(fav_label(False), elem_id="history-favourite", scale=0, min_width=140, interactive=False)
            remove = gr.Button("🗑️ Delete", variant="stop", elem_id="history-delete", scale=0, min_width=120,
                               interactive=False)
        with gr.Row():
            action = gr.Markdown(elem_id="history-action")
            undo_btn = gr.Button("↩ Undo delete", visible=False, size="sm", scale=0, min_width=150,
                                 elem_id="history-undo")
        with gr.Accordion("Raw result (JSON)", open=False, elem_classes="dev-only"):
            raw = gr.JSON()
        entries, picked, undo = gr.State([]), gr.State({}), gr.State({})
        inputs, out = [text, image, limit, favourites], [pics, msg, raw, entries]
        private = {"api_visibility": "private"}
        acts = [reuse, add, fav, remove]
        # A new list: what was picked from the old one is no longer on the page (its actions wait for a click).
        unpick = {"fn": lambda: [CLICK_ONE, {}, *actions(None)], "inputs": None,
                  "outputs": [details, picked, *acts], "queue": False, **private}
        newest_first = quiet(lambda n, f: history("", None, n, f))
        lists = [go.click(quiet(history), inputs, out, api_name="history", preprocess=False, show_progress_on=[msg]),
                 text.submit(quiet(history), inputs, out, preprocess=False, show_progress_on=[msg], **private)]
        lists += [trigger(newest_first, [limit, favourites], out, show_progress_on=[msg], **private)
                  for trigger in (newest.click, tab.select, favourites.input)]
        for listed in lists:
            said_in(listed, msg)
            listed.success(**unpick)
        said_in(pics.select(quiet(pick), entries, [details, picked, *acts], **private), action)
        said_in(fav.click(quiet(favourite), picked, [action, picked, fav], **private), action)
        deleted = remove.click(quiet(delete), picked, [action, picked, *acts, details, undo, undo_btn], **private)
        said_in(deleted, action)
        deleted.success(newest_first, [limit, favourites], out, **private)
        restored = undo_btn.click(quiet(undelete), undo, [action, undo, undo_btn], **private)
        said_in(restored, action)
        restored.success(newest_first, [limit, favourites], out, **private)
    return HistoryControls(reuse, picked, add, action)
