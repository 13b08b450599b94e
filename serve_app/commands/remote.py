"""The commands that talk to a running service: submit, texture-mesh, text, status, watch,
cancel, download (and deliveries, in ``serve_app.commands.webhooks``).

``--json`` output, one JSON object per line on stdout:

- ``submit``, ``texture-mesh`` and ``text``: ``{"type": "submitted", "label", "job_id"}``
  per job, then its events ``{"type": "state"|"stage"|"progress"|"ended", "label",
  "job_id", "job"}``
  (``job`` is the body of ``GET /api/job-status/{id}``), ``{"type": "downloaded", "label",
  "job_id", "path"}``, on Ctrl-C ``{"type": "cancelled", ...}``, and last ``{"type":
  "result", "exit_code", "jobs": [{"label", "job_id", "status", "path", "error"}]}``;
- ``watch``: the events, then ``{"type": "result", "exit_code", "job"}``;
- ``status`` and ``cancel``: the job's status body; ``download``: ``{"type":
  "downloaded", "job_id", "format", "path", "size_bytes"}``;
- ``deliveries``: a line per webhook delivery (see ``serve_app.commands.webhooks``);
- a refused request: ``{"type": "error", "message", "status", "code", "retry_after"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serve_app.client import AsyncOrfeasClient, ClientError, JobEnded, OrfeasClient, calls
from serve_app.client.base import default_name
from serve_app.client.calls import job_path_id
from serve_app.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Output,
    UsageError,
    add_connection_options,
    client_options,
    describe_error,
    error_fields,
)
from serve_app.commands.flags import add_model_flags, model_values
from serve_app.commands.progress import JobBoard, eta_text, stage_text
from serve_app.commands.runs import Run, Runner, Starter
from serve_app.commands.webhooks import add_deliveries_command, deliveries
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import OUTPUT_FORMATS, TUNABLE_PARAMETERS, Dimensions
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.views import EXTRA_VIEWS, VIEW_NAMES, ViewName
from serve_app.schemas.jobs import Callback, GenerateOptions, TextureMeshParams

COMMANDS = (
    "submit",
    "texture-mesh",
    "text",
    "status",
    "watch",
    "cancel",
    "download",
    "deliveries",
)
#: The flags of GenerateOptions that ``submit`` and ``text --3d`` share.
MODEL_OPTIONS = ("format", "quality", "generator")


def add_commands(commands: Any) -> None:
    """Add the service commands to the CLI's subparsers."""
    sub = commands.add_parser(
        "submit", help="upload photos to a service, watch their jobs, download the models"
    )
    sub.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    sub.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR")
    _model_options(sub)
    add_model_flags(sub.add_argument_group("model size, mm"), Dimensions)
    tuning = sub.add_argument_group("generator parameters (defaults from --quality)")
    add_model_flags(tuning, GenerateOptions, only=TUNABLE_PARAMETERS)
    add_view_flag(
        sub,
        "a photo of the subject from another view (left, back, right, top, "
        "bottom), with one IMAGE (the front); repeatable",
    )
    add_callback_flag(sub)
    add_connection_options(sub)

    tex = commands.add_parser(
        "texture-mesh", help="texture a mesh file from photos by view, download the model"
    )
    tex.add_argument("mesh", type=Path, metavar="MESH", help="STL, OBJ, PLY or GLB")
    tex.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR")
    add_model_flags(tex, GenerateOptions, only=("format", "quality"))
    add_view_flag(
        tex,
        "a photo of the subject from a view (front, left, back, right, top, "
        "bottom); 1 to 6, repeatable",
    )
    add_callback_flag(tex)
    add_connection_options(tex)

    text = commands.add_parser("text", help="a picture from a prompt (with --3d, a model)")
    text.add_argument("prompt", metavar="PROMPT")
    text.add_argument("--3d", dest="make_3d", action="store_true", help="go on to a 3D model")
    text.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR")
    _model_options(text)
    add_model_flags(text.add_argument_group("picture"), TextToImageParams, exclude=("prompt",))
    add_callback_flag(text)
    add_connection_options(text)

    for name, what in (
        ("status", "a job's status"),
        ("watch", "a job's progress until it ends"),
        ("cancel", "cancel a queued or running job"),
    ):
        parser = commands.add_parser(name, help=what)
        parser.add_argument("job_id", metavar="JOB")
        add_connection_options(parser)

    down = commands.add_parser("download", help="a completed job's model")
    down.add_argument("job_id", metavar="JOB")
    down.add_argument(
        "format", choices=OUTPUT_FORMATS, metavar="FORMAT", help=", ".join(OUTPUT_FORMATS)
    )
    down.add_argument("-o", "--output", type=Path, metavar="PATH", help="a file or directory")
    down.add_argument("--variant", help="a variant id of the job's model")
    add_connection_options(down)
    add_deliveries_command(commands)


