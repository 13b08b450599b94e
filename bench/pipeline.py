"""Pipeline benchmark: per-stage times, end-to-end p50 per quality, cost against pixel count.

    .venv/bin/python bench/pipeline.py [--repeats 5] [--qualities 1,5,10] [--format glb]
    .venv/bin/python bench/pipeline.py --overlap [--jobs 4] [--octree 64] [--steps 5]

Targets (2-core CPU): default quality p50 ≤ 1.0 s for a 512-px photo, quality 10 ≤ 8 s,
peak RSS ≤ 2 GiB, cost growing about linearly with pixel count.

``--overlap``: jobs per minute of a ShapeTexture replica's work (shape, texture, export of one
cut-out) with the tests' tiny Hunyuan3D-2 at quality 5, in this process: one job at a time;
``--jobs`` at once as before (the replica's lock around the whole job); and as now (two runs
per replica, the generator's lock around its device section only), in the same run. On CUDA
also the peak GPU memory of one job and of the overlapping runs.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.contracts.params import GenerationParams  # noqa: E402
from serve_app.contracts.stages import MODEL_STAGES  # noqa: E402
from serve_app.pipeline.config import PipelineConfig  # noqa: E402
from serve_app.pipeline.runner import Pipeline  # noqa: E402

PHOTOS = ("chelsea", "astronaut", "coffee")


def photo_at(name: str, side: int) -> bytes:
    """The photo resized so its longest side is ``side`` pixels, as PNG bytes."""
    image = Image.fromarray(getattr(data, name)()[..., :3])
    k = side / max(image.size)
    image = image.resize(
        (round(image.width * k), round(image.height * k)), Image.Resampling.LANCZOS
    )
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def overlap(args: argparse.Namespace) -> int:
    """Jobs per minute: one at a time, ``--jobs`` at once before and after the overlap."""
    import tempfile
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from serve_app.pipeline.config import Hunyuan3DSettings
    from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator
    from serve_app.pipeline.runner import ModelBuilder, export_stage
    from serve_app.pipeline.types import CutOut
    from tests.support import ellipse_cutout
    from tests.tiny_hunyuan3d import build_tiny_hunyuan3d

    rgba = ellipse_cutout()
    cutout = CutOut(rgba=rgba, mask=rgba[..., 3] > 0, source="alpha")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_hunyuan3d(Path(tmp) / "tiny")
        settings = Hunyuan3DSettings(model_path=model, postprocess="fast-simplification")
        generator = Hunyuan3DGenerator(settings)
    builder = ModelBuilder(generator)
    cuda = generator.device.type == "cuda"
    tuning = {k: v for k, v in (("octree_resolution", args.octree), ("steps", args.steps)) if v}
    whole_job = threading.Lock()

    def job(seed: int, lock: threading.Lock | None) -> None:
        params = GenerationParams(quality=5, seed=seed, **tuning)
        if lock is None:
            export_stage(builder.build(cutout, params), "glb")
            return
        with lock:
            export_stage(builder.build(cutout, params), "glb")

    def timed(workers: int, lock: threading.Lock | None) -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda seed: job(seed, lock), range(args.jobs)))
        seconds = time.perf_counter() - start
        return seconds, torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")

    modes = {
        "one at a time": (1, None),
        f"{args.jobs} at once, before (lock around the whole job)": (2, whole_job),
        f"{args.jobs} at once, now (two runs, device section locked)": (2, None),
    }
    job(99, None)  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in modes}
    for _ in range(args.rounds):  # the modes interleaved, so a busy spell hits them alike
        for label, (workers, lock) in modes.items():
            runs[label].append(timed(workers, lock))
    print(
        f"# hunyuan3d (tiny) quality 5 {tuning or ''} on {generator.device}, "
        f"{torch.get_num_threads()} threads; shape + texture + export per job; "
        f"median of {args.rounds} rounds, the modes interleaved"
    )
    print("| how | jobs | s | jobs/min | GPU peak MiB |")
    print("|---|---|---|---|---|")
    for label, found in runs.items():
        seconds = statistics.median(s for s, _ in found)
        peak = max(p for _, p in found)
        mib = f"{peak:.0f}" if cuda else "–"
        print(f"| {label} | {args.jobs} | {seconds:.1f} | {60 * args.jobs / seconds:.2f} | {mib} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlap", action="store_true", help="replica throughput only")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="--overlap: rounds of each mode")
    parser.add_argument("--octree", type=int, default=None, help="--overlap: octree_resolution")
    parser.add_argument("--steps", type=int, default=None, help="--overlap: denoising steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--qualities", default="1,3,5,8,10")
    parser.add_argument("--format", default="glb")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    if args.overlap:
        return overlap(args)

    pipeline = Pipeline.from_config(PipelineConfig(models_dir=args.models_dir))
    pipeline.run(photo_at("coffee", 256), GenerationParams(quality=1))  # warm-up

    print(
        f"# end to end, 512-px photos {', '.join(PHOTOS)}, format {args.format}, "
        f"{args.repeats} runs each"
    )
    header = f"{'quality':>7} {'p50 s':>7} {'max s':>7} " + " ".join(
        f"{s.value[:12]:>12}" for s in MODEL_STAGES
    )
    print(header)
    inputs = {name: photo_at(name, 512) for name in PHOTOS}
    p50s = {}
    for quality in [int(q) for q in args.qualities.split(",")]:
        totals, stages = [], {s.value: [] for s in MODEL_STAGES}
        for _ in range(args.repeats):
            for raw in inputs.values():
                start = time.perf_counter()
                result = pipeline.run(raw, GenerationParams(quality=quality), args.format)
                totals.append(time.perf_counter() - start)
                for stage, sec in result.timings.items():
                    stages[stage].append(sec)
        p50s[quality] = statistics.median(totals)
        print(
            f"{quality:>7} {p50s[quality]:>7.3f} {max(totals):>7.3f} "
            + " ".join(f"{statistics.median(v):>12.3f}" for v in stages.values())
        )

    print("\n# cost against pixel count (astronaut, quality 5)")
    print(f"{'side':>6} {'pixels':>9} {'p50 s':>7} {'s/Mpx':>7}")
    sides, times = [], []
    for side in (256, 512, 1024, 2048):
        raw = photo_at("astronaut", side)
        runs = []
        for _ in range(max(2, args.repeats // 2)):
            start = time.perf_counter()
            pipeline.run(raw, GenerationParams(), args.format)
            runs.append(time.perf_counter() - start)
        t = statistics.median(runs)
        sides.append(side)
        times.append(t)
        print(f"{side:>6} {side * side:>9} {t:>7.3f} {t / (side * side / 1e6):>7.2f}")
    pixels = np.array(sides, float) ** 2
    slope, intercept = np.polyfit(pixels / 1e6, times, 1)
    print(f"linear fit: {intercept:.3f} s + {slope:.3f} s/Mpx")
    print(f"\npeak RSS: {peak_rss_mib():.0f} MiB")
    default = p50s.get(5)
    if default is not None:
        print(f"default quality p50: {default:.3f} s (target ≤ 1.0 s)")
    if 10 in p50s:
        print(f"quality 10 p50: {p50s[10]:.3f} s (target ≤ 8 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
