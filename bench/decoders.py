"""Volume decoding, dense against FlashVDM: time, queries, agreement, and extraction's share.

    python bench/decoders.py                                  # tiny model, CPU (and CUDA)
    python bench/decoders.py --published --octree 128,256,384 --budget-s 60
    python bench/gpu.py --decoders ...                        # the same, after the GPU tests

Two VAEs, both random (no weights ship anywhere we can reach):

- ``tiny``: the tests' ShapeVAE (width 32, 32 latents), its attention focused (``--focus``,
  default 4: each point attends to few latents, as in a trained decoder);
- ``published``: Hunyuan3D-2's ShapeVAE sizes as in its published ``config.yaml`` (copied in
  public repositories; also in DESIGN.md): ``num_latents`` 3072, ``embed_dim`` 64, width
  1024, 16 heads, 16 decoder layers, ``num_freqs`` 8, ``include_pi`` false, ``qkv_bias``
  false, ``qk_norm`` true; the geometry decoder's defaults (MLP ×4, ``ln_post``).

Each VAE's output bias is set so that 30 % of the decoding cube is inside (a surface of an
object's extent). Latents are standard normal per seed, through the VAE's transformer (not
timed: the same for both decoders). Per octree and decoder: decoding seconds, points queried,
extraction seconds (scikit-image marching cubes on the CPU, as hy3dgen's ``mc``). A run whose
estimated time exceeds ``--budget-s`` is not run: its time is extrapolated from the measured
points per second of a few chunks and the points it would query (dense: (n + 1)³; FlashVDM:
its coarse level exactly, finer levels estimated by hunyuan3d_decode.expected_queries), and
marked so. Agreement (volume IoU at 128³, Chamfer distance) is measured where both ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PUBLISHED_VAE: dict[str, Any] = {
    "num_latents": 3072,
    "embed_dim": 64,
    "num_freqs": 8,
    "include_pi": False,
    "heads": 16,
    "width": 1024,
    "num_decoder_layers": 16,
    "qkv_bias": False,
    "qk_norm": True,
}
INSIDE_SHARE = 0.30
PROBE_CHUNKS = 2


def make_vae(kind: str, focus: float, device: str, dtype: Any) -> Any:
    import torch

    from serve_app.pipeline.generators.torchvision_compat import import_shapegen
    from tests.tiny_hunyuan3d import TINY_CONFIG

    import_shapegen()
    from hy3dgen.shapegen.models import ShapeVAE

    torch.manual_seed(0)
    params = PUBLISHED_VAE if kind == "published" else TINY_CONFIG["vae"]["params"]
    vae = ShapeVAE(**params).eval()
    with torch.no_grad():
        attention = vae.geo_decoder.cross_attn_decoder.attn.attention
        attention.q_norm.weight *= focus
        attention.k_norm.weight *= focus
        latents = vae(torch.randn(1, *vae.latent_shape, generator=torch.Generator().manual_seed(1)))
        axis = torch.linspace(-1.0, 1.0, 9)
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
        logits = vae.geo_decoder(queries=grid, latents=latents)
        vae.geo_decoder.output_proj.bias -= torch.quantile(logits.flatten(), 1 - INSIDE_SHARE)
    return vae.to(device=device, dtype=dtype)


def points_per_second(vae: Any, latents: Any, decoder: str, chunk: int, sync: Callable) -> float:
    """Measured on ``PROBE_CHUNKS`` chunks of random queries (FlashVDM: with key selection)."""
    import torch

    from serve_app.pipeline.generators.hunyuan3d_decode import set_decoder

    set_decoder(vae, decoder, "mean", True)  # sets FlashVDM's attention processor
    processor = vae.geo_decoder.cross_attn_decoder.attn.attention.attn_processor
    queries = torch.rand(1, chunk, 3, device=latents.device, dtype=latents.dtype) * 2 - 1
    with torch.inference_mode():
        vae.geo_decoder(queries=queries[:, :256], latents=latents)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(PROBE_CHUNKS):
            if decoder == "flashvdm":
                processor.topk = True
            vae.geo_decoder(queries=queries, latents=latents)
        sync()
    return PROBE_CHUNKS * chunk / (time.perf_counter() - start)


def decode_once(vae: Any, latents: Any, decoder: str, octree: int, sync: Callable) -> tuple:
    from serve_app.pipeline.generators.hunyuan3d_decode import decode_volume, set_decoder

    set_decoder(vae, decoder, "mean", True)
    count = [0]

    def counter(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        shape = kwargs["queries"].shape
        count[0] += shape[0] * shape[1]

    hook = vae.geo_decoder.register_forward_pre_hook(counter, with_kwargs=True)
    try:
        sync()
        start = time.perf_counter()
        volume = decode_volume(vae, latents, 1.01, octree, 8000, 0.0)
        sync()
    finally:
        hook.remove()
    return time.perf_counter() - start, count[0], volume


def bench(kind: str, device: str, octrees: list[int], seeds: list[int], args: Any) -> None:
    import torch

    from serve_app.pipeline.generators.hunyuan3d_decode import expected_queries, extract_surface
    from tests.mesh_agreement import agreement

    dtype = torch.float16 if device == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    vae = make_vae(kind, args.focus, device, dtype)
    g = torch.Generator().manual_seed(seeds[0])
    latents = vae(torch.randn(1, *vae.latent_shape, generator=g).to(device, dtype))
    rate = {d: points_per_second(vae, latents, d, 8000, sync) for d in ("dense", "flashvdm")}
    dt = str(dtype).removeprefix("torch.")
    print(
        f"\n## decoding, {kind} VAE (focus {args.focus}), {device} {dt}"
        + (f", {torch.get_num_threads()} threads" if device == "cpu" else "")
        + f": {rate['dense']:,.0f} points/s dense, {rate['flashvdm']:,.0f} with key selection"
    )
    print("| octree | decoder | decode s | points | extract s | extract share | agreement |")
    print("|---|---|---|---|---|---|---|")
    for octree in octrees:
        volumes = {}
        for decoder in ("dense", "flashvdm"):
            expected = expected_queries(decoder, octree, True)  # type: ignore[arg-type]
            guess = expected / rate[decoder]
            if guess > args.budget_s:
                print(
                    f"| {octree} | {decoder} | ~{guess:,.1f} (extrapolated) | "
                    f"~{expected:,.0f} | – | – | – |"
                )
                continue
            seconds, points, volume = decode_once(vae, latents, decoder, octree, sync)
            start = time.perf_counter()
            _, faces = extract_surface(volume, 0.0)
            extract = time.perf_counter() - start
            volumes[decoder] = volume
            if device == "cuda" and decoder == "dense":
                time_dmc(volume, octree)
            share = extract / (seconds + extract)
            print(
                f"| {octree} | {decoder} | {seconds:.2f} | {points:,} | {extract:.2f} "
                f"| {100 * share:.0f} % | {len(faces):,} faces |"
            )
        if len(volumes) == 2:
            found = [str(agreement(volumes["dense"], volumes["flashvdm"]))]
            for seed in seeds[1:]:
                g = torch.Generator().manual_seed(seed)
                other = vae(torch.randn(1, *vae.latent_shape, generator=g).to(device, dtype))
                pair = [decode_once(vae, other, d, octree, sync)[2] for d in ("dense", "flashvdm")]
                found.append(str(agreement(*pair)))
            print(f"| {octree} | agreement | seeds {seeds}: " + "; ".join(found) + " | | | | |")
    del vae, latents


def time_dmc(volume: Any, octree: int) -> None:
    """hy3dgen's DMC extractor (diso, on CUDA) on the same grid, where diso is installed."""
    try:
        import diso  # noqa: F401
        import torch
        from hy3dgen.shapegen.models.autoencoders.surface_extractors import DMCSurfaceExtractor
    except ImportError:
        return
    grid = torch.from_numpy(volume.logits)[None].cuda()
    extractor = DMCSurfaceExtractor()
    extractor(grid, octree_resolution=octree)  # warm-up: builds the extension's state
    torch.cuda.synchronize()
    start = time.perf_counter()
    extractor(grid, octree_resolution=octree)
    torch.cuda.synchronize()
    print(f"| {octree} | dmc (diso, CUDA) extraction | | | {time.perf_counter() - start:.3f} | | |")


def diso_available() -> str:
    try:
        import diso  # noqa: F401
    except ImportError:
        return "diso is not installed (pip install diso builds a CUDA extension)"
    return "diso is installed: its times are the 'dmc' lines above (CUDA only)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", action="store_true", help="also the published sizes")
    parser.add_argument("--octree", default="128,256,384")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--focus", type=float, default=4.0)
    parser.add_argument("--budget-s", type=float, default=60.0, help="longest run to make")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from serve_app.pipeline.generators.torchvision_compat import import_shapegen

    import_shapegen()
    octrees = [int(o) for o in args.octree.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    with torch.no_grad():
        for kind in ["tiny"] + (["published"] if args.published else []):
            for device in devices:
                bench(kind, device, octrees, seeds, args)
    print(f"\n# surface extraction on the GPU: {diso_available()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
