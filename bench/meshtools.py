"""Mesh-tools benchmark: where decimation and previews should run, measured.

    .venv/bin/python bench/meshtools.py [--quality 8] [--target 5000] [--side 1024]

For a real model (the inflate pipeline on scikit-image's coffee), times optimize (pymeshlab)
and a preview (VTK over EGL), and how late an asyncio event loop's 5 ms ticks come while
each runs: in a thread of the loop's own process (what the ingress's threadpool would do)
and in a child process (what the MeshTools deployment is to the ingress). Also the memory
the two libraries add to a process that imports them. The figures decided that the work
runs in its own deployment, and decimation in a child process of it.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.contracts.variants import VariantOrder  # noqa: E402
from serve_app.meshtools.isolated import IsolatedWorker  # noqa: E402
from serve_app.meshtools.variants import PreviewOrder, VariantOperation, variant_id  # noqa: E402
from serve_app.pipeline.types import TexturedMesh  # noqa: E402
from serve_app.storage import ArtifactStore  # noqa: E402
from serve_app.work.meshtools import make_variant, render_to_store  # noqa: E402

TICK_S = 0.005
JOB = "0" * 32


async def loop_lag(work: Callable[[], object]) -> tuple[float, float, float]:
    """(seconds of work, p99 and max lateness of the loop's ticks in ms) while ``work``
    runs in a thread."""
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - start - TICK_S)

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    await asyncio.to_thread(work)
    seconds = time.perf_counter() - start
    done = True
    await task
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
    return seconds, 1000 * p99, 1000 * max(lags)


def import_cost(module: str) -> float:
    """MiB of resident memory that importing ``module`` adds to a fresh interpreter (its
    VmRSS: a child's peak RSS starts from its parent's)."""
    code = (
        "import importlib\n"
        "def rss():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(status.split('VmRSS:')[1].split()[0])\n"
        f"before = rss(); importlib.import_module('{module}'); print((rss() - before) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=8, help="inflate quality of the model")
    parser.add_argument("--target", type=int, default=5000, help="optimize's face target")
    parser.add_argument("--side", type=int, default=1024, help="preview side in pixels")
    args = parser.parse_args()

    from tests.meshes import pipeline_mesh

    mesh: TexturedMesh = pipeline_mesh("coffee", args.quality)
    root = Path(tempfile.mkdtemp(prefix="bench-meshtools-"))
    store = ArtifactStore(root)
    base = "b" * 64
    store.put_mesh(base, mesh.to_bytes())
    print(
        f"model: {len(mesh.faces)} faces, {len(mesh.vertices)} vertices (coffee, q{args.quality})"
    )
    for module in ("pymeshlab", "vtkmodules.vtkRenderingOpenGL2"):  # what the ingress avoids
        print(f"import {module}: +{import_cost(module):.0f} MiB resident")

    def order(target: int) -> VariantOrder:
        params = {"target_faces": target, "repair": True}
        vid = variant_id(JOB, base, VariantOperation.OPTIMIZE, params)
        return VariantOrder(JOB, vid, None, base, "optimize", params)

    from serve_app.config import MeshToolsConfig

    limits = MeshToolsConfig(timeout_s=600)
    child = IsolatedWorker("bench")
    fresh = iter(range(1, 1000))  # a new target or angle each time: never from the store
    child.call(make_variant, store, order(args.target - 1), limits, timeout_s=limits.timeout_s)

    def preview() -> None:
        render_to_store(store, PreviewOrder(base, args.side, args.side, float(next(fresh)), 20.0))

    def in_child() -> None:
        job = order(args.target + next(fresh))
        child.call(make_variant, store, job, limits, timeout_s=limits.timeout_s)

    def in_thread() -> None:
        make_variant(store, order(args.target + next(fresh)), limits)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("preview, in a thread of this process", preview),
        ("optimize, in a child process", in_child),
        ("optimize, in a thread of this process", in_thread),
    ]
    print(f"{'work':<40} {'seconds':>8} {'tick p99 ms':>12} {'tick max ms':>12}")
    for name, work in cases:
        runs = [asyncio.run(loop_lag(work)) for _ in range(2)]
        seconds = statistics.median(r[0] for r in runs)
        p99 = max(r[1] for r in runs)
        worst = max(r[2] for r in runs)
        print(f"{name:<40} {seconds:>8.2f} {p99:>12.1f} {worst:>12.1f}")
    child.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")
    # pymeshlab ran in a thread above: end without the interpreter's teardown, which
    # aborts after it (see serve_app/meshtools/isolated.py).
    sys.stdout.flush()
    import os

    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
