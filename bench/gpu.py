"""GPU check: the gpu-marked tests, then both shape generators timed on CUDA against the CPU.

    python bench/gpu.py                          # a CUDA machine: tests, then the tables
    python bench/gpu.py --cpu-only               # no CUDA needed: the same path, CPU only
    python bench/gpu.py --skip-tests --octree 64,128,256,384 --repeats 5
    python bench/gpu.py --decoders               # then dense against FlashVDM (bench/decoders.py)

It runs the pipeline, not Serve: no Ray, FastAPI, rembg or onnxruntime is imported. Besides
torch, numpy, scipy, pillow, pyyaml, scikit-image, opencv, pytest, transformers, safetensors
and huggingface_hub it needs hy3dgen, diffusers (which checks for requests, so requests,
urllib3 and charset-normalizer), einops, trimesh, pydantic (with pydantic_core,
annotated-types, typing-inspection, typing_extensions) and fast-simplification, each
installable with --no-deps (the README has the command). pymeshlab may be missing:
hy3dgen only names it when imported, so a stand-in module is put in its place and hunyuan3d's
mesh clean-up runs on fast-simplification instead (the output says so; the clean-up column is
then not the service's figure).

Timed: the shape stage of one cut-out (a real photo under an elliptical mask; background
removal is not part of it). inflate at each quality, as the service runs it (one CPU thread);
the tiny random Hunyuan3D-2 of the tests (tests/tiny_hunyuan3d.py) at a few octree
resolutions, on the CPU in float32 with every core, on CUDA in float16 and float32, with the
time split into denoising, volume decoding and surface extraction, and clean-up. The tiny
model's network costs almost nothing: its figures are those of decoding and extraction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if TYPE_CHECKING:
    from serve_app.pipeline.types import CutOut

#: The test files whose gpu-marked tests run here.
GPU_TESTS = (
    "tests/unit/test_torchvision_compat.py",
    "tests/unit/test_inflate.py",
    "tests/unit/test_hunyuan3d.py",
    "tests/unit/test_hunyuan3d_fastpath.py",
    "tests/unit/test_text_to_image.py",
)


def provide_pymeshlab() -> str:
    """The mesh clean-up backend to time: pymeshlab where it imports, else fast-simplification
    with a stand-in ``pymeshlab`` module for hy3dgen's import (any use of it raises)."""
    try:
        import pymeshlab  # noqa: F401
    except ImportError:
        pass
    else:
        return "pymeshlab"

    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pymeshlab is not installed (bench/gpu.py put a stand-in in its place)")

    stand_in = types.ModuleType("pymeshlab", "bench/gpu.py's stand-in for hy3dgen's import")
    for name in ("MeshSet", "Mesh"):
        setattr(stand_in, name, type(name, (), {"__init__": unavailable}))
    sys.modules["pymeshlab"] = stand_in
    return "fast-simplification"


def run_gpu_tests(extra: list[str]) -> int:
    """pytest -m gpu over :data:`GPU_TESTS`, in this process (so the stand-in applies)."""
    import pytest

    files = [str(REPO / f) for f in GPU_TESTS]
    return int(pytest.main(["-m", "gpu", "-q", "-p", "no:cacheprovider", *extra, *files]))


