"""Live progress of jobs: a rich progress bar per job on a terminal, plain lines elsewhere.

A bar shows the job's label, its stage (or its place in the queue, "queued, 3 ahead", or
its end), percent, and the service's ETA (from measured stage durations and, while queued,
the work ahead of it; not guessed here). Off a terminal each state, stage, place in the
queue and end is one line; with ``--json`` each event is a JSON line on stdout.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.progress import BarColumn, TaskID, TaskProgressColumn, TextColumn
from rich.progress import Progress as Bars
from rich.table import Column

from serve_app.client import JobEnded, JobEvent, JobState, Progress, StageChanged
from serve_app.commands.common import Output


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60}:{seconds % 60:02d}"


def queue_text(position: int | None) -> str:
    """A queued run's place in words: ``queued, 3 ahead`` (position 4), ``queued, next``."""
    if not position:
        return "queued"
    ahead = position - 1
    return f"queued, {ahead} ahead" if ahead else "queued, next"


def stage_text(event: JobEvent) -> str:
    job = event.job
    if not isinstance(event, JobEnded) and job.status.value == "queued":
        return queue_text(job.queue_position)
    if isinstance(event, JobEnded) or job.status.value == "uploaded":
        return job.status.value
    if job.cancel_requested:
        return "cancelling"
    return job.stage or job.status.value


def short(label: str, width: int = 32) -> str:
    """A label for a bar: a path's file name, at most ``width`` characters."""
    name = label.rsplit("/", 1)[-1] or label
    return name if len(name) <= width else name[: width - 1] + "…"


class JobBoard:
    """Shows the events of several jobs, each under its label."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._labels: dict[str, str] = {}
        self._tasks: dict[str, TaskID] = {}
        self._said: dict[str, str] = {}  # off a terminal: the last stage text per job
        self._bars: Bars | None = None
        if not output.json and output.console.is_terminal:
            fixed = Column(no_wrap=True)
            self._bars = Bars(
                TextColumn("{task.description}", table_column=Column(no_wrap=True, max_width=32)),
                TextColumn("{task.fields[stage]:<18}", table_column=fixed),
                BarColumn(bar_width=30),
                TaskProgressColumn(),
                TextColumn("ETA {task.fields[eta]}", table_column=fixed),
                console=output.console,
                refresh_per_second=8,
            )

    def __enter__(self) -> JobBoard:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def add(self, job_id: str, label: str) -> None:
        self._labels[job_id] = label
        if self._bars is not None:
            self._tasks[job_id] = self._bars.add_task(
                short(label), total=100, stage="submitted", eta="-"
            )

    def show(self, event: JobEvent) -> None:
        label = self._labels.get(event.job_id, event.job_id)
        if self.output.json:
            self.output.emit({**event.to_json(), "label": label})
            return
        task = self._tasks.get(event.job_id)
        if self._bars is not None and task is not None:
            eta = "done" if isinstance(event, JobEnded) else eta_text(event.job.eta_seconds)
            self._bars.update(task, completed=event.job.progress, stage=stage_text(event), eta=eta)
            if not isinstance(event, Progress):  # every stage drawn, however short
                self._bars.refresh()
        elif isinstance(event, JobState | StageChanged | JobEnded) or (
            self._said.get(event.job_id) != stage_text(event)  # a new place in the queue
        ):
            self._said[event.job_id] = stage_text(event)
            self.output.note(
                f"{label}: {stage_text(event)} {event.job.progress:.0f}%"
                f" (ETA {eta_text(event.job.eta_seconds)})"
            )

    def note(self, text: str, **record: Any) -> None:
        """A line about a job, above the bars (or a JSON line)."""
        if self.output.json:
            self.output.emit(record)
        elif self._bars is not None:
            self._bars.console.print(text, markup=False, soft_wrap=True)
        else:
            self.output.note(text)
