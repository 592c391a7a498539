"""Table cells -> typed settings. A cell of the wrong type (`seed: 'x'`) is coerced when it plainly means a
value ('42', 42.0, 'part-000003') and left out with a note otherwise: never stored as a string where a
number belongs, so filters and "reuse these settings" can trust what they read."""

from __future__ import annotations

import math
import re
from typing import Any

# DiffusionDB's uint8 sampler codes (its README); the HF loader writes the names instead.
SAMPLERS = {1: "ddim", 2: "plms", 3: "k_euler", 4: "k_euler_ancestral", 5: "k_heun",
            6: "k_dpm_2", 7: "k_dpm_2_ancestral", 8: "k_lms", 9: "others"}
INT_KEYS = frozenset({"seed", "steps", "width", "height", "part_id"})
FLOAT_KEYS = frozenset({"cfg", "image_nsfw", "prompt_nsfw"})
TEXT_KEYS = frozenset({"user_name", "timestamp", "image_name"})
_PART = re.compile(r"(?:part-)?0*(\d{1,6})")
MAX_NOTES = 20  # per source: the first few say enough
INT64 = range(-(2**63), 2**63)  # what a Chroma metadata int holds; a larger one comes back as a rounded float


def plain(value: Any) -> Any:
    """numpy / pyarrow scalars -> Python; NaN -> None; dates -> ISO text."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _int(key: str, value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if key == "part_id" and (m := _PART.fullmatch(text)):
            return int(m.group(1))
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)  # exactly: seeds past 2**53 stay what they were
        number = _float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def typed_settings(raw: dict[str, Any], notes: list[str] | None = None, where: str = "") -> dict[str, Any]:
    """Settings with the types the store promises. A cell that cannot be read as its type is left out and
    described in `notes` ("seed 'x' in row 4 is not a whole number")."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        value = plain(value)
        if value is None or value == "":
            continue
        if isinstance(value, (list, dict, tuple, bytes)):
            typed: Any = None
        elif key in INT_KEYS:
            typed = _int(key, value)
        elif key in FLOAT_KEYS:
            typed = _float(value)
        elif key == "sampler":
            code = _int(key, value) if not isinstance(value, str) or value.strip().isdigit() else None
            typed = SAMPLERS.get(code, str(code)) if code is not None else str(value)
        else:
            typed = str(value) if key in TEXT_KEYS else value
        if typed is None:
            if notes is not None and len(notes) < MAX_NOTES:
                kind = "a whole number" if key in INT_KEYS else "a number" if key in FLOAT_KEYS else "plain text"
                notes.append(f"{key} {str(value)[:40]!r}{where} is not {kind}; left out")
            continue
        out[key] = typed
    return out


def whole_column(key: str, array: Any) -> Any | None:
    """The column cast to its type when all of it casts (parquet's uint32 seeds, float cfg; CSV text that
    casts cleanly), else None ("type it cell by cell", with notes). Vectorised: no Python value is made."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if key in INT_KEYS or key in FLOAT_KEYS:
            try:
                return array.cast(pa.int64() if key in INT_KEYS else pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None  # "x", "7.0" as an int, "part-000003": cell by cell
        return array if key in TEXT_KEYS or key == "sampler" else None
    ok = ((key in INT_KEYS and pa.types.is_integer(kind))
          or (key in FLOAT_KEYS and (pa.types.is_floating(kind) or pa.types.is_integer(kind)))
          or (key == "sampler" and pa.types.is_integer(kind)) or (key == "timestamp" and pa.types.is_timestamp(kind)))
    return array if ok else None


def typed_column(key: str, array: Any) -> list[Any] | None:
    """A whole column already of its type (whole_column) as Python values, None meaning "type it cell by cell"
    (typed_settings, with notes). Columnwise is what makes 2M rows quick: to_pylist per column."""
    import pyarrow as pa

    array = whole_column(key, array)
    if array is None:
        return None
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):  # text keys and sampler names
        return [v if v else None for v in array.to_pylist()]
    if key in INT_KEYS:
        return array.to_pylist()
    if key in FLOAT_KEYS:
        return [float(v) if v is not None and math.isfinite(v) else None for v in array.to_pylist()]
    if key == "sampler":
        return [None if v is None else SAMPLERS.get(v, str(v)) for v in array.to_pylist()]
    return [None if v is None else v.isoformat() for v in array.to_pylist()]  # timestamp


def exact_seed(meta: dict[str, Any]) -> dict[str, Any]:
    """A seed past int64 (ComfyUI's go up to 2**64-1) kept exactly: as text under `seed_text`, since Chroma would
    store it as a float and round it (search.results.settings_of shows it as the seed)."""
    seed = meta.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed not in INT64:
        return {**meta, "seed": None, "seed_text": str(seed)}
    return meta
