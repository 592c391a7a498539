"""LoRAs from models/loras: `<lora:NAME:WEIGHT>` tags -> files (refused before any model loads when one is
missing), loaded through diffusers' LoRA loading (diffusers and kohya/Civitai key layouts) and fused, kept across
jobs with the same set, put back exactly when the set changes."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import InputError
from studio.generate.prompt_syntax import LoraTag, split_loras

SUFFIX = ".safetensors"
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> hash: a file is read once per change


@dataclass(frozen=True)
class LoraFile:
    """A LoRA of the prompt, found: its tag's weights and its file."""

    name: str
    path: Path
    weight: float = 1.0  # on the text encoders (and the UNet, unless unet_weight is set)
    unet_weight: float | None = None

    @property
    def unet(self) -> float:
        return self.weight if self.unet_weight is None else self.unet_weight

    @property
    def state(self) -> tuple[Any, ...]:
        """What identifies its effect on the text encoders: the file as it is now, and the weight."""
        stat = self.path.stat()
        return (str(self.path), stat.st_size, stat.st_mtime_ns, self.weight, self.unet_weight)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "weight": self.weight, "file": self.path.name, "hash": addnet_hash(self.path)}
        if self.unet_weight is not None:
            out["unet_weight"] = self.unet_weight
        return out


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, links followed, is a file under `root`: a link out of models/loras (to /etc/passwd, or
    to anywhere a stored prompt could name) is never opened."""
    try:
        return path.resolve().is_relative_to(root) and path.is_file()
    except (OSError, RuntimeError):  # a link loop
        return False


def available(folder: Path | None) -> dict[str, Path]:
    """NAME -> file for every .safetensors under `folder` (subfolders too, as A1111 lists them): the stem,
    and the path under the folder for a stem that two files share. Sorted by name. Links that lead out of
    the folder are left out."""
    if folder is None or not Path(folder).is_dir():
        return {}
    root = Path(folder).resolve()
    files = sorted(p for p in Path(folder).rglob(f"*{SUFFIX}") if _inside(p, root))
    shared = Counter(p.stem for p in files)
    names = {(p.stem if shared[p.stem] == 1 else p.relative_to(folder).with_suffix("").as_posix()): p
             for p in files}
    return dict(sorted(names.items(), key=lambda kv: kv[0].lower()))


def resolve(tags: list[LoraTag], folder: Path | None) -> list[LoraFile]:
    """The files of the prompt's LoRA tags. A name is looked up among the files listed, never joined to a
    path (a stored prompt's `<lora:../../x>` reaches nothing). InputError names those missing and lists
    what is there."""
    if not tags:
        return []
    found = available(folder)
    missing = [t.name for t in tags if t.name not in found]
    if missing:
        where = f"{folder}" if folder else "models/loras"
        link = Path(folder or "") / f"{missing[0]}{SUFFIX}"
        if folder is not None and link.is_symlink():
            raise InputError(f"The LoRA {missing[0]} is a link to a file outside {where} ({link.name}), and links out "
                             f"of {where} are not followed: copy the file itself into {where}.")
        have = ", ".join(found) if found else "none yet"
        raise InputError(f"LoRA not found: {', '.join(missing)}. Put {missing[0]}{SUFFIX} in {where} (SDXL LoRAs "
                         f"only), or use one of those there: {have}.")
    for t in tags:  # before anything reads a whole file (its hash) or hands it to diffusers
        if (problem := safetensors_problem(found[t.name])) is not None:
            raise InputError(f"The LoRA {t.name} ({found[t.name].name}) is not a safetensors file: {problem}. Put the "
                             f"SDXL LoRA's .safetensors file (as downloaded) in {folder}, or take the tag out.")
    return [LoraFile(t.name, found[t.name], t.weight, t.unet_weight) for t in tags]


MAX_HEADER = 100 * 2**20  # safetensors' own limit on its JSON header


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a safetensors file, from its header (8 bytes of length, then that much JSON naming
    tensors), or None: what is checked before a file is hashed or loaded."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length < 2 or length > min(MAX_HEADER, size - 8):
                return f"its first bytes are no safetensors header ({size:,} bytes in all)"
            header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "its header is not the JSON a safetensors file starts with"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if not isinstance(header, dict) or not all(isinstance(v, dict) for v in header.values()):
        return "its header names no tensors"
    return None


def loras_of(prompt: str, folder: Path | None) -> list[LoraFile]:
    return resolve(split_loras(prompt)[1], folder)


def addnet_hash(path: Path) -> str:
    """The short hash A1111 writes under `Lora hashes` (and Civitai matches): the first 12 hex digits of the
    SHA-256 of a .safetensors file's tensors, its JSON header left out (kohya-ss's "addnet" hash)."""
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        if (problem := safetensors_problem(Path(path))) is not None:
            raise InputError(f"{Path(path).name} is not a safetensors file: {problem}.")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            header = int.from_bytes(f.read(8), "little")
            f.seek(8 + header)
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()[:12]
    return _HASHES[key]


class FusedLoras:
    """The LoRA set of the last job, fused into the pipeline's weights: a job with the same set (files and
    weights) runs at the speed of the bare model and loads nothing; a job with another set (or none) first
    puts the weights back exactly as loaded (copies kept in RAM: unfusing by subtraction would leave fp16
    rounding behind) and unloads the adapters."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.key: tuple[Any, ...] = ()  # LoraFile.state of each LoRA fused now
        self._originals: list[tuple[Any, Any]] = []  # (layer weight, its values before fusing, in RAM)

    def use(self, loras: list[LoraFile]) -> bool:
        """Make `loras` the fused set; True when they were loaded now (False: kept from the last job)."""
        key = tuple(lora.state for lora in loras)
        if key == self.key:
            return False
        self.clear()
        if not loras:
            return False
        try:
            self._load(loras)
        except BaseException:
            self.clear()
            self.pipe.unload_lora_weights()  # a half-loaded set never stays behind
            raise
        self.key = key
        return True

    def _load(self, loras: list[LoraFile]) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        from studio.errors import gpu_memory_error, is_out_of_memory

        names: list[str] = []
        for i, lora in enumerate(loras):
            name = f"studio-{i}"
            try:
                self.pipe.load_lora_weights(str(lora.path), adapter_name=name)
            except Exception as exc:  # noqa: BLE001 - sorted below: memory, or a file that does not fit
                if is_out_of_memory(exc):
                    raise gpu_memory_error(f"loading the LoRA {lora.name}", exc) from exc
                if not isinstance(exc, (ValueError, KeyError, RuntimeError, OSError)):
                    raise
                why = " ".join(str(exc).split())  # one line: diffusers lists every mismatched layer
                raise InputError(f"Could not apply the LoRA {lora.name} ({lora.path.name}): {type(exc).__name__}: "
                                 f"{why[:240]}{'…' if len(why) > 240 else ''}. Is it made for SDXL? LoRAs for SD 1.5, "
                                 "SD 3 or Flux do not fit; take it out of the prompt or use an SDXL one.") from exc
            names.append(name)
        parts = self.pipe.get_list_adapters()  # which components each adapter touches: weights only for those
        weights = [{part: (lora.unet if part == "unet" else lora.weight) for part, held in parts.items() if name in held}
                   for name, lora in zip(names, loras)]
        self.pipe.set_adapters(names, adapter_weights=weights)
        components = sorted({part for held in weights for part in held})
        for part in components:
            for module in getattr(self.pipe, part).modules():
                if isinstance(module, BaseTunerLayer):
                    base = module.get_base_layer().weight
                    self._originals.append((base, base.detach().to("cpu", copy=True)))
        self.pipe.fuse_lora(components=components, lora_scale=1.0, adapter_names=names)

    def clear(self) -> None:
        """The model as loaded: original weights back, adapters gone."""
        if not self.key and not self._originals:
            return
        import torch

        with torch.no_grad():
            for weight, original in self._originals:
                weight.copy_(original.to(weight.device))
        self._originals = []
        self.pipe.unload_lora_weights()
        self.pipe._merged_adapters = set()  # diffusers' record of fused names; the weights are the originals again
        self.key = ()