def add_callback_flag(parser: argparse.ArgumentParser) -> None:
    """``--callback-url URL``: a webhook for each job the command starts."""
    add_model_flags(parser, Callback, metavars={"callback_url": "URL"})


def add_view_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--view", action="append", default=[], metavar="VIEW=PATH", help=what, dest="views"
    )


def view_paths(given: list[str], allowed: tuple[ViewName, ...]) -> dict[str, Path]:
    """``--view VIEW=PATH`` flags as paths by view name; a usage error for a malformed
    flag, a view that is not one of ``allowed``, one given twice or a missing file."""
    views: dict[str, Path] = {}
    for flag in given:
        view, sep, path = flag.partition("=")
        if not sep or not path:
            raise UsageError(f"--view {flag}: write VIEW=PATH, e.g. --view left=left.jpg")
        if view not in allowed:
            raise UsageError(
                f"--view {flag}: {view!r} is not a view here; the views: " + ", ".join(allowed)
            )
        if view in views:
            raise UsageError(f"--view {flag}: the {view} view is given twice")
        if not Path(path).is_file():
            raise UsageError(f"--view {flag}: {path}: no such file")
        views[view] = Path(path)
    return views


def _model_options(parser: argparse.ArgumentParser) -> None:
    add_model_flags(parser, GenerateOptions, only=MODEL_OPTIONS)


