"""ClipEmbedder: CLIP text and image vectors, L2-normalised float32, in batches."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from studio.config import Settings, torch_dtype
from studio.images import to_rgb

# CLIP's text encoder has 77 positions (start + 75 tokens + end). Longer prompts are cut
# there on purpose, as Stable Diffusion's own encoder cuts them: what CLIP cannot see, the
# image model never saw either. `count_tokens` tells the caller when that happened.
MAX_TOKENS = 77


def pick_device(requested: str) -> str:
    import torch

    if requested == "cpu":
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from studio.errors import StudioError

        raise StudioError("STUDIO_DEVICE=cuda, but torch sees no CUDA GPU. Use STUDIO_DEVICE=auto or cpu.")
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_image_processor(path: Path | str) -> Any:
    """CLIP's PIL image processor: the default one in transformers 5 needs torchvision. It reads the
    image_processor section of processor_config.json first, then preprocessor_config.json."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls.from_pretrained(str(path))


# Tensors hashed into a model's fingerprint: the two projections (every fine-tune moves them) and the inputs.
_FINGERPRINT_TENSORS = ("text_projection.weight", "visual_projection.weight",
                        "text_model.embeddings.token_embedding.weight", "vision_model.embeddings.patch_embedding.weight")


def fingerprint(model: Any) -> str:
    """Which weights these are, cheaply: a hash of the config (paths and versions left out) and of the
    start and end of a few tensors, at fp16 precision (a model and its fp16 copy agree). Two folders with
    the same name and different weights get different fingerprints; the same weights anywhere, the same."""
    import hashlib
    import json

    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    state = model.state_dict()
    for name in _FINGERPRINT_TENSORS:
        if name in state:
            flat = state[name].detach().reshape(-1)
            for part in (flat[:65_536], flat[-65_536:]):
                digest.update(part.float().cpu().half().numpy().tobytes())
    return digest.hexdigest()[:16]


BUCKET_WINDOW = 16  # batches sorted together by token length: enough to group, few enough to stream


def bucketed_order(lengths: Sequence[int], batch_size: int) -> list[int]:
    """Indices grouped so that each batch holds texts of like length: sorted by length within windows of
    BUCKET_WINDOW batches (a window, not the whole input: a streamed ingest keeps its order roughly)."""
    window = max(1, batch_size * BUCKET_WINDOW)
    order: list[int] = []
    for start in range(0, len(lengths), window):
        order += sorted(range(start, min(len(lengths), start + window)), key=lambda i: lengths[i])
    return order


@contextmanager
def _memory_guard(what: str) -> Iterator[None]:
    """Out of GPU memory: the cache emptied and a GpuMemoryError that says what to try (the next call works)."""
    from studio.errors import gpu_memory_error, is_out_of_memory

    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise gpu_memory_error(what, exc) from None


