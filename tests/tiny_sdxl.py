"""A tiny SDXL pipeline built from configs (random weights, the real diffusers code path); tests and bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tiny import save_clip_tokenizer

from studio.generate.loading import SDXL_CONFIG  # the shipped SDXL base configs


def _tokenizers(folder: Path) -> tuple[Any, Any, int]:
    from transformers import CLIPTokenizer

    vocab_size = 0
    for name in ("tokenizer", "tokenizer_2"):
        vocab_size = save_clip_tokenizer(folder / name)
    return (CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
            CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2")), vocab_size)


def build_tiny_sdxl(folder: Path, seed: int = 0) -> Any:
    """A StableDiffusionXLPipeline as small as diffusers' own SDXL tests use, saved to `folder`.

    Differences from those tests, on purpose: our offline tokenizers (tests/tiny.py), and a
    4-block VAE so that latents are 1/8 of the image as in real SDXL (TAESDXL previews rely on it)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_2, vocab_size = _tokenizers(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + text_encoder_2's 32-d pooled embedding
        cross_attention_dim=64,  # the two encoders' 32-d hidden states, concatenated
        norm_num_groups=1,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 8, 8], in_channels=3, out_channels=3, layers_per_block=1, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4, sample_size=64, scaling_factor=0.13025,
    )
    text_config = CLIPTextConfig(
        vocab_size=vocab_size, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
        hidden_act="gelu", projection_dim=32, layer_norm_eps=1e-5,
    )
    text_encoder = CLIPTextModel(text_config)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    scheduler = EulerDiscreteScheduler.from_config(
        json.loads((SDXL_CONFIG / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False,
    )
    pipe.save_pretrained(str(folder))
    return pipe


def build_shape_true_sdxl(device: str = "cpu", dtype: Any = None, tokenizer_dir: Path | None = None) -> Any:
    """SDXL base's real UNet, VAE and text-encoder configs (studio/generate/sdxl_config), random weights.

    Same compute and memory as stabilityai/stable-diffusion-xl-base-1.0; the tokenizers are the
    offline ones of tests/tiny.py (the token count, hence the compute, is the same 77)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    dtype = dtype or torch.float32
    folder = Path(tokenizer_dir or tempfile.mkdtemp(prefix="sdxl-tokenizers-"))
    tokenizer, tokenizer_2, _ = _tokenizers(folder)
    cfg = str(SDXL_CONFIG)
    torch.manual_seed(0)
    # Built on the target device: random init of 3.5 B parameters is minutes on a CPU, seconds on a GPU.
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder"))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg, subfolder="text_encoder_2"))
    scheduler = EulerDiscreteScheduler.from_pretrained(cfg, subfolder="scheduler")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False,
    )
    return pipe.to(device=device, dtype=dtype)
