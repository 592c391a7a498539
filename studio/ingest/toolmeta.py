"""Other tools' image metadata (AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI, NovelAI), read with sd-parsers (MIT)
and mapped onto the studio's fields: prompt, negative prompt, seed, steps, cfg, sampler, size, model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

USER_COMMENT = 0x9286  # EXIF UserComment
# "512x768" (A1111's Size), "(896, 1152)" (Fooocus' resolution)
_SIZE = re.compile(r"\(?\s*(\d+)\s*[x,]\s*(\d+)\s*\)?")
_UNICODE = b"UNICODE\x00"  # EXIF's 8-byte character-code prefix for UTF-16 (piexif's encoding="unicode")
_ASCII = b"ASCII\x00\x00\x00"


@dataclass
class ToolMeta:
    """What another tool wrote into an image. `settings` are raw values (cells.typed_settings types them)."""

    tool: str  # sd-parsers' generator name: AUTOMATIC1111, ComfyUI, Fooocus, InvokeAI, NovelAI
    prompt: str
    negative_prompt: str | None
    settings: dict[str, Any]  # seed, steps, cfg, sampler, width, height
    extra: dict[str, Any] = field(default_factory=dict)  # model, scheduler, full_prompt


class ToolReader:
    """One sd-parsers ParserManager for a whole folder."""

    def __init__(self) -> None:
        from sd_parsers import ParserManager

        self.manager = ParserManager()

    def read(self, image: Image.Image) -> ToolMeta | None:
        """The metadata of an open image, or None when no tool's metadata is in it."""
        _forget_last_image()
        info = self.manager.parse(image)
        if info is None and image.format in ("JPEG", "WEBP"):
            info = _first_ifd_comment(image)
        return None if info is None else to_meta(info, image.size)


def _forget_last_image() -> None:
    """sd-parsers 0.6 caches the last image's EXIF UserComment (and stealth data) in module globals keyed by
    id(image). CPython hands a freed image's address to a later one, which then got the earlier file's comment:
    a plain JPEG read as the previous JPEG's prompt (seen here, about once in 500 alternating reads). Each read
    starts with the cache emptied."""
    from sd_parsers.extractors import _jpeg_usercomment, _png_stenographic_alpha

    for module in (_jpeg_usercomment, _png_stenographic_alpha):
        if hasattr(module, "_image_id"):
            module._image_id = None


def _comment_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip("\x00 ") or None
    if not isinstance(value, bytes):
        return None
    if value.startswith(_UNICODE):
        return value[8:].decode("utf-16-be", "replace") or None
    if value.startswith(_ASCII):
        value = value[8:]
    return value.decode("utf-8", "replace").strip("\x00 ") or None


def _first_ifd_comment(image: Image.Image) -> Any:
    """Fooocus writes JPEG/WebP metadata into the first IFD's UserComment (meta_parser.get_exif), not the Exif
    sub-IFD where sd-parsers 0.6 looks: the text is taken from there and handed to sd-parsers' own parsers."""
    from sd_parsers.exceptions import ParserError
    from sd_parsers.parsers import AUTOMATIC1111Parser, FooocusParser

    text = _comment_text(image.getexif().get(USER_COMMENT))
    if text is None:
        return None
    for parser in (FooocusParser(), AUTOMATIC1111Parser()):
        try:
            return parser.parse({"parameters": text})
        except ParserError:
            continue
    return None


def _joined(values: list[str]) -> str:
    return ", ".join(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def _size(meta: dict[str, Any], pixels: tuple[int, int]) -> tuple[Any, Any]:
    """The size the tool generated at: its own fields (width/height, Size, resolution, one EmptyLatentImage),
    else the image's pixels."""
    if meta.get("width") and meta.get("height"):
        return meta["width"], meta["height"]
    for key in ("Size", "resolution"):
        if isinstance(meta.get(key), str) and (m := _SIZE.fullmatch(meta[key].strip())):
            return int(m.group(1)), int(m.group(2))
    latents = meta.get("EmptyLatentImage")
    if isinstance(latents, list) and len(latents) == 1 and isinstance(latents[0], dict):
        return latents[0].get("width"), latents[0].get("height")
    return pixels


def _invokeai_model(raw: dict[str, Any]) -> str | None:
    """InvokeAI 4+ names the model `name` (sd-parsers 0.6 reads 3.x's `model_name` only)."""
    try:
        model = json.loads(raw["invokeai_metadata"]).get("model")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return (model.get("name") or model.get("model_name")) if isinstance(model, dict) else None


def to_meta(info: Any, pixels: tuple[int, int]) -> ToolMeta:
    """sd-parsers' PromptInfo -> ToolMeta. The first sampler gives the settings (a 2-pass workflow's base pass);
    every positive prompt is kept, joined, and so is every negative one."""
    samplers = list(info.samplers)
    params = dict(samplers[0].parameters) if samplers else {}
    meta = dict(info.metadata)
    prompt = _joined([p.value for p in info.prompts])
    full = meta.get("full_prompt")  # Fooocus: the prompt after its expansion and styles
    if not prompt and isinstance(full, list):
        prompt = _joined([str(v) for v in full])
    seed = next((params[k] for k in ("seed", "noise_seed") if params.get(k) not in (None, "")), None)
    width, height = _size(meta, pixels)
    settings = {"seed": seed, "steps": params.get("steps", meta.get("steps")),
                "cfg": params.get("cfg_scale", meta.get("cfg_scale")),
                "sampler": samplers[0].name if samplers and samplers[0].name != "unknown" else None,
                "width": width, "height": height}
    model = next((str(s.model) for s in samplers if s.model), None) or _invokeai_model(info.raw_parameters)
    extra = {"model": model, "scheduler": params.get("scheduler")}
    if isinstance(full, list) and _joined([str(v) for v in full]) != prompt:
        extra["full_prompt"] = _joined([str(v) for v in full])
    return ToolMeta(str(info.generator.value), prompt, _joined([p.value for p in info.negative_prompts]) or None,
                    settings, {k: v for k, v in extra.items() if v not in (None, "")})
