"""A tiny random Hunyuan3D-2 built with hy3dgen's own classes, saved as the published layout.

``build_tiny_hunyuan3d(directory)`` writes ``config.yaml`` (the same ``target`` classes as
tencent/Hunyuan3D-2's ``hunyuan3d-dit-v2-0``, shrunk) and ``model.fp16.safetensors`` (keys
prefixed ``model.``, ``vae.``, ``conditioner.``) in well under a second. The DINOv2 encoder's
config is inline, so nothing names a hub model. With random weights the decoded occupancy
field need not cross level 0; the geometry decoder's output bias is set to minus the median
field of a reference latent, so the level set exists for any seed. Used by the tests and
``bench/gpu.py``.

``variant="turbo"`` (or ``"fast"``) writes a guidance-distilled denoiser (``guidance_embed``)
as the published ``-turbo`` (with its consistency scheduler) and ``-fast`` folders do;
``build_tiny_vae(directory)`` writes a separately published VAE's layout
(``hunyuan3d-vae-v2-0-turbo``: ``config.yaml`` with ``target`` and ``params``, unprefixed keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: DiT hidden 32, 2 heads (axes_dim [16] = 32 / 2), depth 1 + 1 single block; ShapeVAE width 32,
#: embed_dim 8 = the DiT's in_channels; DINOv2 hidden 32 = context_in_dim, image 56 = 4 × 14.
TINY_CONFIG: dict[str, Any] = {
    "model": {
        "target": "hy3dgen.shapegen.models.Hunyuan3DDiT",
        "params": {
            "in_channels": 8,
            "context_in_dim": 32,
            "hidden_size": 32,
            "mlp_ratio": 2.0,
            "num_heads": 2,
            "depth": 1,
            "depth_single_blocks": 1,
            "axes_dim": [16],
            "theta": 10000,
            "qkv_bias": True,
            "guidance_embed": False,
        },
    },
    "vae": {
        "target": "hy3dgen.shapegen.models.ShapeVAE",
        "params": {
            "num_latents": 32,
            "embed_dim": 8,
            "num_freqs": 4,
            "include_pi": False,
            "heads": 2,
            "width": 32,
            "num_decoder_layers": 1,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 1.0,
        },
    },
    "conditioner": {
        "target": "hy3dgen.shapegen.models.SingleImageEncoder",
        "params": {
            "main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {
                    "config": {
                        "attention_probs_dropout_prob": 0.0,
                        "drop_path_rate": 0.0,
                        "hidden_act": "gelu",
                        "hidden_dropout_prob": 0.0,
                        "hidden_size": 32,
                        "image_size": 56,
                        "initializer_range": 0.02,
                        "layer_norm_eps": 1.0e-6,
                        "layerscale_value": 1.0,
                        "mlp_ratio": 2,
                        "model_type": "dinov2",
                        "num_attention_heads": 2,
                        "num_channels": 3,
                        "num_hidden_layers": 1,
                        "patch_size": 14,
                        "qkv_bias": True,
                        "use_swiglu_ffn": False,
                    },
                    "image_size": 56,
                    "use_cls_token": True,
                },
            }
        },
    },
    "scheduler": {
        "target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
        "params": {"num_train_timesteps": 1000},
    },
    "image_processor": {
        "target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
        "params": {"size": 64, "border_ratio": 0.15},
    },
}

WEIGHTS = "model.fp16.safetensors"

#: The scheduler of the published -turbo checkpoints (step-distilled: phased consistency).
TURBO_SCHEDULER = {
    "target": "hy3dgen.shapegen.schedulers.ConsistencyFlowMatchEulerDiscreteScheduler",
    "params": {"num_train_timesteps": 1000, "pcm_timesteps": 100},
}


def tiny_config(variant: str = "standard") -> dict[str, Any]:
    """:data:`TINY_CONFIG` for a checkpoint kind: fast and turbo are guidance-distilled."""
    import copy

    config = copy.deepcopy(TINY_CONFIG)
    if variant in ("fast", "turbo"):
        config["model"]["params"]["guidance_embed"] = True
    if variant == "turbo":
        config["scheduler"] = copy.deepcopy(TURBO_SCHEDULER)
    return config


def tiny_mv_config() -> dict[str, Any]:
    """The tiny model's config as Hunyuan3D-2mv's: the DINOv2 encoder with a view embedding
    for four views (``DinoImageEncoderMV``) and the multi-view image processor."""
    import copy

    config = copy.deepcopy(TINY_CONFIG)
    encoder = config["conditioner"]["params"]["main_image_encoder"]
    encoder["type"] = "DinoImageEncoderMV"
    encoder["kwargs"]["view_num"] = 4
    config["image_processor"] = {
        "target": "hy3dgen.shapegen.preprocessors.MVImageProcessorV2",
        "params": {"size": 64, "border_ratio": 0.15},
    }
    return config


def build_tiny_hunyuan3d(
    directory: Path,
    seed: int = 0,
    level_offset: float = 0.0,
    variant: str = "standard",
    focus: float = 1.0,
    multi_view: bool = False,
) -> Path:
    """Write a tiny random Hunyuan3D-2 (config.yaml + model.fp16.safetensors) to ``directory``;
    with ``multi_view``, a tiny Hunyuan3D-2mv (``tiny_mv_config``).

    ``level_offset`` is added to the decoded field: a large one moves the whole field off
    level 0, so the model finds no surface at all. ``focus`` multiplies the geometry
    decoder's query and key norms (its attention logits by ``focus``²): above 1, each point
    attends to few latents, as in a trained decoder, where random weights attend to all
    almost evenly.
    """
    import torch
    import yaml
    from safetensors.torch import save_file

    from serve_app.pipeline.generators.torchvision_compat import import_shapegen

    import_shapegen()
    from hy3dgen.shapegen.models import Hunyuan3DDiT, ShapeVAE, SingleImageEncoder

    torch.manual_seed(seed)
    params = tiny_mv_config() if multi_view else tiny_config(variant)
    model = Hunyuan3DDiT(**params["model"]["params"])
    vae = ShapeVAE(**params["vae"]["params"])
    conditioner = SingleImageEncoder(**params["conditioner"]["params"])
    with torch.no_grad():
        attention = vae.geo_decoder.cross_attn_decoder.attn.attention
        attention.q_norm.weight *= focus
        attention.k_norm.weight *= focus
        _centre_level_set(vae)
        vae.geo_decoder.output_proj.bias += level_offset
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model", model), ("vae", vae), ("conditioner", conditioner)):
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().to(torch.float16).contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    save_file(tensors, str(directory / WEIGHTS))
    return directory


def build_tiny_vae(directory: Path, seed: int = 1) -> Path:
    """Write a tiny random ShapeVAE alone (config.yaml with ``target`` and ``params``, and
    model.fp16.safetensors with unprefixed keys), its latents the tiny denoiser's."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from serve_app.pipeline.generators.torchvision_compat import import_shapegen

    import_shapegen()
    from hy3dgen.shapegen.models import ShapeVAE

    torch.manual_seed(seed)
    config = {"target": TINY_CONFIG["vae"]["target"], "params": dict(TINY_CONFIG["vae"]["params"])}
    vae = ShapeVAE(**config["params"])
    with torch.no_grad():
        _centre_level_set(vae)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    save_file(tensors, str(directory / WEIGHTS))
    return directory


def _centre_level_set(vae: Any) -> None:
    """Shift the geometry decoder's output so level 0 cuts the field of a unit latent.

    The decoder's logits over a coarse grid, from a standard-normal latent, have their median
    moved to 0; other latents (other seeds) give other fields around the same level.
    """
    import torch

    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, *vae.latent_shape, generator=generator)
    axis = torch.linspace(-1.0, 1.0, 17)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
    logits = vae.geo_decoder(queries=grid, latents=vae(latents))
    vae.geo_decoder.output_proj.bias -= logits.median()
