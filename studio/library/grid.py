"""The X/Y grid: rows of prompts by columns of seeds (or one setting), each cell made once, CLIP-scored, ranked."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio.errors import InputError

KINDS = ("idea", "retrieved", "rewritten", "typed", "wildcard")
AXES = ("seed", "cfg", "steps", "sampler", "lora")  # "lora:NAME=0.4,0.8": that LoRA's weight in every row
MAX_CELLS = 256
_LORA = re.compile(r"<lora:([^:<>]+):([^:<>]*)((?::[^<>]*)?)>", re.IGNORECASE)


@dataclass
class GridRow:
    """One prompt to judge: what kind it is, its text, and the record it came from."""

    kind: str  # one of KINDS
    prompt: str
    parent: str | None = None


@dataclass
class GridColumn:
    """One column: its header and what it sets in the base request ({"seed": 7} or {"cfg": 4.0})."""

    label: str
    fields: dict[str, Any]


@dataclass
class GridPlan:
    """Everything that defines a grid: reopening it rebuilds the same cells (and cell keys) from this."""

    grid_id: str
    idea: str
    reference: str  # the text every cell is scored against (the idea; a wildcard idea's first expansion)
    rows: list[GridRow]
    columns: list[GridColumn]
    base: dict[str, Any]  # a validated GenerationRequest's fields (the first seed, the settings)
    axis: str = "seed"
    created: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "GridPlan":
        raw = json.loads(text)
        raw["rows"] = [GridRow(**r) for r in raw["rows"]]
        raw["columns"] = [GridColumn(**c) for c in raw["columns"]]
        return cls(**raw)

    def request(self, row: int, col: int) -> Any:
        """The validated GenerationRequest of one cell."""
        from studio.generate.request import GenerationRequest

        fields = dict(self.columns[col].fields)
        prompt = self.rows[row].prompt
        if "lora" in fields:
            name, weight = fields.pop("lora")
            prompt = with_lora_weight(prompt, name, weight)
        return replace(GenerationRequest(**self.base), prompt=prompt, n=1, **fields).validated()


def new_grid_id() -> str:
    return "g-" + uuid.uuid4().hex[:16]


def with_lora_weight(prompt: str, name: str, weight: float) -> str:
    """The prompt with `<lora:name:weight>`: its own tag's weight replaced, or the tag appended."""
    found = False

    def swap(m: re.Match[str]) -> str:
        nonlocal found
        if m.group(1).strip().lower() != name.lower():
            return m.group(0)
        found = True
        return f"<lora:{m.group(1)}:{weight:g}{m.group(3)}>"

    out = _LORA.sub(swap, prompt)
    return out if found else f"{out} <lora:{name}:{weight:g}>"


def parse_axis(text: str | None) -> tuple[str, list[Any]] | None:
    """"cfg=4,6,8" -> ("cfg", [4.0, 6.0, 8.0]); "lora:film=0.4,0.8" -> ("lora", [("film", 0.4), ...]);
    empty -> None (the columns are seeds). InputError names the axes there are."""
    if not text or not text.strip():
        return None
    name, sep, values = text.partition("=")
    name, items = name.strip().lower(), [v.strip() for v in values.split(",") if v.strip()]
    what = name.split(":", 1)[0]
    if not sep or what not in AXES or not items or (what == "lora" and ":" not in name):
        raise InputError(f"Axis {text!r}: write NAME=V1,V2,... with NAME one of seed, cfg, steps, sampler, "
                         "lora:LORA_NAME (e.g. cfg=4,6,8 or lora:film=0.4,0.8).")
    try:
        if what == "cfg":
            return "cfg", [float(v) for v in items]
        if what in ("steps", "seed"):
            return what, [int(v) for v in items]
        if what == "lora":
            lora = text.split("=", 1)[0].split(":", 1)[1].strip()
            return "lora", [(lora, float(v)) for v in items]
    except ValueError:
        raise InputError(f"Axis {text!r}: {what} takes numbers ({items!r} are not all numbers).") from None
    from studio.generate.request import scheduler_name

    return "scheduler", [scheduler_name(v) for v in items]


