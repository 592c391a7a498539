"""GridService: a grid's rows (idea, retrieved, rewrites, typed variants, wildcard expansions), run and reopened."""

from __future__ import annotations

import re
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Callable, Sequence

from studio.errors import InputError
from studio.generate.wildcards import expand, has_syntax
from studio.library.grid import GridPlan, GridResult, GridRow, GridRunner, plan_grid
from studio.search.results import MINE

MAX_TYPED = 16


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())


def grid_rows(idea: str, rewrite: Any, retrieved: int, typed: Sequence[str],
              expansions: Sequence[str]) -> tuple[list[GridRow], list[str]]:
    """The rows in order: the idea (or its expansions), the best retrieved prompts (others' work, not the idea
    again), the rewrite candidates, then the typed variants."""
    notes: list[str] = []
    rows = [GridRow("wildcard", e) for e in expansions] if expansions else [GridRow("idea", idea)]
    hits = list(getattr(rewrite, "retrieved", None) or [])
    theirs = [h for h in hits if (h.prompt or "").strip() and h.metadata.get("source") not in MINE
              and _words(h.prompt) != _words(idea)]
    rows += [GridRow("retrieved", h.prompt, h.id) for h in theirs[:retrieved]]
    if retrieved and not theirs:
        notes.append("No stored prompt by someone else was retrieved for this idea: no 'retrieved' row.")
    parent = hits[0].id if hits else None
    rows += [GridRow("rewritten", c.text, parent) for c in getattr(rewrite, "candidates", None) or []
             if (c.text or "").strip()]
    rows += [GridRow("typed", t.strip()) for t in typed if t and t.strip()]
    return rows, notes


class GridService:
    """Builds and runs grids with the parts it is given: rewrite(text, n) -> RewriteResult, search(text, k) ->
    SearchResult, runner (GridRunner), wildcards: the folder of NAME.txt lists, library(name) -> values."""

    def __init__(self, rewrite: Callable[[str, int], Any], search: Callable[[str, int], Any], runner: GridRunner,
                 wildcards: Callable[[], Path], library: Callable[[str], list[str] | None]) -> None:
        self.rewrite, self.search, self.runner = rewrite, search, runner
        self.wildcards, self.library = wildcards, library

    def expand(self, template: str, *, mode: str = "random", n: int = 4, seed: int | None = 0,
               locked: Sequence[str] = (), repeats: bool = False) -> Any:
        return expand(template, mode=mode, n=n, seed=seed, folder=self.wildcards(), library=self.library,
                      locked=locked, repeats=repeats)

    def plan(self, idea: str, base: Any, *, seeds: int = 4, candidates: int = 3, retrieved: int | None = None,
             axis: str | None = None, typed: Sequence[str] = (), wildcards: bool = False, mode: str = "random",
             expansions: int = 4, locked: Sequence[str] = ()) -> GridPlan:
        """A new grid's plan. candidates: rewrite candidates (0: no LLM); retrieved: best retrieved prompts
        (default 1 with candidates, else 0); wildcards: the idea (and typed variants) expanded into rows."""
        if not 0 <= candidates <= 8:
            raise InputError(f"candidates={candidates}: ask for 0 to 8 rewrite candidates.")
        if len(typed) > MAX_TYPED:
            raise InputError(f"{len(typed)} typed variants: a grid takes up to {MAX_TYPED}.")
        retrieved = (1 if candidates else 0) if retrieved is None else retrieved
        notes: list[str] = []
        grown, reference = [], idea
        if wildcards or has_syntax(idea):
            if not has_syntax(idea) and not any(has_syntax(t) for t in typed):
                notes.append("Wildcards were asked for, but the idea has no {a|b} or __name__ in it.")
            if has_syntax(idea):
                out = self.expand(idea, mode=mode, n=expansions, seed=int(base.seed), locked=locked)
                grown, notes = out.prompts, notes + out.notes
                reference = grown[0]  # one text scores every row alike: the first expansion stands for the idea
                notes.append(f"Scored against the first expansion: “{reference}”.")
            typed = [p for t in typed for p in (self.expand(t, mode=mode, n=expansions, seed=int(base.seed),
                                                            locked=locked).prompts if has_syntax(t) else [t])]
        rewrite = None
        if candidates:
            rewrite = self.rewrite(reference, candidates)
        elif retrieved:
            rewrite = SimpleNamespace(retrieved=self.search(reference, retrieved + 8).results, candidates=[])
        rows, more = grid_rows(reference if not grown else idea, rewrite, retrieved, typed, grown)
        return plan_grid(idea, rows, base, seeds=seeds, axis=axis, reference=reference, notes=notes + more)

    def run(self, plan: GridPlan, **kw: Any) -> GridResult:
        return self.runner.run(plan, **kw)

    def reopen(self, grid_id: str, *, fill: bool = True, **kw: Any) -> GridResult:
        """An earlier grid: its stored cells, and (fill) only the missing ones generated."""
        plan = self.runner.load(grid_id)
        if fill:
            return self.runner.run(plan, **kw)
        result = self.runner.run(plan, cancel=_Set(), **{k: v for k, v in kw.items() if k != "cancel"})
        result.cancelled = False  # nothing was asked for but what is stored
        return result

    def listing(self) -> list[GridPlan]:
        return self.runner.listing()


class _Set:
    """A cancel flag that is always set: the run reads the stored cells and generates none."""

    def is_set(self) -> bool:
        return True

