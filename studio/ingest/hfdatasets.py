"""Hugging Face `datasets` as a source: a save_to_disk folder, or hf:ORG/NAME[:split] streamed with
load_dataset(streaming=True). Read once into a spool (rows as JSON lines, each image saved as a file under
STUDIO_HOME/datasets/NAME/), which the pipeline's passes then read: memory holds a row, the hub is streamed once."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.errors import InputError
from studio.ingest.cells import plain, typed_settings
from studio.ingest.row import Row
from studio.ingest.sources import _COLUMNS, RESERVED, _extra_value, is_diffusiondb, prompt_column, source_name

# hf:ORG/NAME or hf:ORG/NAME:split; names as the hub spells them (never starting with '.' or '-': no `..`)
HF_SPEC = re.compile(r"hf:([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?::([A-Za-z0-9][\w.-]*))?")
_IMAGE_NAME = ("image_name", "image_filename")  # DiffusionDB's own image id, kept when a dataset has it
Progress = Callable[[str, int, int], None]


def is_dataset_folder(path: Path) -> bool:
    """What Dataset.save_to_disk (dataset_info.json + state.json) or DatasetDict.save_to_disk (dataset_dict.json)
    writes: the same test datasets.load_from_disk makes."""
    return path.is_dir() and (((path / "dataset_info.json").is_file() and (path / "state.json").is_file())
                              or (path / "dataset_dict.json").is_file())


def parse_hf(source: str) -> tuple[str, str | None]:
    match = HF_SPEC.fullmatch(source.strip())
    if not match:
        raise InputError(f"{source!r}: write hf:ORG/NAME or hf:ORG/NAME:SPLIT, the dataset's name as on "
                         "huggingface.co/datasets (e.g. hf:Gustavosta/Stable-Diffusion-Prompts:train).")
    return match.group(1), match.group(2)


@dataclass
class Opened:
    """A dataset ready to read: its splits (decoding off: images come as {"bytes", "path"}) and default name."""

    name: str
    splits: list[tuple[str, Any]]
    columns: list[str]

    @property
    def source(self) -> str:
        """DiffusionDB's own columns (the HF loader's export) keep source=diffusiondb; any other is its name."""
        return "diffusiondb" if is_diffusiondb(self.columns) else source_name(self.name)


def open_dataset(source: str, offline: bool) -> Opened:
    """A save_to_disk folder (memory-mapped, streamed from disk) or hf:ORG/NAME[:split] (streamed from the hub;
    a local folder of that name is read by load_dataset as it is, offline too)."""
    import datasets

    if source.startswith("hf:"):
        repo, split = parse_hf(source)
        if offline and not Path(repo).is_dir():
            raise InputError(f"{source}: STUDIO_OFFLINE/HF_HUB_OFFLINE is set, and hf: datasets stream from the "
                             "Hugging Face Hub. Unset them (or drop --offline) to stream it, or, once online, save it "
                             f"with datasets.load_dataset({repo!r}).save_to_disk(DIR) and ingest DIR.")
        try:
            ds = datasets.load_dataset(repo, split=split, streaming=True)
        except Exception as exc:  # connection, unknown name, gated, bad split: all said the same way
            raise InputError(f"Could not stream {repo}{':' + split if split else ''} ({type(exc).__name__}: "
                             f"{str(exc)[:300]}). Check the name (as on huggingface.co/datasets), the split and the "
                             "connection; a gated dataset needs `huggingface-cli login` first.") from exc
        name = repo.rsplit("/", 1)[-1]
    else:
        path = Path(source).expanduser()
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise InputError(f"{path} looks like a datasets save_to_disk folder but could not be read "
                             f"({type(exc).__name__}: {exc}). Save it again with save_to_disk.") from exc
        name, split = path.name, None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        parts = list(ds.items())
    else:
        parts = [(split or str(ds.split or "train"), ds)]
    splits = [(str(n), (d.to_iterable_dataset() if isinstance(d, datasets.Dataset) else d).decode(False))
              for n, d in parts]
    features = splits[0][1].features if splits else None
    return Opened(name, splits, list(features) if features else [])


@dataclass
class _Columns:
    """Which column holds what, decided once per split from its features (or its first row)."""

    prompt: str | None
    image: str | None
    library: bool  # not DiffusionDB: the other scalar columns are kept as metadata
    labels: dict[str, Any]  # ClassLabel columns: stored by their names, not their numbers

    @classmethod
    def of(cls, first: dict[str, Any], features: Any) -> "_Columns":
        import datasets

        names = list(first)
        if features:
            image = next((n for n in names if isinstance(features.get(n), datasets.Image)), None)
            labels = {n: f for n, f in features.items() if isinstance(f, datasets.ClassLabel)}
        else:
            image = next((n for n, v in first.items() if isinstance(v, dict) and "bytes" in v), None)
            labels = {}
        return cls(prompt_column(names), image, not is_diffusiondb(names), labels)


def _image_bytes(value: Any) -> bytes:
    """An image cell with decoding off: its bytes, or the file its path names (local, or remote via datasets)."""
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
    if data:
        return bytes(data)
    if not path:
        raise ValueError("the cell has neither bytes nor a path")
    if os.path.isfile(path):
        return Path(path).read_bytes()
    from datasets.utils.file_utils import xopen

    with xopen(path, "rb") as f:
        return f.read()


def _save_image(data: bytes, image_id: str | None, folder: Path) -> tuple[str, str]:
    """The image saved once as folder/ID.EXT (atomically; kept if there), so the gallery can show it later;
    ID: the dataset's image name, else a hash of the bytes (the same image, the same record)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # reads the header only: a file Pillow cannot open stops here
        ext = (img.format or "img").lower().replace("jpeg", "jpg")
    image_id = image_id or f"img-{hashlib.sha1(data).hexdigest()[:24]}"
    target = folder / f"{source_name(re.sub(r'[.](png|jpe?g|webp)$', '', image_id))}.{ext}"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return image_id, str(target.resolve())


