"""Images carrying the metadata other tools write, each made here the way that tool's own saving code writes it
(AUTOMATIC1111 modules/images.py, ComfyUI nodes.py SaveImage, Fooocus modules/private_logger.py + meta_parser.py,
InvokeAI's three generations of PNG metadata, NovelAI's PNG text chunks). Nothing here is copied from elsewhere."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, PngImagePlugin

EXIF_IFD = 0x8769  # the Exif sub-IFD, where the standard UserComment tag lives
USER_COMMENT = 0x9286


@dataclass
class Expected:
    """What ingest must read back from one file."""

    file: str
    tool: str | None  # None: no readable metadata (still embedded, counted as without a prompt)
    prompt: str = ""
    negative: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # seed/seed_text, steps, cfg, sampler, width, height
    model: str | None = None


def _pixels(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small picture of its own (a gradient on a colour), so that every file's bytes and vector differ."""
    img = Image.new("RGB", size, colour)
    for x in range(size[0]):
        img.putpixel((x, x % size[1]), (255 - colour[0], x * 4 % 256, 255 - colour[2]))
    return img


def _png(path: Path, img: Image.Image, chunks: list[tuple[str, str]]) -> None:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks:
        info.add_text(key, value)
    img.save(path, pnginfo=info, compress_level=4)


def a1111_infotext(prompt: str, negative: str, pairs: str) -> str:
    return f"{prompt}\nNegative prompt: {negative}\n{pairs}"


def a1111_png(path: Path, text: str, colour: tuple[int, int, int]) -> None:
    """A1111 PNG: the infotext in a `parameters` text chunk."""
    _png(path, _pixels(colour), [("parameters", text)])


