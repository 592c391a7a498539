"""DiffusionDB readers: part folders and zips, metadata parquet/CSV, and hub part ranges -> Rows."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.errors import InputError
from studio.ingest.cells import plain, typed_column, typed_settings, whole_column
from studio.ingest.row import Row  # noqa: F401 - where the readers' callers long imported it from

IMAGE_SUFFIXES = {".png", ".webp", ".jpg", ".jpeg"}
TABLE_BATCH = 65_536  # rows per record batch: a few MB of Python objects at a time, whatever the table's size
# Column names of the metadata table, and the names we store them under.
_COLUMNS = {"image_name": "image_name", "image_filename": "image_name", "prompt": "prompt", "part_id": "part_id",
            "seed": "seed", "step": "steps", "steps": "steps", "cfg": "cfg", "sampler": "sampler",
            "width": "width", "height": "height", "user_name": "user_name", "timestamp": "timestamp",
            "image_nsfw": "image_nsfw", "prompt_nsfw": "prompt_nsfw"}
_PART_JSON_KEYS = {"se": "seed", "c": "cfg", "st": "steps", "sa": "sampler"}
# A prompt library's prompt column, by the names tables use for it (the first found wins).
PROMPT_COLUMNS = ("prompt", "Prompt", "PROMPT", "prompts", "text", "Text", "caption", "positive_prompt")
# Columns only DiffusionDB's metadata has: a table with one is DiffusionDB (source diffusiondb).
DIFFUSIONDB_ONLY = {"part_id", "step", "sampler", "image_nsfw", "prompt_nsfw", "user_name", "image_name"}
# Metadata keys the studio writes itself: a library column of that name is stored as col_<name>.
RESERVED = {"source", "counts", "image_count", "image_id", "prompt_id", "file", "part", "created", "fingerprint",
            "kind", "comparison_id", "lineage"}
MAX_EXTRA_CHARS = 1_000
TABLE_SUFFIXES = {".csv", ".parquet", ".jsonl", ".ndjson"}
HUB_REPO = "poloclub/diffusiondb"


def _part_name(path: Path) -> str:
    match = re.search(r"part-\d{6}", path.name)
    return match.group(0) if match else path.stem


def _part_json_rows(mapping: Any, part: str, origin: str, locate: Callable[[str], str | None]) -> Iterator[Row]:
    if not isinstance(mapping, dict):
        raise InputError(f"{origin} is not a DiffusionDB part JSON (expected {{\"image.png\": {{\"p\": ...}}}}).")
    for name, entry in mapping.items():
        if not isinstance(entry, dict) or "p" not in entry:
            continue
        settings = typed_settings({_PART_JSON_KEYS[k]: v for k, v in entry.items() if k in _PART_JSON_KEYS})
        yield Row(str(name), str(entry["p"] or ""), part, settings, locate(str(name)))


def _is_part_mapping(path: Path) -> bool:
    """A DiffusionDB part JSON ({"image.png": {"p": prompt, ...}}), whatever its file name (the sample's is
    images.json), as opposed to any other JSON lying beside a user's images (a ComfyUI workflow)."""
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "part-" in path.name  # a broken part JSON is still a part: read_folder says what is wrong
    return isinstance(mapping, dict) and any(isinstance(v, dict) and "p" in v for v in mapping.values())


def has_part_json(folder: Path) -> bool:
    return any(_is_part_mapping(p) for p in folder.glob("*.json"))


def part_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """A folder's DiffusionDB part JSONs, part zips and tables: none of them means a folder of images."""
    jsons = sorted(p for p in folder.glob("*.json") if _is_part_mapping(p))
    zips = sorted(folder.glob("*.zip"))
    tables = sorted(p for p in folder.iterdir() if p.suffix in TABLE_SUFFIXES)
    return jsons, zips, tables


def read_folder(folder: Path) -> Iterator[Row]:
    """A part folder: images plus a part JSON; zips and tables in the folder are read too. A folder with none of
    those is a folder of images, which studio/ingest/readers.py hands to studio/ingest/outputs.py instead."""
    jsons, zips, tables = part_files(folder)
    for path in jsons:
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}).") from exc

        def locate(name: str, base: Path = path.parent) -> str | None:
            image = base / name
            return str(image.resolve()) if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file() else None

        yield from _part_json_rows(mapping, _part_name(path) if "part-" in path.name else folder.name, str(path), locate)
    for path in zips:
        yield from read_zip(path)
    for path in tables:
        tag = table_source(path)  # a prompt library is its own source wherever its table sits (not diffusiondb)
        for row in read_table(path):
            if tag is not None and row.source is None:
                row.source = tag
            yield row


