"""The CLI's grid, expand, styles and negatives subcommands (`python -m studio grid IDEA ...`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from studio.errors import InputError


def add_parsers(sub: Any, common: argparse.ArgumentParser, generation: Callable[..., None]) -> None:
    p = sub.add_parser("grid", parents=[common], help="an idea: prompts x seeds (or one setting), each image "
                       "CLIP-scored, rows ranked; cells made before are reused")
    p.add_argument("idea", nargs="?", help="the idea ({a|b} and __name__ wildcards expand with --wildcards)")
    p.add_argument("--seeds", type=int, default=4, help="seed columns from --seed (default 4)")
    p.add_argument("--candidates", type=int, default=3, help="rewrite candidates as rows (0: the idea and its "
                   "wildcard expansions alone; default 3)")
    p.add_argument("--retrieved", type=int, help="best retrieved prompts as rows (default 1, 0 with --candidates 0)")
    p.add_argument("--axis", help="columns of one setting instead of seeds: cfg=4,6,8 | steps=20,30 | "
                   "sampler=Euler,DDIM | lora:NAME=0.4,0.8")
    p.add_argument("--variant", action="append", default=[], metavar="PROMPT", help="a typed variant as a row (repeat)")
    p.add_argument("--wildcards", action="store_true", help="expand the idea's {a|b} and __name__ into rows")
    p.add_argument("--wildcard-mode", choices=["random", "combinatorial"], default="random")
    p.add_argument("--expansions", type=int, default=4, help="rows from the wildcards (random: drawn with the "
                   "seed; combinatorial: the cap; default 4)")
    p.add_argument("--lock", action="append", default=[], metavar="TERM", help="a term kept verbatim (repeat)")
    p.add_argument("--reopen", metavar="GRID_ID", help="an earlier grid: reuse its cells, generate the missing ones")
    p.add_argument("--list", action="store_true", help="the grids made here, newest first")
    p.add_argument("--sheet", metavar="PNG", help="where the labelled sheet goes (default STUDIO_HOME/grids/ID.png)")
    generation(p, batch=False)
    p.add_argument("--sampler", dest="scheduler", help="the same as --scheduler (A1111's word)")
    p = sub.add_parser("expand", parents=[common], help="a prompt's {a|b} variants and __name__ wildcards "
                       "(dynamicprompts), A1111 syntax kept")
    p.add_argument("template")
    p.add_argument("-n", type=int, default=4, help="how many prompts (combinatorial: the cap; default 4)")
    p.add_argument("--seed", type=int, default=0, help="random mode: the same seed gives the same prompts")
    p.add_argument("--mode", choices=["random", "combinatorial"], default="random")
    p.add_argument("--lock", action="append", default=[], metavar="TERM", help="a term kept verbatim (repeat)")


def _bar(total_hint: int = 0) -> tuple[Callable[[int, int, Any], None], Callable[[], None]]:
    from tqdm import tqdm

    bar: list[Any] = []

    def on_cell(done: int, total: int, cell: Any) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit="cell", desc="grid", file=sys.stderr))
        bar[0].set_postfix_str(cell.state)
        bar[0].update(done - bar[0].n)

    return on_cell, lambda: bar[0].close() if bar else None


def run_grid(studio: Any, a: argparse.Namespace, fields: dict[str, Any]) -> Any:
    if a.list:
        return {"grids": [{"grid_id": p.grid_id, "idea": p.idea, "created": p.created, "rows": len(p.rows),
                           "columns": [c.label for c in p.columns]} for p in studio.grid_list()]}
    on_cell, close = _bar()
    try:
        if a.reopen:
            out = studio.reopen_grid(a.reopen, on_cell=on_cell)
        elif not a.idea:
            raise InputError("Give an idea (python -m studio grid 'a fox in the snow'), or --reopen GRID_ID, or --list.")
        else:
            fields.pop("n", None)
            out = studio.grid(a.idea, seeds=a.seeds, candidates=a.candidates, retrieved=a.retrieved, axis=a.axis,
                              variants=a.variant, wildcards=a.wildcards, wildcard_mode=a.wildcard_mode,
                              expansions=a.expansions, locked=a.lock, on_cell=on_cell, **fields)
    finally:
        close()
    out.sheet = str(studio.grid_sheet(out, a.sheet))
    return out


def run_expand(studio: Any, a: argparse.Namespace) -> Any:
    return studio.expand(a.template, mode=a.mode, n=a.n, seed=a.seed, locked=a.lock)


def show(name: str, out: Any) -> bool:
    """Plain-text output of these subcommands; False: not one of them."""
    if name == "grid" and isinstance(out, dict):
        for g in out["grids"] or [{"grid_id": "(none yet)", "idea": "", "created": "", "columns": []}]:
            print(f"{g['grid_id']}  {g['created']}  {g['idea']}  [{', '.join(g['columns'])}]")
        return True
    if name == "expand":
        print("\n".join(out.prompts + [f"note: {n}" for n in out.notes]))
        return True
    return False
