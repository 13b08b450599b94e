"""The job-id rule, the job statuses and the one table of legal transitions between them."""

from __future__ import annotations

import re
from enum import StrEnum

from serve_app.errors import ValidationFailedError

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def is_job_id(value: str) -> bool:
    """True for 32 lowercase hex characters, the only accepted job id."""
    return bool(_JOB_ID_RE.fullmatch(value))


def check_job_id(value: str) -> str:
    """Return ``value`` if it is a job id; raise a 422 before it can reach storage."""
    if not is_job_id(value):
        raise ValidationFailedError("job_id must be 32 lowercase hexadecimal characters")
    return value


class JobStatus(StrEnum):
    """Where a job stands. ``queued`` and ``running`` are active; the last three end a run."""

    UPLOADED = "uploaded"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """A run is under way: it holds a lease and counts against the queue bounds."""
        return self in ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


#: The one definition of "active": a run was accepted and has not ended.
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

#: Every legal transition. A new run may start from ``uploaded`` or from any ended run;
#: a running run goes back to ``queued`` only when it is retried after its worker was lost.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.UPLOADED: frozenset({JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset({JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[source]