def record_row(rec: dict[str, Any], cols: _Columns, label: str, part: str, where: str, images: Path) -> Row:
    """One dataset row -> a Row: its prompt, typed settings, other scalar columns as metadata, its image saved."""
    prompt = rec.get(cols.prompt) if cols.prompt else None
    prompt = "" if prompt is None else prompt if isinstance(prompt, str) else str(prompt)
    notes: list[str] = []
    settings = typed_settings({_COLUMNS[k]: v for k, v in rec.items() if k in _COLUMNS
                               and _COLUMNS[k] not in ("prompt", "image_name")}, notes, f" ({where})")
    extra: dict[str, Any] = {}
    for key, value in rec.items():
        if not cols.library or key in _COLUMNS or key in (cols.prompt, cols.image):
            continue
        if key in cols.labels and isinstance(value, int):
            value = cols.labels[key].int2str(value)
        if (value := _extra_value(value)) is not None:
            extra[f"col_{key}" if key in RESERVED else key] = value
    name = next((str(plain(rec[k])) for k in _IMAGE_NAME if rec.get(k)), None)
    row = Row(name or label, prompt, part, settings, extra=extra, notes=notes or None)
    if cols.image and rec.get(cols.image) is not None:
        try:
            row.image_name, row.location = _save_image(_image_bytes(rec[cols.image]), name, images)
        except Exception as exc:  # noqa: BLE001 - a bad cell is named in the report; its prompt is still kept
            row.image_name, row.error = name or label, f"{where}: {type(exc).__name__}: {str(exc)[:200]}"
    return row


def dataset_rows(opened: Opened, tag: str, images: Path, limit: int | None = None) -> Iterator[Row]:
    """Every row of every split, in order (at most `limit` in all)."""
    taken = 0
    for split, ds in opened.splits:
        cols: _Columns | None = None
        for i, rec in enumerate(ds):
            if limit is not None and taken >= limit:
                return
            if cols is None:
                cols = _Columns.of(rec, ds.features)
                if cols.prompt is None and cols.image is None:
                    raise InputError(f"{opened.name} ({split}) has no prompt column and no image column (it has: "
                                     f"{', '.join(map(str, rec))}). A prompt column is called prompt, text, caption, "
                                     "...; an image column is a datasets.Image feature.")
            yield record_row(rec, cols, f"{tag}-{split}-row{i:07d}", f"{tag}-{split}", f"{split} row {i + 1:,}", images)
            taken += 1


@contextmanager
def spooled(opened: Opened, tag: str, images: Path, spool_dir: Path, limit: int | None = None,
            progress: Progress | None = None) -> Iterator[Callable[[], Iterator[Row]]]:
    """Read the dataset once into a JSON-lines spool; yields a callable that reads the spool (once per pipeline
    pass). The spool is removed afterwards; the saved images stay (the records point at them)."""
    from tqdm.auto import tqdm

    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{tag}-", suffix=".jsonl", dir=spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out, tqdm(desc=f"reading {tag}", unit="row", total=limit) as bar:
            for n, row in enumerate(dataset_rows(opened, tag, images, limit), 1):
                out.write(json.dumps({k: v for k, v in asdict(row).items() if k not in ("pixels", "vector")}) + "\n")
                bar.update()
                if progress and n % 100 == 0:
                    progress("reading", n, limit or 0)

        def read() -> Iterator[Row]:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield Row(**json.loads(line))

        yield read
    finally:
        path.unlink(missing_ok=True)
