"""hunyuan3d's defaults per checkpoint variant and device, and the decoder ``auto`` picks.

Light (no torch): the ingress resolves a request's parameters with these before it is queued,
so the cache key holds what the replica will really run; the replica's device is known from
config (:func:`replica_device`), and the loaded generator uses the same overrides for itself.
The defaults by quality are :class:`~serve_app.contracts.params.GenerationParams`'s; here is
only what differs:

- ``standard`` (``hunyuan3d-dit-v2-0``, ``hunyuan3d-dit-v2-mini``): nothing.
- ``fast`` (``-fast``): guidance-distilled (the DiT takes the guidance scale as an input, one
  pass per step instead of two): the same steps, guidance 5.0 as published.
- ``turbo`` (``-turbo``): step-distilled; 5 steps at every quality (Tencent's published
  setting), guidance 5.0 as published.
- a replica without CUDA: octree 128 at every quality (decoding grows with the cube of
  ``octree_resolution`` and the CPU is 10-100× slower at it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from serve_app.pipeline.config import Hunyuan3DSettings

Variant = Literal["standard", "fast", "turbo"]
Decoder = Literal["flashvdm", "dense", "auto"]
DeviceKind = Literal["cuda", "cpu"]

#: A step-distilled (turbo) checkpoint's steps at every quality, as Tencent publishes it.
TURBO_STEPS = 5
#: The grid at every quality on a replica without CUDA.
CPU_OCTREE = 128
#: At this VAE width and above FlashVDM decodes faster on the CPU too: at the published 1024
#: its key selection makes each point 1.27× cheaper and it skips most points; at the tests'
#: 32 it is slower (bench/decoders.py). Widths in between are not measured.
FLASHVDM_CPU_MIN_WIDTH = 512


def overrides(variant: Variant, device: DeviceKind) -> dict[str, int | float]:
    """The defaults that differ, at every quality, for this checkpoint kind on this device."""
    found: dict[str, int | float] = {}
    if variant == "turbo":
        found["steps"] = TURBO_STEPS
    if device == "cpu":
        found["octree_resolution"] = CPU_OCTREE
    return found


def replica_device(device: Literal["auto", "cpu", "cuda"], replica_gpus: float) -> DeviceKind:
    """Where a ShapeTexture replica runs hunyuan3d, from config: ``auto`` is CUDA only on a
    replica that is given a GPU (``shape_texture.num_gpus``)."""
    if device == "auto":
        return "cuda" if replica_gpus > 0 else "cpu"
    return device


def deployment_overrides(
    settings: Hunyuan3DSettings, replica_gpus: float
) -> dict[str, int | float]:
    """hunyuan3d's overrides as the ShapeTexture replicas will run it: the configured variant,
    on the device they have."""
    return overrides(settings.variant, replica_device(settings.device, replica_gpus))


def defaults_note(settings: Hunyuan3DSettings, replica_gpus: float) -> str:
    """What sets hunyuan3d's defaults on this deployment, in words (``/api/generators``)."""
    device = replica_device(settings.device, replica_gpus)
    where = (
        f"a replica without CUDA: octree_resolution {CPU_OCTREE} at every quality"
        if device == "cpu"
        else "CUDA: octree_resolution by quality"
    )
    turbo = settings.variant == "turbo"
    steps = f"{TURBO_STEPS} steps at every quality" if turbo else "steps by quality"
    return f"variant {settings.variant} ({steps}); decoder {settings.decoder}; {where}"


def pick_decoder(
    decoder: Decoder, device: DeviceKind, vae_width: int
) -> Literal["flashvdm", "dense"]:
    """The decoder ``auto`` takes: the one measured faster on that device for a VAE of that
    width. FlashVDM skips most queries (hierarchical decoding) and most keys (adaptive
    key-value selection); that pays on CUDA, and on the CPU for a published-size decoder,
    but a tiny decoder answers each query almost for free and its bookkeeping then costs more.
    """
    if decoder != "auto":
        return decoder
    if device == "cuda" or vae_width >= FLASHVDM_CPU_MIN_WIDTH:
        return "flashvdm"
    return "dense"
