"""History: the user's own generations, newest first or closest to a text or an image; one comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from studio.images import ImageSource, open_image
from studio.ingest.sources import IMAGE_SUFFIXES
from studio.search import counts
from studio.search.results import Hit, SearchResult, label_of
from studio.search.searcher import query_text, to_hit
from studio.search.store import PromptStore

MINE = {"source": "generated"}
BATCH_MARGIN = 16  # more than the images of one generation (n <= 8) or one compare


class History:
    def __init__(self, store: Callable[[], PromptStore], embedder: Callable[[], Any], queries: Any = None) -> None:
        """queries: the text side (studio.search.queries.QueryEncoder); default: CLIP's text tower."""
        self.store = store
        self.embedder = embedder
        if queries is None:
            from studio.search.queries import QueryEncoder

            queries = QueryEncoder(embedder, None, store)
        self.queries = queries

    def history(self, query: str | ImageSource | None = None, limit: int = 20) -> SearchResult:
        """Our own generations: newest first, or (query: text, or an image) the closest ones."""
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
        records = self.store().query("images", vector, limit, where=MINE)
        return SearchResult(label_of(query), "history", [to_hit(r, "images") for r in records], encoder=encoder)

    def _newest(self, limit: int) -> list[Any]:
        """The last `limit` generations stored (Chroma keeps insertion order): with the writers' exact
        count of them, one page at the end, not every generation (falls back to all while recounting)."""
        store = self.store()
        total, by_source, exact = counts.read(store.client, store.names["images"])
        mine = by_source.get(MINE["source"], 0)
        if not exact:
            return store.get("images", where=MINE)
        # A margin: one generation's images arrive together and sort by their seed within it.
        span = limit + BATCH_MARGIN
        return store.get("images", where=MINE, limit=span, offset=max(0, mine - span)) if mine else []

    def comparison(self, comparison_id: str) -> list[Hit]:
        """The stored images (Hits) of one compare(), found by their shared comparison id."""
        records = self.store().get("images", where={"comparison_id": comparison_id})
        return [to_hit(r, "images") for r in records]


def _is_image_path(text: str) -> bool:
    path = Path(text.strip())
    return len(text) < 4096 and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
