"""The registry's change feed (what ingress replicas follow) and bounded per-job event logs.

Every published change of a job gets the next position of one registry-wide sequence and
is kept in a ring of recent changes; the position is the snapshot's ``version``. A reader
(an ingress replica's job view) asks for the changes after the position it has; the
answer comes as soon as there is one, or empty after a wait. A reader that fell behind the
ring, or that knew an earlier registry (the ``epoch`` changes with every start), is told
to list every job again. Positions start from the registry's start time in microseconds,
so a job's versions keep growing across registry restarts (unless a registry published
more than a million changes a second).

Both live in the registry actor and are used from its one event loop: a publish wakes
every waiting reader at once (one ``asyncio.Event`` per generation of changes).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from serve_app.contracts.stages import Stage
from serve_app.registry.jobs import JobSnapshot

#: Changes kept for readers that fall behind; beyond it they resynchronise.
CHANGES_KEPT = 8192
#: Most changes in one reply (a reader that is further behind asks again at once).
MAX_BATCH = 2000
#: Log entries kept per job; older ones are dropped (and counted).
LOG_SIZE = 200


@dataclass(frozen=True)
class Change:
    """Position ``seq`` of the feed: ``job_id``'s new state, or None when it was forgotten."""

    seq: int
    job_id: str
    snapshot: JobSnapshot | None


@dataclass(frozen=True)
class Changes:
    """A reply of the feed: the changes after the reader's position, up to ``seq``.

    ``reset`` means the reader cannot catch up from its position (it fell behind the
    ring, or ``epoch`` names a registry it did not know): it must list every job again.
    ``complete`` is False when more changes wait (the reply was cut at its limit).
    """

    epoch: str
    seq: int
    changes: tuple[Change, ...] = ()
    reset: bool = False
    complete: bool = True


class ChangeFeed:
    """The registry-wide sequence of job changes and a ring of the recent ones."""

    def __init__(self, kept: int = CHANGES_KEPT, clock: Callable[[], int] = time.time_ns) -> None:
        """``clock`` is the wall clock in nanoseconds: the feed's first position is its
        reading in microseconds."""
        self.epoch = uuid.uuid4().hex
        self.seq = clock() // 1000
        self._ring: deque[Change] = deque(maxlen=kept)
        self._changed = asyncio.Event()

    def publish(self, job_id: str, snapshot: JobSnapshot | None) -> JobSnapshot | None:
        """Append a change; return the snapshot stamped with its position (its version)."""
        self.seq += 1
        if snapshot is not None:
            snapshot = replace(snapshot, version=self.seq)
        self._ring.append(Change(self.seq, job_id, snapshot))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return snapshot

    async def wait(self, seq: int, timeout_s: float) -> bool:
        """Wait until something after ``seq`` is published; False on timeout."""
        if self.seq > seq:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    async def read(
        self, epoch: str | None, since: int, timeout_s: float, limit: int = MAX_BATCH
    ) -> Changes:
        """The changes after ``since``, waiting up to ``timeout_s`` for the first one."""
        if epoch != self.epoch or since > self.seq or since < self._first() - 1:
            return Changes(self.epoch, self.seq, reset=True)
        if since == self.seq:
            await self.wait(since, timeout_s)
        behind = self.seq - since
        if behind <= limit:  # the usual reader, near the end: no walk over the whole ring
            batch = tuple(itertools.islice(reversed(self._ring), behind))[::-1]
        else:
            skip = since - self._first() + 1
            batch = tuple(itertools.islice(self._ring, skip, skip + limit))
        seq = batch[-1].seq if batch else since
        return Changes(self.epoch, seq, batch, complete=seq == self.seq)

    def _first(self) -> int:
        """The position of the oldest change kept (``seq + 1`` while none is)."""
        return self._ring[0].seq if self._ring else self.seq + 1


@dataclass(frozen=True)
class LogEntry:
    """One line of a job's event log."""

    time: float
    run: int
    event: str
    message: str
    stage: Stage | None = None


@dataclass(frozen=True)
class JobLog:
    """A job's recent log entries, oldest first, and how many older ones were dropped."""

    job_id: str
    entries: tuple[LogEntry, ...]
    dropped: int


class _Log:
    def __init__(self, size: int) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=size)
        self.written = 0


class JobLogs:
    """The bounded event log of every job the registry knows, created on first use."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self.size = size
        self._logs: dict[str, _Log] = {}

    def __len__(self) -> int:
        return len(self._logs)

    def log(
        self, job_id: str, run: int, event: str, message: str, stage: Stage | None = None
    ) -> None:
        log = self._logs.get(job_id)
        if log is None:
            log = self._logs[job_id] = _Log(self.size)
        log.entries.append(LogEntry(time.time(), run, event, message, stage))
        log.written += 1

    def read(self, job_id: str) -> JobLog:
        log = self._logs.get(job_id)
        if log is None:
            return JobLog(job_id=job_id, entries=(), dropped=0)
        entries = tuple(log.entries)
        return JobLog(job_id=job_id, entries=entries, dropped=log.written - len(entries))

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._logs.pop(job_id, None)
