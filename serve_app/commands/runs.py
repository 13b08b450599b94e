"""Jobs a command starts, watched to their end and downloaded; Ctrl-C cancels them.

``start`` makes a job (upload and generate, or a text-to-image request), sets the run's
job id as soon as it is known and returns it; each job is then watched on the event
stream and, once completed, its file is downloaded. The first Ctrl-C (SIGINT) stops the
watching, cancels every job this command started that has not ended, and says so; the
command then exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from serve_app.client import AsyncOrfeasClient, ClientError, Conflict, JobEnded
from serve_app.client.base import default_name
from serve_app.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    Output,
    describe_error,
    error_fields,
)
from serve_app.commands.progress import JobBoard
from serve_app.contracts.jobs import JobStatus


class Submission(StrEnum):
    """Where a command's run stands before its job reports a status, or why it has none."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    #: The request was refused or the service could not be reached (or a file not read).
    ERROR = "error"


#: A run's status: its job's once the job reports one.
RunStatus = JobStatus | Submission


@dataclass
class Run:
    """One job of the command: what it came from and how it ended."""

    label: str
    #: Download the model (``format``) or, with None, the picture a text job made.
    format: str | None
    #: The directory its file goes to, under ``target``'s name or one made from its job id.
    out_dir: Path
    target: Path | None = None
    #: The photo it uploads, if any.
    source: Path | None = None
    job_id: str | None = None
    status: RunStatus = Submission.PENDING
    path: Path | None = None
    error: dict[str, Any] | None = field(default=None)

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "job_id": self.job_id,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "error": self.error,
        }


Starter = Callable[[AsyncOrfeasClient, Run], Awaitable[str]]


class Runner:
    """Runs jobs side by side under one board; ``key_given`` words 401 messages."""

    def __init__(self, client: AsyncOrfeasClient, output: Output, key_given: bool) -> None:
        self.client = client
        self.output = output
        self.key_given = key_given
        self.board = JobBoard(output)

    async def run(self, runs: list[Run], start: Starter) -> int:
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        try:
            with self.board:
                tasks = [asyncio.create_task(self._one(run, start)) for run in runs]
                stop: asyncio.Future[Any] = asyncio.create_task(interrupted.wait())
                every: asyncio.Future[Any] = asyncio.gather(*tasks)
                await asyncio.wait([stop, every], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if every.done():
                    every.result()  # a bug in a run surfaces here, not in silence
                if interrupted.is_set():
                    loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C ends it hard
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await self._cancel_started(runs)
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
        return self._report(runs)

    async def _one(self, run: Run, start: Starter) -> None:
        try:
            run.status = Submission.SUBMITTING
            run.job_id = await start(self.client, run)
            run.status = Submission.SUBMITTED
            self.board.add(run.job_id, run.label)
            self.board.note(
                f"{run.label}: job {run.job_id}",
                type="submitted",
                label=run.label,
                job_id=run.job_id,
            )
            async for event in self.client.watch(run.job_id):
                self.board.show(event)
                if isinstance(event, JobEnded):
                    run.status = event.job.status
                    run.error = event.job.error
            if run.status is JobStatus.COMPLETED:
                run.path = await self._download(run)
        except ClientError as error:
            run.status = Submission.ERROR
            run.error = {"message": describe_error(error, self.key_given), **error_fields(error)}
        except OSError as error:  # the photo could not be read, the model not written
            run.status = Submission.ERROR
            run.error = {"message": f"{error.filename or run.label}: {error.strerror or error}"}

    async def _download(self, run: Run) -> Path:
        assert run.job_id is not None
        if run.target is not None:
            target = run.target
        elif run.format is None:
            target = run.out_dir / f"{run.job_id}.png"
        else:
            target = run.out_dir / default_name(run.job_id, run.format)
        if run.format is None:
            path = await self.client.download_image(run.job_id, target)
        else:
            path = await self.client.download(run.job_id, run.format, target)
        record = {"type": "downloaded", "label": run.label, "job_id": run.job_id}
        self.board.note(f"{run.label}: saved {path}", **record, path=str(path))
        return path

    async def _cancel_started(self, runs: list[Run]) -> None:
        """Cancel what this command started and has not seen end."""
        for run in runs:
            if run.job_id is None or run.status not in (
                Submission.SUBMITTED,
                Submission.SUBMITTING,
            ):
                if run.status in (Submission.SUBMITTING, Submission.PENDING):
                    run.status = JobStatus.CANCELLED
                continue
            try:
                job = await self.client.cancel(run.job_id)
                run.status = job.status
            except Conflict:  # it ended (or never started) meanwhile
                job = await self.client.status(run.job_id)
                run.status = job.status if job.status.terminal else JobStatus.CANCELLED
            except ClientError as error:
                run.status = Submission.ERROR
                run.error = {
                    "message": describe_error(error, self.key_given),
                    **error_fields(error),
                }
                continue
            record = {"type": "cancelled", "label": run.label, "job_id": run.job_id}
            self.board.note(f"{run.label}: cancelled job {run.job_id}", **record, status=run.status)

    def _report(self, runs: list[Run]) -> int:
        failed = [run for run in runs if run.status is not JobStatus.COMPLETED]
        code = EXIT_FAILED if failed else EXIT_OK
        self.output.emit(
            {"type": "result", "exit_code": code, "jobs": [run.record() for run in runs]}
        )
        if self.output.json:
            return code
        for run in runs:
            if run.status is JobStatus.COMPLETED:
                self.output.result(f"{run.label}: completed -> {run.path}")
            elif run.error:
                self.output.error(f"{run.label}: {ended_text(run.status, run.error)}")
            else:
                self.output.error(f"{run.label}: {run.status} (job {run.job_id})")
        return code


def ended_text(status: str, error: dict[str, Any]) -> str:
    """Why a job did not complete, for people: where it stopped, the code and the message
    (``failed in background_removal (no_subject): no subject found ...``); a refused request
    (``error``) is its message alone."""
    message = error.get("message") or error.get("code")
    if status == Submission.ERROR:
        return str(message)
    where = f" in {error['stage']}" if error.get("stage") else ""
    code = error.get("code")
    why = f" ({code})" if code and code != status else ""
    return f"{status}{where}{why}: {message}"