def run_command(args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; the exit code."""
    output = Output(args.json)
    try:
        handler = {
            "submit": submit,
            "texture-mesh": texture_mesh,
            "text": text,
            "status": status,
            "watch": watch,
            "cancel": cancel,
            "download": download,
            "deliveries": deliveries,
        }[args.command]
        return handler(args, output)
    except UsageError as exc:
        Output(False).error(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        output.error(describe_error(exc, api_key_given(args)), **error_fields(exc))
        return EXIT_FAILED


def api_key_given(args: argparse.Namespace) -> bool:
    try:
        return client_options(args)["api_key"] is not None
    except UsageError:
        return False


def _options(args: argparse.Namespace, dimensions: bool) -> GenerateOptions:
    """The model options given on the command line (``dimensions`` and the generator
    parameters only where the command has them: ``text`` uses their names for its
    picture)."""
    names = (*MODEL_OPTIONS, *TUNABLE_PARAMETERS) if dimensions else MODEL_OPTIONS
    fields: dict[str, Any] = model_values(args, GenerateOptions, names)
    if dimensions:
        fields["dimensions"] = model_values(args, Dimensions)
    try:
        return GenerateOptions.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(_first_error(exc)) from None


def _callback_url(args: argparse.Namespace) -> str | None:
    """``--callback-url``, checked by the API's own field."""
    try:
        return Callback.model_validate(model_values(args, Callback)).callback_url
    except ValidationError as exc:
        raise UsageError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _job_id(value: str) -> str:
    try:
        return job_path_id(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def submit(args: argparse.Namespace, output: Output) -> int:
    options = _options(args, dimensions=True)
    callback_url = _callback_url(args)
    for image in args.images:
        if not image.is_file():
            raise UsageError(f"{image}: no such file")
    views = view_paths(args.views, EXTRA_VIEWS)
    if views and len(args.images) > 1:
        raise UsageError("--view goes with one IMAGE (the front view), not several")
    targets = _targets(args.images, args.output, options.format)
    runs = [
        Run(str(image), options.format, args.output, target=target, source=image)
        for image, target in zip(args.images, targets, strict=True)
    ]

    async def start(client: AsyncOrfeasClient, run: Run) -> str:
        assert run.source is not None
        upload = await client.upload(run.source, views=dict(views))
        run.job_id = upload.job_id
        job = await client.generate(upload.job_id, options, callback_url=callback_url)
        return job.job_id

    return _run_jobs(args, output, runs, start)


def texture_mesh(args: argparse.Namespace, output: Output) -> int:
    if not args.mesh.is_file():
        raise UsageError(f"{args.mesh}: no such file")
    views = view_paths(args.views, VIEW_NAMES)
    if not views:
        raise UsageError("texture-mesh needs at least one --view VIEW=PATH (e.g. front=a.jpg)")
    fields = model_values(args, GenerateOptions, ("format", "quality"))
    fields.update(model_values(args, Callback))
    try:
        params = TextureMeshParams.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(_first_error(exc)) from None
    (target,) = _targets([args.mesh], args.output, params.format)
    runs = [Run(str(args.mesh), params.format, args.output, target=target, source=args.mesh)]

    async def start(client: AsyncOrfeasClient, run: Run) -> str:
        assert run.source is not None
        job = await client.texture_mesh(run.source, dict(views), **params.model_dump())
        run.job_id = job.job_id
        return job.job_id

    return _run_jobs(args, output, runs, start)


def _targets(images: list[Path], out_dir: Path, fmt: str) -> list[Path]:
    """``DIR/<stem>.<ext>`` per image (``_obj.zip`` for OBJ); a repeated stem gets a number."""
    suffix = default_name("", fmt)
    seen: dict[str, int] = {}
    targets = []
    for image in images:
        count = seen[image.stem] = seen.get(image.stem, 0) + 1
        stem = image.stem if count == 1 else f"{image.stem}-{count}"
        targets.append(out_dir / f"{stem}{suffix}")
    return targets


def text(args: argparse.Namespace, output: Output) -> int:
    options = _options(args, dimensions=False) if args.make_3d else None
    # The prompt is the positional argument; the flags are the rest of the model's fields.
    params = {k: v for k, v in model_values(args, TextToImageParams).items() if k != "prompt"}
    callback_url = _callback_url(args)
    fmt = options.format if options else None
    try:  # the prompt and parameters, checked before anything is sent
        calls.text_to_image(args.prompt, options, params, callback_url)
    except ValidationError as exc:
        raise UsageError(_first_error(exc)) from None
    run = Run(_label(args.prompt), fmt, args.output)

    async def start(client: AsyncOrfeasClient, run: Run) -> str:
        job = await client.text_to_image(
            args.prompt, generate_3d=options, callback_url=callback_url, **params
        )
        return job.job_id

    return _run_jobs(args, output, [run], start)


def _label(prompt: str) -> str:
    """A prompt as a job's label: one line, at most 40 characters."""
    flat = " ".join(prompt.split())
    return repr(flat if len(flat) <= 40 else flat[:39] + "…")


def _run_jobs(args: argparse.Namespace, output: Output, runs: list[Run], start: Starter) -> int:
    options = client_options(args)
    key_given = options["api_key"] is not None
    args.output.mkdir(parents=True, exist_ok=True)

    async def main() -> int:
        async with AsyncOrfeasClient(**options) as client:
            return await Runner(client, output, key_given).run(runs, start)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # a second Ctrl-C, while the first one's cancels went out
        output.error("interrupted again: jobs not yet cancelled may still run")
        return EXIT_FAILED


def status(args: argparse.Namespace, output: Output) -> int:
    job_id = _job_id(args.job_id)
    with OrfeasClient(**client_options(args)) as client:
        job = client.status(job_id)
    output.emit(job.model_dump(mode="json"))
    where = f", {job.stage}" if job.stage and job.status.active else ""
    line = f"job {job.job_id}: {job.status.value}{where} {job.progress:.0f}%"
    if job.status.active:
        line += f", ETA {eta_text(job.eta_seconds)}"
    if job.error:
        line += f": {job.error.get('message', job.error.get('code'))}"
    if job.download_url:
        line += f" ({job.download_url})"
    output.result(line)
    return EXIT_OK


def watch(args: argparse.Namespace, output: Output) -> int:
    job_id = _job_id(args.job_id)
    options = client_options(args)

    async def main() -> int:
        ended: JobEnded | None = None
        async with AsyncOrfeasClient(**options) as client:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            assert task is not None
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            try:
                with JobBoard(output) as board:
                    board.add(job_id, job_id)
                    async for event in client.watch(job_id):
                        board.show(event)
                        if isinstance(event, JobEnded):
                            ended = event
            except asyncio.CancelledError:
                output.note(f"stopped watching; job {job_id} goes on")
            finally:
                loop.remove_signal_handler(signal.SIGINT)
        code = EXIT_OK if ended is not None and ended.completed else EXIT_FAILED
        job = ended.job.model_dump(mode="json") if ended else None
        output.emit({"type": "result", "exit_code": code, "job": job})
        if ended is not None:
            output.result(f"job {job_id}: {stage_text(ended)}")
        return code

    return asyncio.run(main())


def cancel(args: argparse.Namespace, output: Output) -> int:
    job_id = _job_id(args.job_id)
    with OrfeasClient(**client_options(args)) as client:
        job = client.cancel(job_id)
    output.emit(job.model_dump(mode="json"))
    output.result(f"job {job_id}: {job.status.value}")
    return EXIT_OK if job.status is JobStatus.CANCELLED else EXIT_FAILED


def download(args: argparse.Namespace, output: Output) -> int:
    job_id = _job_id(args.job_id)
    with OrfeasClient(**client_options(args)) as client:
        try:
            path = client.download(job_id, args.format, args.output, variant=args.variant)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    size = path.stat().st_size
    record = {"type": "downloaded", "job_id": job_id, "format": args.format, "path": str(path)}
    output.emit({**record, "size_bytes": size})
    output.result(f"{path} ({size} bytes)")
    return EXIT_OK
