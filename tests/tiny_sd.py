"""A tiny, randomly initialised Stable Diffusion written to disk as a diffusers
folder, so the ``sd`` and Real-Fake SD adapters are tested offline and load it
exactly as users load real weights (``--option sd.model=DIR``).

Everything is built from configs (no hub): a 2-level ``UNet2DConditionModel``
(cross-attention width 32, latent 8x8), a 2-level ``AutoencoderKL`` (so images
are 16x16), a 2-layer ``CLIPTextModel`` with a ``CLIPTokenizer`` over a small
vocabulary written to ``vocab.json`` + ``merges.txt``, and UniPC. A separate
folder holds a tiny ``CLIPVisionModelWithProjection`` + ``CLIPImageProcessor``
(32x32 input, patch 8) for Real-Fake's visual guidance (Yuan et al. 2024, Sec. 3.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TEXT_WIDTH = 32
PROMPT_WORDS = ("a", "photo", "of", "distorted", "unrealistic", "blurry", "out", "frame",
                *[str(i) for i in range(10)])


def write_tokenizer_files(folder: Path, words=PROMPT_WORDS) -> None:
    """vocab.json + merges.txt of a byte-level BPE that knows every single
    character (so any prompt tokenizes) and merges ``words`` into whole tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,.-'/")
    vocab: list[str] = ["<|startoftext|>", "<|endoftext|>"]
    vocab += chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = f"{pieces[0]} {pieces[1]}"
            merged = pieces[0] + pieces[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab:
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Write a tiny Stable Diffusion pipeline folder (safetensors) and return it."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tok_dir = folder.parent / f"{folder.name}-tokenizer-src"
    write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"),
                              model_max_length=77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_WIDTH,
            attention_head_dim=8, norm_num_groups=16,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
            norm_num_groups=8, sample_size=16,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_WIDTH,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ))
    scheduler = UniPCMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        num_train_timesteps=1000, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_clip_vision(folder: Path, seed: int = 0) -> Path:
    """Write a tiny CLIPVisionModelWithProjection + CLIPImageProcessor (32x32)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, projection_dim=24,
        ))
    model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    return build_tiny_clip_vision(tmp_path_factory.mktemp("tiny-clip") / "image_encoder")
