"""Typed job events, made from the successive states of a job (stream events or polls).

Every event carries the job's whole state (``job``, the API's ``JobStatusResponse``).
One state gives at most one event, the most telling of:

- :class:`JobEnded`: the job completed, failed or was cancelled; always the last event;
- :class:`JobState`: the first state seen, and each later change of status or run;
- :class:`StageChanged`: a new stage (``previous_stage`` says which one ended);
- :class:`Progress`: progress, ETA, queue position or a cancel request changed.

A state equal to the last one seen (a repeat after a reconnect) gives none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve_app.contracts.jobs import JobStatus
from serve_app.schemas.jobs import JobStatusResponse


@dataclass(frozen=True)
class JobEvent:
    """A change in a job, with its state after the change."""

    job: JobStatusResponse

    @property
    def kind(self) -> str:
        """``state``, ``stage``, ``progress`` or ``ended``: the event's name on the CLI's
        ``--json`` lines."""
        return _KINDS[type(self)]

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "job_id": self.job_id, "job": self.job.model_dump(mode="json")}


@dataclass(frozen=True)
class JobState(JobEvent):
    """The first state seen, or a new status (uploaded, queued, running) or run."""


@dataclass(frozen=True)
class StageChanged(JobEvent):
    """The run entered a new stage."""

    previous_stage: str | None = None


@dataclass(frozen=True)
class Progress(JobEvent):
    """Progress within a stage: percent, ETA, queue position, a cancel asked for."""


@dataclass(frozen=True)
class JobEnded(JobEvent):
    """The run ended: completed, failed or cancelled. The last event of a watch."""

    @property
    def completed(self) -> bool:
        return self.job.status is JobStatus.COMPLETED

    @property
    def error_code(self) -> str | None:
        return str(self.job.error["code"]) if self.job.error and "code" in self.job.error else None

    @property
    def error_message(self) -> str | None:
        if not self.job.error:
            return None
        return str(self.job.error.get("message", self.job.error.get("code", "")))


_KINDS: dict[type[JobEvent], str] = {
    JobEvent: "event",
    JobState: "state",
    StageChanged: "stage",
    Progress: "progress",
    JobEnded: "ended",
}

#: The fields whose change a Progress event reports.
_PROGRESS_FIELDS = ("progress", "eta_seconds", "queue_position", "cancel_requested")


class EventTracker:
    """Turns a job's successive states into events; remembers the last state seen."""

    def __init__(self) -> None:
        self.last: JobStatusResponse | None = None
        self.ended = False

    def update(self, job: JobStatusResponse) -> JobEvent | None:
        """The event ``job`` makes after the states seen before, or None (nothing new)."""
        if self.ended:
            return None
        previous, self.last = self.last, job
        if job.status.terminal:
            self.ended = True
            return JobEnded(job)
        if previous is None or (previous.status, previous.run) != (job.status, job.run):
            return JobState(job)
        if job.stage != previous.stage:
            return StageChanged(job, previous_stage=previous.stage)
        if any(getattr(job, f) != getattr(previous, f) for f in _PROGRESS_FIELDS):
            return Progress(job)
        return None
