"""The store's check: files, unreadable vectors, counts against records, your PNGs in outputs/ not in the store,
work left unfinished. Cheap at launch (probes and counters), whole for `python -m studio check` (every page)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.ingest.outputs import OUTPUTS_PART
from studio.search import counts, health
from studio.upkeep import journal

OUR_PNG = re.compile(r"\d{8}-\d{6}-\d+-[0-9a-f]{8}\.png")  # write-back's file names (studio.library.writeback)
SHOWN = 5  # ids named in a finding's words


@dataclass
class Finding:
    """One problem, in words; `ids` the records (or files) it is about, when the check could name them."""

    kind: str  # files | index | vectors | counts | outputs | interrupted
    text: str
    collection: str | None = None
    ids: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    store: str
    full: bool
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # collection -> records whose vectors were read
    repaired: list[str] = field(default_factory=list)  # what --repair did, in words

    @property
    def ok(self) -> bool:
        return not self.findings

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def summary(self) -> str:
        read = ", ".join(f"{name}: {n:,}" for name, n in self.checked.items())
        how = "every record's vector read" if self.full else "a sample of vectors probed"
        lines = [f"store: {self.store} ({how}{'; ' + read if read else ''})"]
        lines += [f"  - {f.text}" for f in self.findings] or ["  the store is whole: nothing to repair."]
        if self.findings and not self.repaired:
            lines.append("Run `python -m studio check --repair` (with the studio stopped) to mend it.")
        lines += [f"  repaired: {r}" for r in self.repaired]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _named(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (" …" if len(ids) > SHOWN else "")


def by_model(client: Any) -> dict[str, dict[str, Any]]:
    """The store's collections by CLIP key, then kind: {"clip-vit-base-patch32": {"prompts": col, "images": col}}."""
    out: dict[str, dict[str, Any]] = {}
    for col in client.list_collections():
        kind, _, key = col.name.partition("__")
        if kind in ("prompts", "images") and key:
            out.setdefault(key, {})[kind] = col
    return out


def studio_key(studio: Any) -> str:
    """The CLIP key this studio's store uses (from the loaded CLIP when there is one: no load for a check)."""
    from studio.search.store import model_key

    embedder = studio.clip.value
    return model_key(embedder.name if embedder is not None else str(studio.settings.clip_model))


def check_vectors(col: Any, total: int, full: bool, tick: Callable[[int], None] | None) -> tuple[int, Finding | None]:
    if full:
        checked, bad = health.scan(col, tick)
        if not bad:
            return checked, None
        return checked, Finding("vectors", f"{col.name}: {len(bad):,} of {checked:,} records have no readable vector "
                                f"(searches never find them): {_named(bad)}", col.name, bad)
    probed, n_bad = health.probe(col, total)
    if not n_bad:
        return probed, None
    return probed, Finding("vectors", f"{col.name}: {n_bad} of {probed} records probed have no readable vector, so "
                           f"about {n_bad / probed:.0%} of its {total:,} records cannot be found by a search", col.name)


def check_counters(client: Any, col: Any, total: int) -> Finding | None:
    stored = counts._stored(col.metadata)
    if stored is None or sum(stored.values()) == total:
        return None
    return Finding("counts", f"{col.name}: the counters say {sum(stored.values()):,} records, the collection holds "
                   f"{total:,}", col.name)


def metadata_pages(col: Any, page: int = health.PAGE) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    offset = 0
    while True:
        got = col.get(include=["metadatas"], limit=page, offset=offset)
        if got["ids"]:
            yield list(got["ids"]), [m or {} for m in got["metadatas"]]
        offset += len(got["ids"])
        if len(got["ids"]) < page:
            return


def outputs_counts(prompts: Any, images: Any) -> dict[str, tuple[int, int]]:
    """prompt id -> (images its record counts under `outputs`, image records of it from outputs), where they differ."""
    stored: Counter = Counter()
    for _, metas in metadata_pages(images):
        stored.update(m.get("prompt_id") for m in metas if m.get("part") == OUTPUTS_PART and m.get("prompt_id"))
    wrong: dict[str, tuple[int, int]] = {}
    for ids, metas in metadata_pages(prompts):
        for pid, meta in zip(ids, metas):
            said = int(json.loads(meta.get("counts") or "{}").get(OUTPUTS_PART, 0))
            if said != stored.get(pid, 0):
                wrong[pid] = (said, stored.get(pid, 0))
    return wrong