def columns_for(base_seed: int, seeds: int, axis: tuple[str, list[Any]] | None) -> list[GridColumn]:
    """Seeds base_seed, base_seed+1, ... (A1111's batch seeds), or one column per value of the axis."""
    from studio.generate.request import SEED_RANGE

    if axis is None:
        if not 1 <= seeds <= 16:
            raise InputError(f"seeds={seeds}: a grid has 1 to 16 seed columns.")
        return [GridColumn(f"seed {(base_seed + i) % SEED_RANGE}", {"seed": (base_seed + i) % SEED_RANGE})
                for i in range(seeds)]
    name, values = axis
    if name == "lora":
        return [GridColumn(f"{lo}={w:g}", {"lora": (lo, w)}) for lo, w in values]
    label = "sampler" if name == "scheduler" else name
    return [GridColumn(f"{label} {v:g}" if isinstance(v, float) else f"{label} {v}", {name: v}) for v in values]


def cell_key(request: Any, model: str) -> str:
    """The same prompt, negative, settings, seed and model give the same key (stored on the image)."""
    payload = [request.prompt, request.negative_prompt, request.seed, request.steps, round(float(request.cfg), 4),
               request.width, request.height, request.scheduler, request.profile, model]
    return "k-" + hashlib.sha1(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()[:24]


@dataclass
class GridCell:
    row: int
    col: int
    key: str
    request: Any  # GenerationRequest
    image: Any = None  # PIL image once made or found
    file: str | None = None
    image_id: str | None = None
    score: float | None = None
    state: str = "missing"  # "made" | "reused" | "missing" (not made: cancelled, or not yet)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "col": self.col, "key": self.key, "prompt": self.request.prompt,
                "seed": self.request.seed, "file": self.file, "image_id": self.image_id, "score": self.score,
                "state": self.state, "request": asdict(self.request)}


@dataclass
class RowScore:
    row: int
    mean: float | None
    spread: float | None  # the population standard deviation over the row's scored cells
    scored: int


@dataclass
class GridResult:
    plan: GridPlan
    cells: list[GridCell]
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)
    sheet: str | None = None  # the PNG sheet, once written (studio.library.sheet)

    @property
    def made(self) -> int:
        return sum(c.state == "made" for c in self.cells)

    @property
    def reused(self) -> int:
        return sum(c.state == "reused" for c in self.cells)

    @property
    def missing(self) -> int:
        return sum(c.state == "missing" for c in self.cells)

    def cell(self, row: int, col: int) -> GridCell:
        return self.cells[row * len(self.plan.columns) + col]

    def row_scores(self) -> list[RowScore]:
        out = []
        for r in range(len(self.plan.rows)):
            scores = [c.score for c in self.cells if c.row == r and c.score is not None]
            mean = float(np.mean(scores)) if scores else None
            out.append(RowScore(r, mean, float(np.std(scores)) if scores else None, len(scores)))
        return out

    def ranking(self) -> list[RowScore]:
        """Rows by mean CLIP score, best first (rows with no finished cell last)."""
        return sorted(self.row_scores(), key=lambda s: (s.mean is None, -(s.mean or 0.0), s.row))

    @property
    def best(self) -> GridRow | None:
        top = self.ranking()[0] if self.plan.rows else None
        return self.plan.rows[top.row] if top is not None and top.mean is not None else None

    def to_dict(self) -> dict[str, Any]:
        best = self.ranking()[0] if self.plan.rows else None
        return {"grid_id": self.plan.grid_id, "idea": self.plan.idea, "reference": self.plan.reference,
                "axis": self.plan.axis, "columns": [asdict(c) for c in self.plan.columns],
                "rows": [asdict(r) | {"mean": s.mean, "spread": s.spread, "scored": s.scored}
                         for r, s in zip(self.plan.rows, self.row_scores())],
                "ranking": [s.row for s in self.ranking()],
                "best": None if best is None or best.mean is None else best.row,
                "sheet": self.sheet, "made": self.made, "reused": self.reused, "missing": self.missing, "cancelled": self.cancelled,
                "notes": self.plan.notes + self.notes, "cells": [c.to_dict() for c in self.cells]}

    def describe(self) -> str:
        p = self.plan
        lines = [f"grid {p.grid_id}: {len(p.rows)} prompts x {len(p.columns)} ({p.axis}) = {len(self.cells)} cells; "
                 f"{self.made} made, {self.reused} reused, {self.missing} missing"
                 + (" (cancelled)" if self.cancelled else "")]
        for rank, s in enumerate(self.ranking(), 1):
            row = p.rows[s.row]
            score = "-" if s.mean is None else f"{s.mean:.3f} ± {s.spread:.3f}"
            lines.append(f"  {rank}. [{score}] {row.kind:9s} {row.prompt}")
        lines.append(f"columns: {', '.join(c.label for c in p.columns)}")
        if self.sheet:
            lines.append(f"sheet: {self.sheet}")
        return "\n".join(lines + [f"note: {n}" for n in p.notes + self.notes])