def photo_cutout(side: int = 512) -> CutOut:
    """chelsea (scikit-image), longest side ``side`` px, under an elliptical alpha mask."""
    from PIL import Image
    from skimage import data

    from serve_app.pipeline.types import CutOut

    image = Image.fromarray(data.chelsea())
    k = side / max(image.size)
    image = image.resize((round(image.width * k), round(image.height * k)))
    rgb = np.asarray(image)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (0.45 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 < 1
    rgba = np.dstack([rgb, (inside * 255).astype(np.uint8)])
    return CutOut(rgba=rgba, mask=inside, source="alpha")


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def no_sync() -> None:
    pass


def cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def bench_inflate(devices: list[str], qualities: list[int], repeats: int, cutout: CutOut) -> None:
    import torch

    from serve_app.contracts.params import GenerationParams
    from serve_app.pipeline.generators.inflate import InflateGenerator
    from serve_app.pipeline.types import CancelToken, no_progress

    seconds: dict[tuple[str, int], float] = {}
    faces: dict[int, int] = {}
    for device in devices:
        generator = InflateGenerator(device=device)  # one CPU thread, as in the service
        sync = cuda_sync if device == "cuda" else no_sync

        def once(q: int, g: InflateGenerator = generator) -> Any:
            return g.generate(cutout, GenerationParams(quality=q), no_progress, CancelToken())

        once(5)  # warm-up (CUDA context, kernels)
        for q in qualities:
            runs = [timed(partial(once, q), sync) for _ in range(repeats)]
            seconds[device, q] = statistics.median(t for t, _ in runs)
            faces[q] = len(runs[-1][1].faces)
    print(f"\n## inflate, shape stage (median of {repeats}; CPU: 1 thread, as the service runs it)")
    columns = " | ".join(f"{d.upper()} s" for d in devices)
    print(f"| quality | faces | {columns} | CPU / CUDA |")
    print("|---|---|" + "---|" * len(devices) + "---|")
    for q in qualities:
        cells = [f"{seconds[d, q]:.3f}" for d in devices]
        ratio = f"{seconds['cpu', q] / seconds['cuda', q]:.2f}×" if "cuda" in devices else "–"
        print(f"| {q} | {faces[q]:,} | " + " | ".join(cells) + f" | {ratio} |")
    torch.set_num_threads(CPU_THREADS)


def bench_hunyuan3d(
    model: Path,
    variants: list[tuple[str, str]],
    octrees: list[int],
    repeats: int,
    postprocess: str,
    cutout: CutOut,
) -> None:
    import torch

    from serve_app.contracts.params import GenerationParams
    from serve_app.pipeline.config import Hunyuan3DSettings
    from serve_app.pipeline.generators import hunyuan3d as hy
    from serve_app.pipeline.generators.catalog import resolve_params
    from serve_app.pipeline.types import CancelToken

    rows = []
    for device, dtype in variants:
        torch.set_num_threads(CPU_THREADS)
        settings = Hunyuan3DSettings.model_validate(
            {"model_path": model, "device": device, "dtype": dtype, "postprocess": postprocess}
        )
        generator = hy.Hunyuan3DGenerator(settings)
        on_cuda = device == "cuda"
        sync = cuda_sync if on_cuda else no_sync

        def once(octree: int, marks: list[tuple[float, float]], g: Any = generator) -> Any:
            def on_progress(stage: object, fraction: float) -> None:
                marks.append((fraction, time.perf_counter()))

            params = GenerationParams(quality=5, octree_resolution=octree)
            return g.generate(cutout, params, on_progress, CancelToken())

        once(octrees[0], [])  # warm-up
        for octree in octrees:
            results = []
            for _ in range(repeats):
                marks: list[tuple[float, float]] = []
                if on_cuda:
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                start = time.perf_counter()
                seconds, mesh = timed(partial(once, octree, marks), sync)
                denoised = next(t for f, t in marks if f >= hy.DENOISE_BAND[1])
                extracted = next(t for f, t in marks if f >= hy.CLEAN_START)
                peak = left = float("nan")
                if on_cuda:
                    peak = torch.cuda.max_memory_allocated() / 2**20
                    left = (torch.cuda.memory_allocated() - before) / 2**20
                results.append(
                    (
                        seconds,
                        denoised - start,
                        extracted - denoised,
                        start + seconds - extracted,
                        len(mesh.faces),
                        peak,
                        left,
                    )
                )
            median = sorted(results)[len(results) // 2]
            rows.append((octree, device, str(generator.dtype).removeprefix("torch."), median))
    resolved = resolve_params("hunyuan3d", GenerationParams(quality=5))
    print(
        f"\n## hunyuan3d (tiny random model), shape stage, quality 5: {resolved.steps} steps, "
        f"face_count {resolved.face_count:,}; median of {repeats}; CPU: {CPU_THREADS} threads; "
        f"clean-up: {postprocess}"
    )
    print(
        "| octree | device | dtype | total s | denoise s | decode + extract s | clean-up s "
        "| faces | CUDA peak MiB | CUDA left after MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for octree, device, dtype, (total, den, dec, clean, faces, peak, left) in sorted(rows):
        mib = f"{peak:.0f} | {left:.2f}" if device == "cuda" else "– | –"
        print(
            f"| {octree} | {device} | {dtype} | {total:.3f} | {den:.3f} | {dec:.3f} | "
            f"{clean:.3f} | {faces:,} | {mib} |"
        )


CPU_THREADS = os.cpu_count() or 1


def main() -> int:
    global CPU_THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="time on the CPU alone")
    parser.add_argument("--skip-tests", action="store_true", help="timings only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qualities", default="1,2,3,4,5,6,7,8,9,10", help="inflate")
    parser.add_argument("--octree", default="64,128,256", help="hunyuan3d resolutions")
    parser.add_argument("--threads", type=int, default=CPU_THREADS, help="hunyuan3d on CPU")
    parser.add_argument(
        "--decoders",
        action="store_true",
        help="also dense against FlashVDM at octree 128/256/384, tiny and published-size VAE",
    )
    parser.add_argument("--budget-s", default="120", help="--decoders: longest run to make")
    args = parser.parse_args()
    CPU_THREADS = args.threads

    postprocess = provide_pymeshlab()
    import torch

    from serve_app.pipeline.generators import torchvision_compat

    cuda = torch.cuda.is_available() and not args.cpu_only
    torchvision_compat.import_shapegen()
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"# bench/gpu.py: torch {torch.__version__}, CUDA device {name}, "
        f"{os.cpu_count()} CPU cores; transforms for hy3dgen from {torchvision_compat.provider}"
    )
    if postprocess != "pymeshlab":
        print(
            "# pymeshlab is not installed: hy3dgen's import got a stand-in module and "
            "hunyuan3d's clean-up runs on fast-simplification (not the service's pymeshlab)"
        )
    if args.cpu_only:
        print("# --cpu-only: CUDA is not used for the timings")

    status = 0
    if not args.skip_tests:
        print("\n## pytest -m gpu " + " ".join(GPU_TESTS))
        status = run_gpu_tests([])
        print(f"# pytest exit status {status}")

    devices = ["cpu"] + (["cuda"] if cuda else [])
    variants = [("cpu", "auto")] + ([("cuda", "float16"), ("cuda", "float32")] if cuda else [])
    cutout = photo_cutout()
    print(f"\n# cut-out: chelsea {cutout.rgba.shape[1]}×{cutout.rgba.shape[0]} px")
    bench_inflate(devices, [int(q) for q in args.qualities.split(",")], args.repeats, cutout)
    from tests.tiny_hunyuan3d import build_tiny_hunyuan3d

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_hunyuan3d(Path(tmp) / "hunyuan3d-dit-tiny")
        octrees = [int(o) for o in args.octree.split(",")]
        bench_hunyuan3d(model, variants, octrees, args.repeats, postprocess, cutout)
    if args.decoders:
        from bench import decoders

        torch.set_num_threads(CPU_THREADS)
        options = ["--published", "--octree", "128,256,384", "--budget-s", args.budget_s]
        decoders.main(options + (["--cpu-only"] if args.cpu_only else []))
    return status


if __name__ == "__main__":
    sys.exit(main())