def our_pngs(outputs_dir: Path) -> list[Path]:
    folder = Path(outputs_dir)
    return sorted(p for p in folder.iterdir() if OUR_PNG.fullmatch(p.name)) if folder.is_dir() else []


def missing_outputs(outputs_dir: Path, images: Any) -> list[Path]:
    """Our PNGs whose image record is not stored (their id read from our chunk; the pixels are not read)."""
    from PIL import Image

    from studio.ingest.outputs import our_chunk

    by_id: dict[str, Path] = {}
    for path in our_pngs(outputs_dir):
        try:
            with Image.open(path) as img:
                chunk = our_chunk(img)
        except OSError:
            continue
        if chunk:
            by_id[str(chunk["image_id"])] = path
    ids = list(by_id)
    stored: set[str] = set()
    for start in range(0, len(ids), health.PAGE):
        stored.update(images.get(ids=ids[start:start + health.PAGE], include=[])["ids"])
    return [by_id[i] for i in ids if i not in stored]


def check(studio: Any, full: bool = True, tick: Callable[[int], None] | None = None) -> CheckReport:
    """What is wrong with the studio's store, in words. Never writes to it."""
    settings = studio.settings
    report = CheckReport(settings.chroma_url or str(settings.store_dir), full)
    if not settings.chroma_url:
        problem = health.files_problem(settings.store_dir)
        if problem:  # opening it would let Chroma start an empty database: nothing more to read
            report.findings.append(Finding("files", problem))
            return report
        short = health.cut_short(settings.store_dir)
        if short:  # hnswlib would read past their end: not opened until they are set aside
            report.findings.append(Finding("index", health.damaged_files(settings.store_dir) or "",
                                           ids=[str(folder) for folder, _ in short]))
            return report
    client = studio.client
    pairs = by_model(client)
    for cols in pairs.values():
        for col in cols.values():
            total = int(col.count())
            report.checked[col.name], found = check_vectors(col, total, full, tick)
            for f in (found, check_counters(client, col, total)):
                if f:
                    report.findings.append(f)
        if full and {"prompts", "images"} <= cols.keys():
            wrong = outputs_counts(cols["prompts"], cols["images"])
            if wrong:
                shown = "; ".join(f"{pid} counts {a}, {b} stored" for pid, (a, b) in list(wrong.items())[:SHOWN])
                report.findings.append(Finding("counts", f"{len(wrong)} prompt records count generated images other "
                                               f"than those stored ({shown})", cols["prompts"].name, list(wrong)))
    images = (pairs.get(studio_key(studio)) or {}).get("images")
    pngs = our_pngs(settings.outputs_dir)
    if pngs:
        if full:
            gone = missing_outputs(settings.outputs_dir, images) if images is not None else pngs
            if gone:
                report.findings.append(Finding("outputs", f"{len(gone)} of your {len(pngs)} PNGs in "
                                               f"{settings.outputs_dir} are not in the store: "
                                               f"{_named([p.name for p in gone])}", None, [str(p) for p in gone]))
        else:  # launch: the files against the counter of generated images, no file opened
            held = (counts._stored(images.metadata) or {}).get("generated", 0) if images is not None else 0
            if len(pngs) > held:
                report.findings.append(Finding("outputs", f"{len(pngs) - held} of your {len(pngs)} PNGs in "
                                               f"{settings.outputs_dir} are not in the store"))
    pending = journal.pending_write_backs(settings.outputs_dir)
    if pending:
        report.findings.append(Finding("interrupted", f"{len(pending)} write-backs were cut off (the studio stopped "
                                       "while storing a generation)"))
    if journal.sample_unfinished(settings):
        report.findings.append(Finding("interrupted", "the first run's sample load was stopped part-way"))
    return report
