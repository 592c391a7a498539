"""PNG metadata: AUTOMATIC1111's `parameters` text (write and parse) and our JSON lineage chunk."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from studio.errors import InputError

PARAMETERS_KEY = "parameters"  # what A1111 writes and its PNG Info tab (and Civitai, InvokeAI's importer) read
STUDIO_KEY = "prompt-studio"  # our JSON: settings plus lineage. Not "prompt"/"workflow": those are ComfyUI's.
SCHEMA = 1
# A1111's own settings-line pattern (modules/infotext_utils.py): `Key: value` pairs, values maybe JSON-quoted.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class Parameters:
    """The settings A1111 writes under the image: enough to paste into its txt2img and get the image back."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str | None = None
    cfg: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # any other `Key: value` pairs, in order


def _quote(value: Any) -> str:
    """A1111's quote(): values holding a comma, newline or colon are JSON strings."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def format_parameters(p: Parameters) -> str:
    """The `parameters` text exactly as A1111 lays it out: prompt, `Negative prompt:` (only when
    there is one, as A1111 does), then one line of `Key: value` pairs."""
    pairs: dict[str, Any] = {"Steps": p.steps, "Sampler": p.sampler,
                             "CFG scale": None if p.cfg is None else f"{p.cfg:g}", "Seed": p.seed,
                             "Size": f"{p.width}x{p.height}" if p.width and p.height else None, "Model": p.model}
    pairs.update(p.extra)
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in pairs.items() if v is not None)
    negative = f"\nNegative prompt: {p.negative_prompt}" if p.negative_prompt else ""
    return f"{p.prompt.strip()}{negative}\n{line}".strip()


def parse_parameters(text: str) -> Parameters:
    """Read A1111 `parameters` text (ours or anyone's) the way A1111's paste/PNG Info does."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # A1111's test for "is the last line the settings line"
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    values = {k: _unquote(v) for k, v in _PARAM.findall(last)}
    p = Parameters("\n".join(prompt), "\n".join(negative))
    size = _SIZE.match(values.pop("Size", "") or "")
    if size:
        p.width, p.height = int(size.group(1)), int(size.group(2))
    p.sampler = values.pop("Sampler", None)
    p.model = values.pop("Model", None)
    for key, attr, cast in (("Steps", "steps", int), ("Seed", "seed", int), ("CFG scale", "cfg", float)):
        raw = values.pop(key, None)
        try:
            setattr(p, attr, cast(raw) if raw not in (None, "") else None)
        except ValueError:
            p.extra[key] = raw  # kept, not lost: someone else's odd value
    p.extra.update(values)
    return p


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_png(image: Image.Image, path: Path, parameters: Parameters, studio: dict[str, Any]) -> Path:
    """Save with both chunks, atomically: a crash leaves either no file or a whole one, never half."""
    info = PngImagePlugin.PngInfo()
    # PIL writes tEXt when the text is Latin-1 and iTXt (UTF-8) otherwise; A1111 reads both.
    info.add_text(PARAMETERS_KEY, format_parameters(parameters))
    info.add_itxt(STUDIO_KEY, json.dumps({"schema": SCHEMA, **studio}, ensure_ascii=False, sort_keys=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".png", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: the PNG gets a normal file's mode, as umask says
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_png(path: Path) -> tuple[Parameters | None, dict[str, Any] | None]:
    """Both chunks of a PNG, each None when absent; InputError for a file that is not a PNG."""
    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or {})
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Could not read {path} as a PNG ({exc}).") from exc
    params = parse_parameters(text[PARAMETERS_KEY]) if text.get(PARAMETERS_KEY) else None
    studio = None
    if text.get(STUDIO_KEY):
        try:
            studio = json.loads(text[STUDIO_KEY])
        except json.JSONDecodeError:
            studio = None  # a damaged chunk: fall back to the A1111 text
    return params, studio
