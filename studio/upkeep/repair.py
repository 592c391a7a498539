"""`python -m studio check --repair`: vectors re-embedded from the stored text and the image files, a store whose
database was lost set aside and rebuilt from the sources it recorded, your generations restored from outputs/,
counts set from the records; then checked again, whole."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio.ingest.outputs import OUTPUTS_PART
from studio.search import counts, health
from studio.upkeep import journal
from studio.upkeep.check import CheckReport, by_model, check, metadata_pages, our_pngs


def reembed(studio: Any, col: Any, ids: list[str]) -> str:
    """Give records their vectors again: prompts from their text, images from their files. An image record whose
    file is gone too cannot be found by anything: it is removed, and said."""
    kind = col.name.split("__")[0]
    embedder = studio.embedder
    fixed, dropped = 0, []
    for start in range(0, len(ids), health.PAGE):
        got = col.get(ids=ids[start:start + health.PAGE], include=["documents", "metadatas"])
        keep: list[tuple[str, str | None, dict, Any]] = []
        if kind == "prompts":
            vectors = embedder.embed_texts([d or "" for d in got["documents"]]) if got["ids"] else []
            keep = list(zip(got["ids"], got["documents"], got["metadatas"], vectors))
        else:
            from studio.images import open_image, read_location

            for rid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                try:
                    pixels = open_image(read_location((meta or {}).get("file") or ""), name=rid)
                except Exception:  # noqa: BLE001 - a file gone or unreadable: nothing to embed from
                    dropped.append(rid)
                    continue
                keep.append((rid, doc, meta, embedder.embed_images([pixels])[0]))
        # Deleted, then added: Chroma's index has no entry to update for a record whose vector it lost.
        col.delete(ids=list(got["ids"]))
        if keep:
            col.add(ids=[k[0] for k in keep], documents=[k[1] for k in keep], metadatas=[k[2] for k in keep],
                    embeddings=np.asarray([k[3] for k in keep], np.float32))
        fixed += len(keep)
    text = f"{col.name}: {fixed:,} records embedded again"
    if dropped:
        text += f"; {len(dropped)} image records removed, their files gone too ({', '.join(dropped[:5])})"
    return text


def set_aside(studio: Any) -> Path:
    """Move a store whose database is lost out of the way (kept, never deleted) and open a new, empty one."""
    store = studio.settings.store_dir
    studio.close()
    aside = store.with_name(f"{store.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(store), str(aside))
    return aside


def rebuild(studio: Any, aside: Path) -> list[str]:
    """Ingest again what the lost store recorded (the sample, tables, folders: those still on this machine)."""
    done, gone = [], []
    for entry in journal.sources(aside):
        source = entry.get("source") or ""
        local = not source.startswith(("hf:", "hub:"))
        if (local and not Path(source).expanduser().exists()) or Path(source) == studio.settings.outputs_dir:
            if local and Path(source) != studio.settings.outputs_dir:
                gone.append(source)
            continue
        report = studio.ingest(source, limit=entry.get("limit"), source_tag=entry.get("tag"))
        done.append(report.summary())
    if (aside / journal.SAMPLE).is_file():
        journal.sample_done(studio.settings)
    if gone:
        done.append(f"not on this machine any more, so not read again: {', '.join(gone)}")
    return done


def restore_outputs(studio: Any) -> str | None:
    """Your generations (and images) in outputs/ stored, whatever a crash or a lost database left out."""
    if not our_pngs(studio.settings.outputs_dir) and not journal.pending_write_backs(studio.settings.outputs_dir):
        return None
    pending = journal.pending_write_backs(studio.settings.outputs_dir)
    report = studio.ingest(str(studio.settings.outputs_dir))
    for marker in pending:  # only those there before: a write-back begun since keeps its own
        journal.write_back_done(marker)
    return report.summary()


def recount_outputs(prompts: Any, images: Any) -> int:
    """Each prompt's `outputs` count set to its image records from outputs (a crash between the prompt and its
    image leaves a count with no image); returns how many prompts changed."""
    stored: Counter = Counter()
    for _, metas in metadata_pages(images):
        stored.update(m.get("prompt_id") for m in metas if m.get("part") == OUTPUTS_PART and m.get("prompt_id"))
    ids, metas_out = [], []
    for page_ids, metas in metadata_pages(prompts):
        for pid, meta in zip(page_ids, metas):
            by_part = json.loads(meta.get("counts") or "{}")
            if int(by_part.get(OUTPUTS_PART, 0)) == stored.get(pid, 0):
                continue
            by_part[OUTPUTS_PART] = stored.get(pid, 0)
            by_part = {k: v for k, v in by_part.items() if v or k != OUTPUTS_PART}
            ids.append(pid)
            metas_out.append({**meta, "counts": json.dumps(by_part, sort_keys=True),
                              "image_count": sum(by_part.values())})
    for start in range(0, len(ids), health.PAGE):
        prompts.update(ids=ids[start:start + health.PAGE], metadatas=metas_out[start:start + health.PAGE])
    return len(ids)


def repair(studio: Any, report: CheckReport, tick: Callable[[int], None] | None = None) -> CheckReport:
    """Mend what `report` (a full check) found, then check again; the new report lists what was done."""
    done: list[str] = []
    settings = studio.settings
    if report.of("files"):
        aside = set_aside(studio)
        done.append(f"the damaged store was moved to {aside} (kept); a new one was made")
        done += rebuild(studio, aside)
    else:
        if report.of("index"):  # folders cut short set aside: Chroma opens without them, their vectors unreadable
            aside = settings.store_dir.with_name(f"{settings.store_dir.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            aside.mkdir(parents=True, exist_ok=True)
            for folder in report.of("index")[0].ids:
                shutil.move(folder, str(aside / Path(folder).name))
            done.append(f"{len(report.of('index')[0].ids)} index folders cut short were moved to {aside} (kept)")
            report = check(studio, full=True, tick=tick)
        for finding in report.of("vectors"):
            col = studio.client.get_collection(finding.collection, embedding_function=None)
            ids = finding.ids or health.scan(col)[1]
            done.append(reembed(studio, col, ids))
    restored = restore_outputs(studio)
    if restored:
        done.append(f"outputs/: {restored}")
    if journal.sample_unfinished(settings):
        reports = studio.ingest_sample()
        journal.sample_done(settings)
        done.append("the sample load was finished: " + " ".join(r.summary() for r in reports))
    with counts.LOCK:
        for cols in by_model(studio.client).values():
            if {"prompts", "images"} <= cols.keys():
                n = recount_outputs(cols["prompts"], cols["images"])
                if n:
                    done.append(f"{cols['prompts'].name}: {n} prompts' counts of your images set from the records")
            for col in cols.values():
                counts.recount(studio.client.get_collection(col.name, embedding_function=None))
    done.append("counters recounted from the records")
    after = check(studio, full=True, tick=tick)
    after.repaired = done
    return after
