"""Command line: ``python -m serve_app COMMAND``.

``generate IMAGE [IMAGE ...] -o OUTDIR`` runs the pipeline in this process;
``--generator hunyuan3d --model-path DIR`` uses Hunyuan3D-2 from a local model directory
(config.yaml + weights); its parameters (``--steps``, ``--seed``, ...) default from
``--quality``. ``submit``, ``text``, ``texture-mesh``, ``status``, ``watch``, ``cancel``,
``download`` and ``deliveries`` use a running service (``serve_app.commands``). Exit codes:
0 done, 1 a job failed or was cancelled (or the service refused), 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from serve_app.commands import COMMANDS, add_commands, run_command
from serve_app.commands.common import UsageError
from serve_app.commands.flags import add_model_flags, model_values
from serve_app.commands.remote import view_paths
from serve_app.contracts.params import (
    OUTPUT_FORMATS,
    TUNABLE_PARAMETERS,
    Dimensions,
    GenerationParams,
    GeneratorName,
)
from serve_app.contracts.views import EXTRA_VIEWS
from serve_app.errors import OrfeasError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators.catalog import SPECS, resolve_params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serve_app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="turn photos into 3D models, in-process")
    gen.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    gen.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    gen.add_argument("--format", choices=OUTPUT_FORMATS, default="glb")
    add_model_flags(gen, GenerationParams, only=("quality",))
    add_model_flags(gen, Dimensions)
    gen.add_argument("--models-dir", type=Path, default=Path("models"))
    gen.add_argument(
        "--generator", choices=[name.value for name in SPECS], default=GeneratorName.INFLATE
    )
    gen.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    gen.add_argument(
        "--view",
        action="append",
        default=[],
        metavar="VIEW=PATH",
        dest="views",
        help="a photo of the subject from another view (left, back, right, top, bottom), "
        "with one IMAGE (the front); repeatable",
    )
    hy = gen.add_argument_group("hunyuan3d")
    hy.add_argument(
        "--model-path", type=Path, help="Hunyuan3D-2 (or, for hunyuan3d_mv, 2mv) model directory"
    )
    hy.add_argument("--dtype", choices=["auto", "float16", "float32", "bfloat16"], default="auto")
    tuning = gen.add_argument_group("generator parameters (defaults from --quality)")
    add_model_flags(tuning, GenerationParams, only=TUNABLE_PARAMETERS)
    commands.add_parser(
        "hash-key",
        help="read an API key from stdin, print the hash for security.api_key_hashes",
    )
    add_commands(commands)
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def generate(args: argparse.Namespace) -> int:
    hunyuan = (GeneratorName.HUNYUAN3D, GeneratorName.HUNYUAN3D_MV)
    if args.generator in hunyuan and args.model_path is None:
        return _fail(f"--generator {args.generator} needs --model-path DIR (config.yaml + weights)")
    generators: dict[str, object] = {}
    if args.model_path is not None:
        which = args.generator if args.generator in hunyuan else GeneratorName.HUNYUAN3D
        generators[str(which)] = {
            "model_path": args.model_path,
            "device": args.device,
            "dtype": args.dtype,
        }
    try:
        params = GenerationParams.model_validate(
            {**model_values(args, GenerationParams), "dimensions": model_values(args, Dimensions)}
        )
        config = PipelineConfig.model_validate(
            {
                "models_dir": args.models_dir,
                "generator": args.generator,
                "generators": generators,
                "device": args.device,
            }
        )
        # Checked here (a parameter the generator does not take is an error); the generator
        # fills in the rest with its own defaults: its checkpoint's variant, its device.
        resolve_params(args.generator, params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _fail(f"{where}: {first['msg']}")
    except OrfeasError as exc:
        return _fail(exc.message)

    try:
        view_files = view_paths(args.views, EXTRA_VIEWS)
    except UsageError as exc:
        return _fail(str(exc))
    if view_files and len(args.images) > 1:
        return _fail("--view goes with one IMAGE (the front view), not several")
    views = {view: path.read_bytes() for view, path in view_files.items()}

    from serve_app.pipeline.runner import Pipeline

    try:
        pipeline = Pipeline.from_config(config)
    except OrfeasError as exc:
        return _fail(exc.message)
    args.output.mkdir(parents=True, exist_ok=True)
    suffix = "_obj.zip" if args.format == "obj" else f".{args.format}"
    failures = 0
    for path in args.images:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            failures += 1
            continue
        start = time.perf_counter()
        try:
            result = pipeline.run(data, params, args.format, views=views)
        except OrfeasError as exc:
            print(f"error: {path}: {exc.message}", file=sys.stderr)
            failures += 1
            continue
        target = args.output / f"{path.stem}{suffix}"
        target.write_bytes(result.data)
        stages = "  ".join(f"{name} {sec:.3f}s" for name, sec in result.timings.items())
        total = time.perf_counter() - start
        print(f"{path} -> {target} ({len(result.mesh.faces)} faces, {total:.3f}s: {stages})")
    return 1 if failures else 0


def hash_key_command() -> int:
    """The config form of the key on stdin; the key itself never goes in a config file."""
    from serve_app.api.security import hash_key

    key = sys.stdin.readline().strip()
    if len(key) < 16:
        return _fail("an API key must be at least 16 characters")
    print(hash_key(key))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return generate(args)
    if args.command == "hash-key":
        return hash_key_command()
    if args.command in COMMANDS:
        return run_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