def plan_grid(idea: str, rows: list[GridRow], base: Any, *, seeds: int = 4, axis: str | None = None,
              reference: str | None = None, notes: list[str] | None = None) -> GridPlan:
    """A new grid's plan: `base` is a validated GenerationRequest (its seed is the first column's)."""
    parsed = parse_axis(axis)
    columns = columns_for(int(base.seed), seeds, parsed)
    unique: list[GridRow] = []
    for row in rows:  # the same text twice (a candidate equal to the idea) is one row, the first kind kept
        if row.prompt.strip() and all(u.prompt.strip() != row.prompt.strip() for u in unique):
            unique.append(row)
    if len(unique) * len(columns) > MAX_CELLS:
        raise InputError(f"{len(unique)} prompts x {len(columns)} columns is over {MAX_CELLS} cells: fewer rows, "
                         "seeds or axis values.")
    fields = {k: v for k, v in asdict(base).items() if k != "n"}
    return GridPlan(new_grid_id(), idea, reference or idea, unique, columns, fields,
                    axis="seed" if parsed is None else parsed[0].replace("scheduler", "sampler"),
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"), notes=list(notes or []))


class GridRunner:
    """Fills a plan's cells with the parts it is given: generate(request, on_preview, cancel) -> result,
    embedder() (CLIP, scores), save(result, lineage, vectors) -> its PNGs written and not yet stored
    (writeback.Pending), store(pendings) -> their records stored in one pass, find(keys) -> stored records
    with embeddings (the reuse lookup), model() -> the SDXL name in cell keys, plans: where plans are kept."""

    ROW = 4  # made cells stored together: one ingest's fixed cost (~20 ms) for four, not for each

    def __init__(self, generate: Callable[..., Any], embedder: Callable[[], Any],
                 save: Callable[[Any, Any, Any], Any], store: Callable[[list[Any]], None],
                 find: Callable[[list[str]], list[Any]], model: Callable[[], str], plans: Path) -> None:
        self.generate, self.embedder, self.save_cell, self.store, self.find = generate, embedder, save, store, find
        self.model, self.plans = model, Path(plans)

    def save(self, plan: GridPlan) -> Path:
        self.plans.mkdir(parents=True, exist_ok=True)
        path = self.plans / f"{plan.grid_id}.json"
        tmp = path.with_suffix(".partial")
        tmp.write_text(plan.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    def load(self, grid_id: str) -> GridPlan:
        path = self.plans / f"{grid_id}.json"
        if not re.fullmatch(r"g-[0-9a-f]{16}", grid_id or "") or not path.is_file():
            raise InputError(f"No grid {grid_id!r} here: `python -m studio grid --list` names the grids there are.")
        return GridPlan.from_json(path.read_text(encoding="utf-8"))

    def listing(self) -> list[GridPlan]:
        plans = []
        for path in sorted(self.plans.glob("g-*.json")) if self.plans.is_dir() else []:
            try:
                plans.append(GridPlan.from_json(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError, KeyError):
                continue  # a plan file damaged by hand: the others still list
        return sorted(plans, key=lambda p: p.created, reverse=True)

    def cells(self, plan: GridPlan) -> list[GridCell]:
        model = self.model()
        out = []
        for r in range(len(plan.rows)):
            for c in range(len(plan.columns)):
                req = plan.request(r, c)
                out.append(GridCell(r, c, cell_key(req, model), req))
        return out

    def run(self, plan: GridPlan, *, on_cell: Callable[[int, int, GridCell], None] | None = None,
            on_preview: Callable[[GridCell, Any], None] | None = None, cancel: Any = None) -> GridResult:
        """Every cell: found in the store by its key (reused, no generation) or generated, scored against
        the plan's reference and written back with the grid's id. on_cell(done, total, cell) after each;
        a set `cancel` stops before the next cell (and inside the running one): finished cells are kept."""
        from studio.library.lineage import Lineage

        self.save(plan)
        cells = self.cells(plan)
        result = GridResult(plan, cells)
        embedder = self.embedder()
        reference = np.asarray(embedder.embed_texts([plan.reference])[0])
        found = {}
        for rec in self.find([c.key for c in cells]):
            found.setdefault(rec.metadata.get("cell_key"), rec)
        done = 0
        for cell in cells:  # the stored ones first, so progress counts them at once
            rec = found.get(cell.key)
            if rec is not None and _load_into(cell, rec):
                cell.score = float(np.asarray(rec.metadata["_embedding"]) @ reference)
                cell.state = "reused"
                done += 1
                if on_cell:
                    on_cell(done, len(cells), cell)
        # Each cell's PNG is written as it is made (with its journal marker: a crash loses nothing); its records
        # go in with the next few cells' (ROW) and, whatever happens, before the grid returns.
        unstored: list[Any] = []
        try:
            for cell in cells:
                if cell.state == "reused":
                    continue
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                    break
                preview = (lambda p, cell=cell: on_preview(cell, p)) if on_preview else None
                out = self.generate(cell.request, on_preview=preview, cancel=cancel)
                if out.cancelled or not out.images:
                    result.cancelled = bool(out.cancelled)
                    break
                vectors = embedder.embed_images(out.images[:1])
                cell.score = float(np.asarray(vectors[0]) @ reference)
                row = plan.rows[cell.row]
                lineage = Lineage(idea=plan.idea, parent=row.parent, variant=row.kind, score=cell.score,
                                  grid_id=plan.grid_id, cell_key=cell.key)
                pending = self.save_cell(out, lineage, vectors)
                out.saved = pending.saved
                unstored.append(pending)
                if len(unstored) >= self.ROW:
                    self.store(unstored)
                    unstored = []
                result.notes.extend(n for n in out.notes if n not in result.notes)
                cell.image = out.images[0]
                if out.saved:
                    cell.file = str(out.saved[0].path) if out.saved[0].path else None
                    cell.image_id = out.saved[0].image_id
                cell.state = "made"
                done += 1
                if on_cell:
                    on_cell(done, len(cells), cell)
        finally:
            self.store(unstored)
        return result


def _load_into(cell: GridCell, rec: Any) -> bool:
    """A stored cell's picture, read from its file; False when the file is gone (then it is made again)."""
    from PIL import Image

    file = rec.metadata.get("file")
    if not file or not Path(file).is_file() or "_embedding" not in rec.metadata:
        return False
    try:
        with Image.open(file) as img:
            cell.image = img.convert("RGB")
    except OSError:
        return False
    cell.file, cell.image_id = file, rec.id
    return True