def a1111_exif(path: Path, text: str, colour: tuple[int, int, int], fmt: str) -> None:
    """A1111 JPEG/WebP: piexif's UserComment dump, encoding="unicode" (b"UNICODE\\0" + UTF-16BE) in the Exif IFD."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\x00" + text.encode("utf-16-be")
    _pixels(colour).save(path, format=fmt, quality=90, exif=exif.tobytes())


def comfyui_png(path: Path, positive: str, negative: str, seed: int, steps: int, cfg: float, sampler: str,
                scheduler: str, ckpt: str, width: int, height: int, colour: tuple[int, int, int]) -> None:
    """ComfyUI's default text-to-image graph as SaveImage writes it: the API graph in `prompt`, the editor's
    graph (nodes and links) in `workflow`, both json.dumps'ed."""
    prompt = {
        "3": {"inputs": {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
                         "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                         "latent_image": ["5", 0]}, "class_type": "KSampler", "_meta": {"title": "KSampler"}},
        "4": {"inputs": {"ckpt_name": ckpt}, "class_type": "CheckpointLoaderSimple",
              "_meta": {"title": "Load Checkpoint"}},
        "5": {"inputs": {"width": width, "height": height, "batch_size": 1}, "class_type": "EmptyLatentImage",
              "_meta": {"title": "Empty Latent Image"}},
        "6": {"inputs": {"text": positive, "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "7": {"inputs": {"text": negative, "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode",
              "_meta": {"title": "VAE Decode"}},
        "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image"}},
    }
    # [link id, origin node, origin slot, target node, target slot, type], as in ComfyUI's default graph
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
             [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
             [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]]
    kinds = {"3": ("KSampler", [seed, "randomize", steps, cfg, sampler, scheduler, 1.0]),
             "4": ("CheckpointLoaderSimple", [ckpt]), "5": ("EmptyLatentImage", [width, height, 1]),
             "6": ("CLIPTextEncode", [positive]), "7": ("CLIPTextEncode", [negative]), "8": ("VAEDecode", []),
             "9": ("SaveImage", ["ComfyUI"])}
    nodes = [{"id": int(i), "type": t, "pos": [100 * int(i), 100], "size": [315, 100], "flags": {}, "order": n,
              "mode": 0, "inputs": [{"name": "x", "type": link[5], "link": link[0]} for link in links
                                    if link[3] == int(i)],
              "outputs": [{"name": "y", "type": link[5], "links": [link[0]]} for link in links if link[1] == int(i)],
              "properties": {"Node name for S&R": t}, "widgets_values": w}
             for n, (i, (t, w)) in enumerate(kinds.items())]
    workflow = {"last_node_id": 9, "last_link_id": 9, "nodes": nodes, "links": links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}
    _png(path, _pixels(colour), [("prompt", json.dumps(prompt)), ("workflow", json.dumps(workflow))])


def fooocus_parameters(prompt: str, negative: str, seed: str, steps: int, cfg: float, sampler: str,
                       scheduler: str, model: str, resolution: tuple[int, int]) -> str:
    """Fooocus' own metadata scheme: one JSON object, keys sorted (meta_parser.FooocusMetadataParser.to_string)."""
    expansion = f"{prompt}, intricate, elegant, highly detailed, sharp focus"
    res = {"adm_guidance": "(1.5, 0.8, 0.3)", "base_model": model, "base_model_hash": "aeb7e9e689", "clip_skip": 2,
           "full_negative_prompt": [negative], "full_prompt": [f"cinematic still {prompt}", expansion],
           "guidance_scale": cfg, "loras": [], "metadata_scheme": "fooocus", "negative_prompt": negative,
           "performance": "Speed", "prompt": prompt, "prompt_expansion": expansion, "refiner_model": "None",
           "refiner_switch": 0.5, "resolution": str(resolution), "sampler": sampler, "scheduler": scheduler,
           "seed": seed, "sharpness": 2, "steps": steps, "styles": "['Fooocus V2', 'Fooocus Sharp']",
           "vae": "Default (model)", "version": "Fooocus v2.5.5"}
    return json.dumps(dict(sorted(res.items())))


def fooocus_png(path: Path, parameters: str, colour: tuple[int, int, int]) -> None:
    _png(path, _pixels(colour), [("parameters", parameters), ("fooocus_scheme", "fooocus")])


def fooocus_exif(path: Path, parameters: str, colour: tuple[int, int, int], fmt: str) -> None:
    """Fooocus JPEG/WebP: meta_parser.get_exif() puts UserComment, Software and MakerNote in the first IFD."""
    exif = Image.Exif()
    exif[USER_COMMENT] = parameters
    exif[0x0131] = "Fooocus v2.5.5"
    exif[0x927C] = "fooocus"
    _pixels(colour).save(path, format=fmt, quality=95, exif=exif)


def invokeai_dream_png(path: Path, dream: str, colour: tuple[int, int, int], sd_metadata: dict | None = None) -> None:
    """InvokeAI 1.x: a `Dream` command line; 2.x wrote it beside `sd-metadata` JSON."""
    chunks = [("Dream", dream)]
    if sd_metadata is not None:
        chunks.insert(0, ("sd-metadata", json.dumps(sd_metadata)))
    _png(path, _pixels(colour), chunks)


def invokeai_metadata_png(path: Path, metadata: dict, colour: tuple[int, int, int]) -> None:
    """InvokeAI 3.x and later: `invokeai_metadata` JSON (and the node graph in `invokeai_graph`)."""
    graph = {"id": "text_to_image_graph", "nodes": {"noise": {"type": "noise", "id": "noise"}}, "edges": []}
    _png(path, _pixels(colour), [("invokeai_metadata", json.dumps(metadata)), ("invokeai_graph", json.dumps(graph))])


def novelai_png(path: Path, prompt: str, comment: dict, source: str, colour: tuple[int, int, int]) -> None:
    """NovelAI: Title, Description (the prompt), Software, Source (model and hash), Generation time, Comment (JSON)."""
    _png(path, _pixels(colour), [("Title", "NovelAI generated image"), ("Description", prompt), ("Software", "NovelAI"),
                                 ("Source", source), ("Generation time", "2.47"), ("Comment", json.dumps(comment))])


COMFY_SEED = 2**64 - 1  # ComfyUI's KSampler allows seeds up to 0xffffffffffffffff: past Chroma's int64
FOOOCUS_SEED = "6952411511246973023"  # Fooocus writes its (63-bit) seed as a string


def make_tool_folder(folder: Path) -> list[Expected]:
    """One folder as a user's would look after trying the tools: 12 images from six tools and cameras, one
    corrupt file. Returns what each file must ingest as."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Expected] = []

    def add(name: str, make: Callable[[Path], None], expected: Expected) -> None:
        make(folder / name)
        out.append(expected)

    text = a1111_infotext("a lighthouse on a cliff, oil painting", "blurry, lowres",
                          "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3405691582, "
                          "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1")
    a1111 = dict(seed=3405691582, steps=20, cfg=7.0, sampler="DPM++ 2M", width=512, height=768)
    add("00001-3405691582.png", lambda p: a1111_png(p, text, (200, 40, 40)),
        Expected("00001-3405691582.png", "AUTOMATIC1111", "a lighthouse on a cliff, oil painting", "blurry, lowres",
                 a1111, "v1-5-pruned-emaonly"))
    jpeg_text = text.replace("a lighthouse on a cliff", "a windmill at dusk").replace("3405691582", "77")
    add("00002-77.jpg", lambda p: a1111_exif(p, jpeg_text, (40, 200, 40), "JPEG"),
        Expected("00002-77.jpg", "AUTOMATIC1111", "a windmill at dusk, oil painting", "blurry, lowres",
                 {**a1111, "seed": 77}, "v1-5-pruned-emaonly"))
    webp_text = text.replace("a lighthouse on a cliff", "a paper boat on a river").replace("3405691582", "78")
    add("00003-78.webp", lambda p: a1111_exif(p, webp_text, (40, 40, 200), "WEBP"),
        Expected("00003-78.webp", "AUTOMATIC1111", "a paper boat on a river, oil painting", "blurry, lowres",
                 {**a1111, "seed": 78}, "v1-5-pruned-emaonly"))
    add("ComfyUI_00001_.png",
        lambda p: comfyui_png(p, "a red fox in fresh snow, national geographic", "text, watermark", COMFY_SEED, 25,
                              6.5, "dpmpp_2m", "karras", "sd_xl_base_1.0.safetensors", 1024, 1024, (220, 120, 0)),
        Expected("ComfyUI_00001_.png", "ComfyUI", "a red fox in fresh snow, national geographic", "text, watermark",
                 dict(seed_text=str(COMFY_SEED), steps=25, cfg=6.5, sampler="dpmpp_2m", width=1024, height=1024),
                 "sd_xl_base_1.0.safetensors"))
    params = fooocus_parameters("a smiling goldfish", "deformed", FOOOCUS_SEED, 30, 4.0, "dpmpp_2m_sde_gpu", "karras",
                                "juggernautXL_v8Rundiffusion", (896, 1152))
    fooocus = dict(seed=int(FOOOCUS_SEED), steps=30, cfg=4.0, sampler="dpmpp_2m_sde_gpu", width=896, height=1152)
    add("2024-05-01_12-00-00_1234.png", lambda p: fooocus_png(p, params, (0, 120, 220)),
        Expected("2024-05-01_12-00-00_1234.png", "Fooocus", "a smiling goldfish", "deformed", fooocus,
                 "juggernautXL_v8Rundiffusion"))
    jparams = params.replace("a smiling goldfish", "a goldfish in a bowl")
    add("2024-05-01_12-00-05_5678.jpeg", lambda p: fooocus_exif(p, jparams, (120, 0, 220), "JPEG"),
        Expected("2024-05-01_12-00-05_5678.jpeg", "Fooocus", "a goldfish in a bowl", "deformed", fooocus,
                 "juggernautXL_v8Rundiffusion"))
    dream = '"a cozy cabin in the woods, winter [people, text]" -s 50 -S 2980747362 -W 512 -H 768 -C 7.5 -A k_lms'
    add("000001.2980747362.png", lambda p: invokeai_dream_png(p, dream, (90, 90, 30)),
        Expected("000001.2980747362.png", "InvokeAI", "a cozy cabin in the woods, winter", "people, text",
                 dict(seed=2980747362, steps=50, cfg=7.5, sampler="k_lms", width=512, height=768)))
    sd_meta = {"model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "model_hash": "cc6cb27103",
               "app_id": "invoke-ai/InvokeAI", "app_version": "2.3.5",
               "image": {"prompt": [{"prompt": "a castle on a hill at sunrise [fog]", "weight": 1.0}], "steps": 30,
                         "cfg_scale": 8.0, "threshold": 0, "perlin": 0, "height": 512, "width": 640,
                         "seed": 1234567, "seamless": False, "hires_fix": False, "type": "txt2img",
                         "postprocessing": None, "sampler": "k_euler_a", "variations": []}}
    sd_dream = '"a castle on a hill at sunrise [fog]" -s 30 -S 1234567 -W 640 -H 512 -C 8.0 -A k_euler_a'
    add("000002.1234567.png", lambda p: invokeai_dream_png(p, sd_dream, (30, 90, 90), sd_meta),
        Expected("000002.1234567.png", "InvokeAI", "a castle on a hill at sunrise", "fog",
                 dict(seed=1234567, steps=30, cfg=8.0, sampler="k_euler_a", width=640, height=512),
                 "stable-diffusion-1.5"))
    invoke_meta = {"generation_mode": "sdxl_txt2img", "positive_prompt": "a neon city street in the rain, cinematic",
                   "negative_prompt": "lowres", "width": 1216, "height": 832, "seed": 4294967295,
                   "rand_device": "cpu", "cfg_scale": 5.5, "cfg_rescale_multiplier": 0, "steps": 28,
                   "scheduler": "dpmpp_2m_k", "model": {"key": "6f2a", "hash": "blake3:9f1e", "name": "Juggernaut XL v9",
                                                        "base": "sdxl", "type": "main"},
                   "positive_style_prompt": "", "negative_style_prompt": "", "app_version": "5.6.0"}
    add("a1b2c3d4-e5f6-4711-8899-aabbccddeeff.png", lambda p: invokeai_metadata_png(p, invoke_meta, (160, 160, 0)),
        Expected("a1b2c3d4-e5f6-4711-8899-aabbccddeeff.png", "InvokeAI", "a neon city street in the rain, cinematic",
                 "lowres", dict(seed=4294967295, steps=28, cfg=5.5, sampler="dpmpp_2m_k", width=1216, height=832),
                 "Juggernaut XL v9"))
    nai = {"prompt": "1girl, reading a book in a library, best quality", "steps": 28, "height": 1216, "width": 832,
           "scale": 5.0, "uncond_scale": 0.0, "cfg_rescale": 0.0, "seed": 3141592653, "n_samples": 1,
           "hide_debug_overlay": False, "noise_schedule": "native", "legacy_v3_extend": False,
           "sampler": "k_euler_ancestral", "controlnet_strength": 1.0, "controlnet_model": None,
           "dynamic_thresholding": False, "sm": False, "sm_dyn": False, "skip_cfg_below_sigma": 0.0,
           "lora_unet_weights": None, "lora_clip_weights": None, "uc": "lowres, bad anatomy",
           "request_type": "PromptGenerateRequest", "signed_hash": "c2lnbmVk"}
    add("novelai_1girl.png", lambda p: novelai_png(p, nai["prompt"], nai, "Stable Diffusion XL C1E1DE52", (0, 0, 90)),
        Expected("novelai_1girl.png", "NovelAI", nai["prompt"], "lowres, bad anatomy",
                 dict(seed=3141592653, steps=28, cfg=5.0, sampler="k_euler_ancestral", width=832, height=1216),
                 "Stable Diffusion XL"))
    add("holiday photo.jpg", lambda p: _pixels((250, 250, 250)).save(p, quality=90), Expected("holiday photo.jpg", None))
    add("screenshot.png", lambda p: _pixels((10, 10, 10)).save(p), Expected("screenshot.png", None))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0not really a png" * 20)
    return out
