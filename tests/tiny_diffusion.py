"""A tiny random Stable Diffusion pipeline, saved as a diffusers model directory.

Real diffusers and transformers classes (UNet2DConditionModel, AutoencoderKL, CLIPTextModel,
a DDIM scheduler and a CLIP tokenizer), sized so one 64×64 image takes well under a second
on a CPU. transformers ships no CLIP vocabulary and the hub is unreachable, so the tokenizer's
vocabulary is built here: the 256 byte-level symbols, each also as a word end (``</w>``),
and no merges. The weights are random but seeded: the same directory every time.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Token ids shared by the tokenizer and the text encoder's config.
BOS_ID, EOS_ID = 0, 1
MAX_TOKENS = 16
#: Native image side of the tiny pipeline: sample_size 32 × VAE scale factor 2.
NATIVE_SIZE = 64


def tiny_clip_tokenizer() -> Any:
    """A CLIPTokenizer over a byte-level vocabulary, built without any download."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": BOS_ID, "<|endoftext|>": EOS_ID}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def build_tiny_sd(directory: Path, seed: int = 0) -> Path:
    """Save a tiny Stable Diffusion pipeline (no safety checker) to ``directory``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=EOS_ID,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


@contextmanager
def network_off() -> Iterator[None]:
    """Any connection to a host other than this one raises, for the duration."""
    import pytest

    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        remote = isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost")
        if remote and self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network is off in this test: refused a connection to {host}")
        return original(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", connect)
        yield
