"""Per-job change feeds (what live watchers wait on) and bounded per-job event logs.

Both live in the registry actor and are used from its one event loop: a publish bumps the
job's version, keeps the snapshot in a short history and wakes every waiting watcher at
once (one ``asyncio.Event`` per generation of changes, replaced on each publish).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.registry.jobs import JobSnapshot

#: Snapshots kept per job for watchers that fall behind by a few changes.
HISTORY_SIZE = 64
#: Log entries kept per job; older ones are dropped (and counted).
LOG_SIZE = 200


@dataclass(frozen=True)
class LogEntry:
    """One line of a job's event log."""

    time: float
    run: int
    event: str
    message: str
    stage: str | None = None


@dataclass(frozen=True)
class JobLog:
    """A job's recent log entries, oldest first, and how many older ones were dropped."""

    job_id: str
    entries: tuple[LogEntry, ...]
    dropped: int


@dataclass(frozen=True)
class WatchReply:
    """What a watcher gets: the job's version now and the snapshots it has not seen yet.

    Empty ``snapshots`` means nothing changed before the wait timed out (a keep-alive).
    """

    version: int
    snapshots: tuple[JobSnapshot, ...]


class JobFeed:
    """One job's change counter, recent snapshots, watchers and log."""

    def __init__(self, history_size: int = HISTORY_SIZE, log_size: int = LOG_SIZE) -> None:
        self.version = 0
        self.watchers = 0
        self._history: deque[tuple[int, JobSnapshot]] = deque(maxlen=history_size)
        self._changed = asyncio.Event()
        self._log: deque[LogEntry] = deque(maxlen=log_size)
        self._logged = 0

    def publish(self, snapshot: JobSnapshot) -> int:
        self.version += 1
        self._history.append((self.version, snapshot))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.version

    def since(self, version: int) -> tuple[JobSnapshot, ...]:
        """Snapshots published after ``version`` that are still in the history."""
        return tuple(snap for v, snap in self._history if v > version)

    async def wait(self, version: int, timeout_s: float) -> bool:
        """Wait until something newer than ``version`` is published; False on timeout."""
        if self.version > version:
            return True
        changed = self._changed
        self.watchers += 1
        try:
            await asyncio.wait_for(changed.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        finally:
            self.watchers -= 1
        return True

    def log(self, entry: LogEntry) -> None:
        self._log.append(entry)
        self._logged += 1

    def read_log(self, job_id: str) -> JobLog:
        entries = tuple(self._log)
        return JobLog(job_id=job_id, entries=entries, dropped=self._logged - len(entries))


class JobFeeds:
    """The feeds of every job the registry knows, created on first use."""

    def __init__(self, history_size: int = HISTORY_SIZE, log_size: int = LOG_SIZE) -> None:
        self.history_size = history_size
        self.log_size = log_size
        self._feeds: dict[str, JobFeed] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._feeds

    def __len__(self) -> int:
        return len(self._feeds)

    def get(self, job_id: str) -> JobFeed:
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = JobFeed(self.history_size, self.log_size)
        return feed

    def peek(self, job_id: str) -> JobFeed | None:
        return self._feeds.get(job_id)

    def log(
        self, job_id: str, run: int, event: str, message: str, stage: str | None = None
    ) -> None:
        self.get(job_id).log(LogEntry(time.time(), run, event, message, stage))

    def forget(self, keep: Callable[[str], bool]) -> int:
        """Drop the feeds of jobs for which ``keep`` is false and nobody waits; count them."""
        gone = [j for j, f in self._feeds.items() if f.watchers == 0 and not keep(j)]
        for job_id in gone:
            del self._feeds[job_id]
        return len(gone)