def read_zip(path: Path, extra: dict[str, dict[str, Any]] | None = None) -> Iterator[Row]:
    """A DiffusionDB part zip: part-XXXXXX.json and its images; `extra` adds metadata-table columns."""
    try:
        zf = zipfile.ZipFile(path)
        members = set(zf.namelist())
        json_names = sorted(n for n in members if n.endswith(".json"))
        if not json_names:
            raise InputError(f"{path} holds no part JSON: it is not a DiffusionDB part zip.")
        mapping = json.loads(zf.read(json_names[0]))
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(f"{path} is not a readable zip ({exc}). Download the part again.") from exc
    prefix = json_names[0].rpartition("/")[0]
    part = _part_name(path)
    resolved = str(path.resolve())

    def locate(name: str) -> str | None:
        member = f"{prefix}/{name}" if prefix else name
        return f"{resolved}::{member}" if member in members else None

    with zf:
        for row in _part_json_rows(mapping, part, str(path), locate):
            if extra and row.image_name in extra:
                row.settings = {**typed_settings(extra[row.image_name]), **row.settings}
            yield row


def _batches(path: Path) -> tuple[list[str], Iterator[Any]]:
    """The table's column names and its rows in record batches (pyarrow; never the whole table at once).
    CSV cells are read as text and typed by cells.typed_settings, so one odd cell cannot fail a block."""
    import pyarrow as pa

    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(path)
            schema = table.schema_arrow
            names = list(schema.names)
            prompt = prompt_column(names)
            nested = [f"{f.name} ({f.type})" for f in schema if f.name in _COLUMNS and pa.types.is_nested(f.type)]
            if prompt and pa.types.is_nested(schema.field(prompt).type):
                raise InputError(f"{path}: its `{prompt}` column holds {schema.field(prompt).type} values, not "
                                 "text. Write the prompts as one text column and ingest again.")
            if nested:
                raise InputError(f"{path}: the column(s) {', '.join(nested)} hold lists or records where the studio "
                                 "reads plain numbers or text. Flatten or drop them and ingest again.")
            keep = [f.name for f in schema if not pa.types.is_nested(f.type)]  # a library's other columns too
            return names, table.iter_batches(batch_size=TABLE_BATCH, columns=keep)
        if path.suffix in (".jsonl", ".ndjson"):
            import pyarrow.json as pajson

            reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=16 << 20))
            return list(reader.schema.names), iter(reader)
        import pyarrow.csv as pacsv

        with open(path, "rb") as f:
            header = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 20)).schema.names
        keep = list(header)
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=16 << 20),
            convert_options=pacsv.ConvertOptions(include_columns=keep, column_types={c: pa.string() for c in keep},
                                                 strings_can_be_null=True))
        return list(header), iter(reader)
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"Could not read {path} as a {path.suffix[1:]} table ({exc}).") from exc


def prompt_column(names: list[str]) -> str | None:
    return next((c for c in PROMPT_COLUMNS if c in names), None)


def is_diffusiondb(names: list[str]) -> bool:
    return bool(DIFFUSIONDB_ONLY & set(names))


def table_source(path: Path) -> str | None:
    """The source name a prompt library's rows are stored under (its file's stem), or None for DiffusionDB."""
    if path.suffix not in TABLE_SUFFIXES or not path.is_file():
        return None
    try:
        names, _ = _batches(path)
    except InputError:
        return None
    return None if is_diffusiondb(names) else source_name(path.stem)


