"""History: the user's own generations, newest first or closest to a text or an image; one comparison;
favourites and deleting."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.errors import InputError
from studio.images import ImageSource, open_image
from studio.ingest.outputs import OUTPUTS_PART
from studio.ingest.sources import IMAGE_SUFFIXES
from studio.library.lineage import Lineage
from studio.search.results import Hit, SearchResult, label_of
from studio.search.searcher import query_text, to_hit
from studio.search.store import PromptStore

GENERATED = {"source": "generated"}  # our own generations (not search.results.MINE, which adds "user")
FAVOURITES = {"$and": [GENERATED, {"favourite": True}]}
BATCH_MARGIN = 16  # more than the images of one generation (n <= 8) or one compare
DELETED = ".deleted"  # under outputs/: a deleted image's PNG is moved here (hidden: `ingest outputs` skips it)
# A text search keeps an image whose prompt or idea holds a word of the query, or whose CLIP text-image cosine is at
# least this: a clear match for OpenAI's CLIPs (unrelated pairs sit at about 0.1-0.25, CLIPScore's 2.5x scale).
# Below both, the image is not "closest" to anything the user meant: nothing is listed instead of everything.
CLEAR_MATCH = 0.32
_WORD = re.compile(r"[^\W_]{3,}")


@dataclass(frozen=True)
class ImageDetails:
    """One stored image and the texts of the stored prompts its rewrite was shown (its lineage's ids looked up)."""

    hit: Hit
    retrieved_texts: list[str] = field(default_factory=list)


class History:
    def __init__(self, store: Callable[[], PromptStore], embedder: Callable[[], Any], queries: Any = None) -> None:
        """queries: the text side (studio.search.queries.QueryEncoder); default: CLIP's text tower."""
        self.store = store
        self.embedder = embedder
        if queries is None:
            from studio.search.queries import QueryEncoder

            queries = QueryEncoder(embedder, None, store)
        self.queries = queries

    def history(self, query: str | ImageSource | None = None, limit: int = 20,
                favourites: bool = False) -> SearchResult:
        """Our own generations: newest first, or (query: text, or an image) the closest ones;
        favourites: only those marked so (few: Chroma's `where` finds them by its metadata index)."""
        if favourites and (query is None or (isinstance(query, str) and not query.strip())):
            records = self.store().get("images", where=FAVOURITES)
            records.sort(key=lambda r: (-float(r.metadata.get("created") or 0.0), r.metadata.get("seed") or 0))
            return SearchResult("", "history", [to_hit(r, "images") for r in records[:limit]])
        if query is None or (isinstance(query, str) and not query.strip()):
            records = self._newest(limit)
            records.sort(key=lambda r: (-float(r.metadata.get("created") or 0.0), r.metadata.get("seed") or 0))
            return SearchResult("", "history", [to_hit(r, "images") for r in records[:limit]])
        encoder = None
        if isinstance(query, str) and not _is_image_path(query):
            vector, encoder = self.queries.embed(query_text(query))
        else:
            vector = self.embedder().embed_images([open_image(query)])[0]
        # Chroma's `where` here, not the over-fetch of Searcher.query: our images are few among millions.
        records = self.store().query("images", vector, limit, where=FAVOURITES if favourites else GENERATED)
        if encoder is not None:  # a text: only what it matches (an image query ranks by looks, all of them)
            kept = [r for r in records if matches(query, r.metadata, r.document, 1.0 - float(r.distance))]
            return SearchResult(label_of(query), "history", [to_hit(r, "images") for r in kept],
                                hidden=len(records) - len(kept), encoder=encoder)
        return SearchResult(label_of(query), "history", [to_hit(r, "images") for r in records], encoder=encoder)

    def favourite(self, image_id: str, on: bool = True) -> bool:
        """Mark (or unmark) one of our images as a favourite; False when it is not stored."""
        store = self.store()
        found = store.get("images", [image_id])
        if not found:
            return False
        store.update_metadata("images", [image_id], [{**found[0].metadata, "favourite": bool(on)}])
        return True

    def delete(self, image_id: str, outputs: Path) -> Path | None:
        """Remove one of our images from the library: its record goes (and its prompt's, when no other image
        used it); its PNG moves to outputs/.deleted/, so a mistake can be undone by moving it back and
        running `python -m studio ingest outputs`. Returns where the file went (None: no file)."""
        store = self.store()
        found = store.get("images", [image_id])
        if not found or found[0].metadata.get("source") != GENERATED["source"]:
            raise InputError("That image is not one of your generations in the library (already deleted?).")
        meta = found[0].metadata
        moved = _move_aside(meta.get("file"), outputs)
        store.delete("images", [image_id])
        pid = meta.get("prompt_id")
        prompt = store.get("prompts", [pid]) if pid else []
        if prompt:
            pm = prompt[0].metadata
            per_part = json.loads(pm.get("counts") or "{}")
            part = str(meta.get("part") or OUTPUTS_PART)
            per_part[part] = max(0, int(per_part.get(part, 0)) - 1)
            per_part = {k: v for k, v in per_part.items() if v}
            if not per_part and pm.get("source") == GENERATED["source"]:
                store.delete("prompts", [pid])  # a prompt only this image used: it goes with it
            else:
                store.update_metadata("prompts", [pid], [{**pm, "counts": json.dumps(per_part, sort_keys=True),
                                                          "image_count": sum(per_part.values())}])
        return moved

    def restore(self, deleted: str, original: str, outputs: Path, embedder: Any) -> Hit:
        """Undo delete(): the PNG moved back from outputs/.deleted/ to `original` and stored again from what it
        carries (our chunk: prompt, settings, lineage), under its old id."""
        from studio.ingest.outputs import read_image
        from studio.ingest.pipeline import ingest_rows
        from studio.ingest.toolmeta import ToolReader

        outputs = Path(outputs).resolve()
        src, dst = Path(deleted).resolve(), Path(original).resolve()
        if not src.is_relative_to(outputs / DELETED) or not dst.is_relative_to(outputs) or \
                dst.is_relative_to(outputs / DELETED):
            raise InputError("Only an image deleted from your outputs folder can be restored.")
        if not src.is_file():
            raise InputError(f"{src.name} is no longer in {outputs / DELETED}: it cannot be restored from here.")
        if dst.exists():
            raise InputError(f"{dst} exists again: move {src} back by hand, then ingest your outputs folder.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        row = read_image(dst, ToolReader())
        if row.error:
            raise InputError(f"{dst.name} is back in your outputs but could not be read ({row.error}).")
        ingest_rows([row], self.store(), embedder, source="generated", label="restore", incremental=True, bars=False)
        found = self.store().get("images", [row.image_name])
        if not found:
            raise InputError(f"{dst.name} is back in your outputs but was not stored: ingest your outputs folder.")
        return to_hit(found[0], "images")

    def _newest(self, limit: int) -> list[Any]:
        """Our `limit` newest generations by when they were made (not by when they were stored: a repair or an
        ingest of older PNGs adds them late), from the writers' newest-first index: one metadata read and a
        get by ids. The index is rebuilt by one scan when missing (a store from before it) or behind (a
        process killed between its write and the index's)."""
        store = self.store()
        span = limit + BATCH_MARGIN  # one generation's images share a time and sort by their seed within it
        records: list[Any] = []
        for attempt in range(2):
            ids = store.newest_generated(rebuild=attempt > 0)  # a second try reads the index afresh
            records = store.get("images", ids[:span]) if ids else []
            if len(records) == min(span, len(ids)):
                return records
        return records

    def details(self, image_id: str) -> ImageDetails | None:
        """The image's record and its lineage's retrieved prompts; None: no longer stored."""
        store = self.store()
        record = next(iter(store.get("images", [image_id])), None)
        if record is None:
            return None
        ids = Lineage.from_metadata(record.metadata or {}).retrieved_ids
        texts = [r.document or "" for r in store.get("prompts", ids)] if ids else []
        return ImageDetails(to_hit(record, "images"), texts)

    def comparison(self, comparison_id: str) -> list[Hit]:
        """The stored images (Hits) of one compare(), found by their shared comparison id."""
        records = self.store().get("images", where={"comparison_id": comparison_id})
        return [to_hit(r, "images") for r in records]


def _move_aside(file: str | None, outputs: Path) -> Path | None:
    """A deleted image's PNG into outputs/.deleted/ (only files under outputs/ are moved)."""
    if not file:
        return None
    path, outputs = Path(file), Path(outputs).resolve()
    try:
        if not path.is_file() or not path.resolve().is_relative_to(outputs):
            return None
        target = outputs / DELETED / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(path), str(target)))
    except OSError:
        return None


def matches(query: str, meta: dict[str, Any], prompt: str | None, similarity: float) -> bool:
    """Whether a text search found this image: a word of the query in its prompt or idea, or a clear CLIP match."""
    if similarity >= CLEAR_MATCH:
        return True
    words = {w.lower().removesuffix("s") for w in _WORD.findall(query)}
    said = " ".join(str(t) for t in (prompt, meta.get("idea")) if t).lower()
    have = {w.removesuffix("s") for w in _WORD.findall(said)}
    return bool(words & have)


def _is_image_path(text: str) -> bool:
    path = Path(text.strip())
    return len(text) < 4096 and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()

