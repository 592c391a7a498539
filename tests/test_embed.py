"""ClipEmbedder and image opening: normalised float32, explicit 77-token truncation, any image mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.search.embed import MAX_TOKENS
from studio.errors import InputError
from studio.images import MAX_SIDE, open_image, to_rgb
from tests.conftest import SAMPLE_IMAGES


def test_text_vectors_are_normalised_float32_and_batched(embedder) -> None:
    texts = [f"a castle number {i}, oil painting" for i in range(70)]
    one_batch = embedder.embed_texts(texts, batch_size=128)
    small_batches = embedder.embed_texts(texts, batch_size=7)
    assert one_batch.shape == (70, embedder.dim) and one_batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one_batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_batch, small_batches, atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, embedder.dim)


def test_prompts_past_77_tokens_are_truncated_on_purpose(embedder) -> None:
    base = "a castle on a hill, " * 30
    assert embedder.count_tokens(base) > MAX_TOKENS
    longer = base + "in the style of a completely different painter, neon, underwater"
    a, b = embedder.embed_texts([base, longer])
    np.testing.assert_allclose(a, b, atol=1e-6)  # CLIP never sees past token 77
    short_a, short_b = embedder.embed_texts(["a castle", "a castle at night"])
    assert not np.allclose(short_a, short_b)


def _modes() -> dict[str, Image.Image]:
    rgb = Image.open(SAMPLE_IMAGES / "2m_first_1k-idx507_from-nobbettt-demo.png").convert("RGB")
    arr16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    return {
        "RGBA": rgba, "P": rgb.convert("P"), "L": rgb.convert("L"), "1": rgb.convert("1"),
        "CMYK": rgb.convert("CMYK"), "I;16": Image.fromarray(arr16),
        "I": Image.fromarray(arr16.astype(np.int32)), "F": rgb.convert("L").convert("F"),
        "LA": rgb.convert("LA"), "huge": rgb.resize((6000, 8000)),
    }


def test_any_image_mode_and_size_embeds(embedder) -> None:
    modes = _modes()
    converted = {name: to_rgb(img) for name, img in modes.items()}
    for name, img in converted.items():
        assert img.mode == "RGB" and max(img.size) <= MAX_SIDE, name
    # 16-bit data is scaled, not clipped to white.
    assert 20 < np.asarray(converted["I;16"]).mean() < 235
    vectors = embedder.embed_images(list(modes.values()))
    assert vectors.shape == (len(modes), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_pngs_of_each_mode_open_from_bytes() -> None:
    for name, img in _modes().items():
        if name == "huge":
            continue
        buf = io.BytesIO()
        img.save(buf, format={"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(name, "PNG"))
        assert open_image(buf.getvalue()).mode == "RGB", name


def test_corrupt_and_truncated_images_raise_input_error() -> None:
    good = (SAMPLE_IMAGES / "2m_first_1k-idx507_from-nobbettt-demo.png").read_bytes()
    for bad, label in ((b"not an image at all", "junk"), (good[: len(good) // 3], "truncated")):
        with pytest.raises(InputError, match="Could not read upload.png"):
            open_image(bad, name="upload.png")


def test_preprocess_then_encode_is_embed_images(embedder) -> None:
    """The two halves ingest runs apart (preprocessing in worker threads, one image at a time; encoding in a
    batch) give embed_images' vectors exactly."""
    import torch

    images = [open_image(p) for p in sorted(SAMPLE_IMAGES.iterdir()) if p.suffix == ".png"] + [_modes()["P"]]
    one_by_one = torch.stack([embedder.preprocess_images([img])[0] for img in images])
    np.testing.assert_array_equal(embedder.encode_pixels(one_by_one), embedder.embed_images(images))
