"""Lineage: where a generation came from, and its two encodings: our PNG chunk's `lineage` object and the
flat record metadata Chroma keeps (scalars only: lists JSON-encoded)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

APP = "prompt-studio"  # our PNG text chunk's key, and its "app": how our own PNGs are told from other tools'
LIST_FIELDS = ("retrieved_ids", "example_texts", "locked")


@dataclass(frozen=True)
class Lineage:
    """Where a generation came from; stored on its records and in its PNG."""

    idea: str | None = None  # what the user typed before any rewrite
    retrieved_ids: list[str] = field(default_factory=list)  # prompt ids given to the LLM as context
    llm_model: str | None = None
    parent: str | None = None  # the record this generation derives from (a prompt or image id)
    comparison_id: str | None = None  # shared by the images of one compare()
    variant: str | None = None  # in a comparison: "original" | "retrieved" | "rewritten"
    score: float | None = None  # CLIP similarity of the image to the idea
    examples_chosen: bool = False  # the LLM's examples were the user's picks (retrieved_ids, example_texts)
    example_texts: list[str] = field(default_factory=list)  # picks brought as text, as the LLM saw them
    note: str | None = None  # the user's note to the LLM
    locked: list[str] = field(default_factory=list)  # terms kept verbatim through the rewrite
    grid_id: str | None = None  # shared by the images of one grid (studio.library.grid)
    cell_key: str | None = None  # prompt, negative, settings, seed and model hashed: a grid reuses the image

    @classmethod
    def of_rewrite(cls, result: Any, **extra: Any) -> "Lineage":
        """The lineage of a prompt written by a rewrite (a studio.rewrite.results.RewriteResult): its idea,
        the examples (ids, and texts the user brought), the note and the locked terms, the LLM; the first
        retrieved prompt is its parent. `extra`: a comparison's fields."""
        ids = list(result.retrieved_ids)
        return cls(**{"idea": result.idea, "retrieved_ids": ids, "llm_model": result.model,
                      "parent": ids[0] if ids else None, "examples_chosen": bool(result.chosen),
                      "example_texts": list(result.chosen_texts), "note": result.note,
                      "locked": list(result.locked), **extra})

    def to_dict(self) -> dict[str, Any]:
        """The PNG chunk's `lineage` object (and what the page keeps between events)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Lineage":
        """Back from to_dict() (unknown keys, from a newer or older studio, are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> "Lineage":
        """Back from a stored record's metadata (to_metadata's flat form)."""
        data: dict[str, Any] = {f.name: meta.get(f.name) for f in fields(cls) if meta.get(f.name) is not None}
        data.update({k: stored_list(meta, k) for k in LIST_FIELDS})
        data["examples_chosen"] = bool(meta.get("examples_chosen"))
        return cls.from_dict(data)


def stored_list(meta: dict[str, Any], key: str) -> list[str]:
    """A lineage list as stored (JSON-encoded: Chroma keeps scalars, and refuses empty lists)."""
    raw = meta.get(key)
    try:
        items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
    except ValueError:
        return []
    return [str(i) for i in items if i] if isinstance(items, list) else []


def is_ours(chunk: dict[str, Any]) -> bool:
    """A chunk this studio wrote (generated), not one another tool's image carried (user)."""
    return chunk.get("app") == APP


def _created(chunk: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(chunk["timestamp"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def chunk_metadata(chunk: dict[str, Any]) -> dict[str, Any]:
    """The record metadata a generation's chunk adds beside its settings: lineage (flattened: Chroma
    keeps scalars only), models, negative prompt, profile and when it was made."""
    lineage = dict(chunk.get("lineage") or {})  # as written, so keys of another studio version are kept too
    lineage["retrieved_ids"] = lineage.get("retrieved_ids") or []
    if chunk.get("loras"):  # the LoRA files a generation applied (name, weight, hash)
        lineage["loras"] = chunk["loras"]
    lineage.update({k: json.dumps(v, ensure_ascii=False) for k, v in lineage.items() if isinstance(v, (list, dict))})
    return {**lineage, "sdxl_model": chunk.get("model"), "negative_prompt": chunk.get("negative_prompt") or None,
            "profile": chunk.get("profile"), "timestamp": chunk.get("timestamp"), "created": _created(chunk)}