class ClipEmbedder:
    """Text and image embeddings from one CLIP model; the model is passed in (tests use tiny ones)."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, name: str, device: str = "cpu",
                 precision: str = "auto") -> None:
        self.name = name
        self.fingerprint = fingerprint(model)  # before the cast to the device's dtype
        self.device = device
        self.dtype = torch_dtype(device, precision)  # STUDIO_PRECISION; auto: fp16 on CUDA, float32 on the CPU
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.dim = int(model.config.projection_dim)
        self.int8_text: Any = None  # see quantize_text()

    @classmethod
    def load(cls, settings: Settings) -> "ClipEmbedder":
        """From a local folder, models/<name>, or (online) the hub; raises ModelMissingError."""
        from transformers import CLIPModel, CLIPTokenizer

        from studio.errors import ModelMissingError
        from studio.weights import ensure

        loc = ensure("clip", settings)
        if loc.problem:  # a folder without its tokenizer or image processor: said before any weights load
            raise ModelMissingError(loc.problem[:1].upper() + loc.problem[1:] + ".")
        parts = (("weights", "config.json and model.safetensors", CLIPModel.from_pretrained),
                 ("tokenizer", "vocab.json, merges.txt and tokenizer_config.json", CLIPTokenizer.from_pretrained),
                 ("image processor", "preprocessor_config.json (or processor_config.json)", load_image_processor))
        loaded = []
        for what, files, load in parts:
            try:
                loaded.append(load(str(loc.path)))
            except Exception as exc:  # noqa: BLE001 - any reader's error (safetensors' own too): the file is unusable
                raise ModelMissingError(
                    f"The CLIP folder {loc.path} has no usable {what} ({type(exc).__name__}: {str(exc)[:200]}). "
                    f"A CLIP folder needs {files}: copy what is missing from the same model, or fetch a complete one with "
                    "`python -m studio models --download clip`.") from exc
        return cls(*loaded, name=settings.clip_model, device=pick_device(settings.device), precision=settings.precision)

    def count_tokens(self, text: str) -> int:
        """CLIP tokens of the text, start and end tokens included (over 77: truncated)."""
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    def _normalise(self, features: Any) -> np.ndarray:
        if not hasattr(features, "norm"):  # transformers 5 returns an output object
            features = features.pooler_output
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        with _memory_guard("encoding prompts with CLIP"):
            return self._embed_texts(texts, batch_size)

    def _embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Vectors in the order given. Batches are cut from texts of like token length (sorted within
        windows of BUCKET_WINDOW batches, the order restored after): a batch pads to its longest text, so
        a 12-token prompt no longer pays for the 77-token one beside it. The causal mask makes padding
        inert, so the vectors are those of one-by-one encoding."""
        import torch

        texts = [t if t.strip() else " " for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        ids = self.tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        order = bucketed_order([len(i) for i in ids], batch_size)
        out = np.zeros((len(texts), self.dim), np.float32)
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[r]) for r in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                input_ids[j, : len(ids[r])] = torch.tensor(ids[r])
                mask[j, : len(ids[r])] = 1
            with torch.inference_mode():
                features = self.text_features(input_ids.to(self.device), mask.to(self.device))
            out[rows] = self._normalise(features)
        return out

    def text_features(self, input_ids: Any, attention_mask: Any) -> Any:
        """The text tower (int8 on a CPU when quantize_text() kept it)."""
        model = self.int8_text or self.model
        return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    def quantize_text(self, probe: Sequence[str], min_cosine: float = 0.99) -> float | None:
        """On a CPU: an int8 copy of the text tower (torch's dynamic quantization of its Linear layers),
        kept only when its vectors of `probe` agree with fp32 (lowest cosine >= min_cosine); returns that
        cosine, or None when it was not kept (or not on a CPU)."""
        import copy

        import torch

        if self.device != "cpu" or not probe:
            return None
        reference = self.embed_texts(list(probe))
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(self.model), {torch.nn.Linear},
                                                           dtype=torch.qint8)
        self.int8_text = quantized
        agree = float((self.embed_texts(list(probe)) * reference).sum(axis=1).min())
        if agree < min_cosine:
            self.int8_text = None
            return None
        return agree

    def preprocess_images(self, images: Sequence[Image.Image]) -> Any:
        """The CPU side of image embedding: 8-bit RGB, then CLIP's image processor -> a float32 pixel tensor
        (N, 3, H, W) on the CPU. Touches no model state, so ingest runs it in worker threads ahead of the
        encoder; each image is processed on its own, so one at a time stacks to the tensor of a batch."""
        return self.image_processor(images=[to_rgb(img) for img in images], return_tensors="pt")["pixel_values"]

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """The model side: preprocessed pixels (from preprocess_images, stacked) -> vectors, one forward pass."""
        with _memory_guard("encoding images with CLIP"):
            return self._encode_pixels(pixels)

    def _encode_pixels(self, pixels: Any) -> np.ndarray:
        import torch

        pixels = pixels.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            return self._normalise(self.model.get_image_features(pixel_values=pixels))

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(images), batch_size):
            out.append(self.encode_pixels(self.preprocess_images(images[start : start + batch_size])))
        return np.concatenate(out)