def source_name(text: str) -> str:
    """A source tag: letters, digits, '-', '_' and '.', at most 64."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:64] or "library"


def _extra_value(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, str):
        return value[:MAX_EXTRA_CHARS] or None
    return value if isinstance(value, (int, float, bool)) else None


def read_table(path: Path, light: bool = False) -> Iterator[Row]:
    """A .parquet, .csv or .jsonl table with a prompt column (prompt, text, caption, ...), streamed: DiffusionDB's
    metadata (its columns typed), or any prompt library, whose other columns are kept as metadata (a `url`
    is kept as text, never fetched).
    light: rows for the ingest's counting pass only (prompt, part, the notes on wrong-typed cells): no settings
    or other columns are built per row, which is most of the reading's cost (Chroma's adds hold the GIL, so
    every Python step of an ingest adds to its time)."""
    import pyarrow as pa

    names, batches = _batches(path)
    prompt_col = prompt_column(names)
    if prompt_col is None:
        raise InputError(
            f"{path} has no prompt column (it has: {', '.join(map(str, names))}). A table needs one named "
            f"{', '.join(PROMPT_COLUMNS[:-1])} or {PROMPT_COLUMNS[-1]}; `image_name`, `seed`, `cfg`, ... are optional."
        )
    library = not is_diffusiondb(names)
    i, stem, parts = 0, path.stem, {}  # part names made once per part, not per row
    try:
        for batch in batches:
            raw = {n: batch.column(n) for n in batch.schema.names}
            prompts = raw.pop(prompt_col).to_pylist()
            columns = {_COLUMNS[n]: a for n, a in raw.items() if n in _COLUMNS and _COLUMNS[n] != "prompt"}
            others = {(f"col_{n}" if n in RESERVED else n): a.to_pylist() for n, a in raw.items()
                      if library and n not in _COLUMNS and not pa.types.is_nested(a.type)}
            names_col = columns.pop("image_name").to_pylist() if "image_name" in columns else None
            if light:  # the count pass: the part (from part_id) and the slow cells' notes, nothing else
                typed = {k: typed_column(k, a) if k == "part_id" else ([] if whole_column(k, a) is not None else None)
                         for k, a in columns.items()}
                typed = {k: v for k, v in typed.items() if v != []}
                names_col, others = None, {}
            else:
                typed = {k: typed_column(k, a) for k, a in columns.items()}
            fast = {k: v for k, v in typed.items() if v is not None}
            slow = {k: columns[k].to_pylist() for k, v in typed.items() if v is None}
            for j, prompt in enumerate(prompts):
                prompt = "" if prompt is None else prompt if isinstance(prompt, str) else str(prompt)
                settings = {k: col[j] for k, col in fast.items() if col[j] is not None}
                notes: list[str] = []
                if slow:
                    settings.update(typed_settings({k: col[j] for k, col in slow.items()}, notes, f" (row {i + 1:,})"))
                name = plain(names_col[j]) if names_col is not None else None
                pid = settings.get("part_id")
                part = stem if pid is None else parts.get(pid) or parts.setdefault(pid, f"part-{pid:06d}")
                extra = {k: v for k, col in others.items() if (v := _extra_value(col[j])) is not None} if others else {}
                yield Row(str(name) if name is not None else f"{stem}-row{i:07d}", prompt, part, settings,
                          extra=extra, notes=notes or None)
                i += 1
    except pa.ArrowException as exc:  # a malformed block further down the file
        raise InputError(f"Could not read {path} past row {i:,} ({exc}). Rows before it were read; fix the "
                         "file and ingest again (what is stored is kept).") from exc


# -- hub:2m:1-5 ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSpec:
    subset: str  # "2m" | "large"
    parts: tuple[int, ...]  # empty: the whole metadata table alone (hub:2m:metadata), no images

    def zip_path(self, part: int) -> str:
        if self.subset == "2m":
            return f"images/part-{part:06d}.zip"
        folder = "diffusiondb-large-part-1" if part <= 10000 else "diffusiondb-large-part-2"
        return f"{folder}/part-{part:06d}.zip"

    @property
    def metadata_path(self) -> str:
        return "metadata.parquet" if self.subset == "2m" else "metadata-large.parquet"


def parse_hub(spec: str) -> HubSpec:
    """'hub:2m:1-5' or 'hub:large:3' or 'hub:2m:1,4,9' -> HubSpec; 'hub:2m:metadata' (every prompt with its
    settings and NSFW scores, no images); errors list the valid forms."""
    if whole := re.fullmatch(r"hub:(2m|large):metadata", spec.strip()):
        return HubSpec(whole.group(1), ())
    match = re.fullmatch(r"hub:(2m|large):([\d,\-\s]+)", spec.strip())
    if not match:
        raise InputError(f"{spec!r}: write hub:2m:1-5 or hub:large:1-5 (DiffusionDB part numbers), or "
                         "hub:2m:metadata / hub:large:metadata (the whole table, no images).")
    subset, ranges = match.groups()
    top = 2000 if subset == "2m" else 14000
    parts: list[int] = []
    for piece in filter(None, (p.strip() for p in ranges.split(","))):
        lo, _, hi = piece.partition("-")
        start, end = int(lo), int(hi or lo)
        if not 1 <= start <= end <= top:
            raise InputError(f"{spec!r}: the {subset} subset has parts 1 to {top}.")
        parts.extend(range(start, end + 1))
    return HubSpec(subset, tuple(dict.fromkeys(parts)))


def read_hub(spec: HubSpec, cache: Path, offline: bool, light: bool = False) -> Iterator[Row]:
    """Download (once) the metadata parquet and the part zips, then read them as local parts."""
    if offline:
        raise InputError("STUDIO_OFFLINE/HF_HUB_OFFLINE is set: hub sources need a connection. "
                         "Download the part zips by hand and ingest the folder instead.")
    import huggingface_hub

    def fetch(name: str) -> Path:
        try:
            return Path(huggingface_hub.hf_hub_download(HUB_REPO, name, repo_type="dataset", local_dir=cache))
        except Exception as exc:
            raise InputError(f"Could not download {HUB_REPO}/{name} ({type(exc).__name__}: {exc}).") from exc

    import pyarrow.parquet as pq

    if not spec.parts:  # the whole table (2M or 14M rows), streamed in record batches
        yield from read_table(fetch(spec.metadata_path), light)
        return
    table = pq.read_table(fetch(spec.metadata_path), filters=[("part_id", "in", list(spec.parts))])
    extra: dict[str, dict[str, Any]] = {}
    for rec in table.to_pylist():
        name = rec.pop("image_name")
        rec.pop("prompt", None)
        extra[name] = {_COLUMNS[k]: v for k, v in rec.items() if k in _COLUMNS}
    for part in spec.parts:
        yield from read_zip(fetch(spec.zip_path(part)), extra)


def read_part_json(path: Path) -> Iterator[Row]:
    """A part JSON on its own: prompts and settings, no images beside it."""
    mapping = json.loads(path.read_text(encoding="utf-8"))
    return _part_json_rows(mapping, _part_name(path), str(path), lambda name: None)
