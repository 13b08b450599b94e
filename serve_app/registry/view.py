"""JobView: what one ingress replica knows of every job, kept current by the change feed.

Each ingress replica follows the registry's change feed (``JobRegistry.changes``) with one
long-poll at a time and keeps the latest snapshot of every job the registry holds in
memory. Status reads, job lists and the live streams of the replica are answered from it,
without a registry call. Freshness:

- A change reaches every replica one feed round trip after the registry made it
  (milliseconds): the registry answers a waiting poll as soon as it publishes. A replica
  polls again no sooner than ``POLL_GAP_S`` after a poll that brought changes, so under
  load a change may wait that much longer and one reply carries many.
- The replica that made a change (an upload, a submit, a cancel) applies the registry's
  answer at once, so its own next read shows it (read-your-writes).
- The view counts as fresh while its last feed reply was asked for no more than
  ``staleness_s`` ago; it then reflects every change the registry made before that. While
  it is not (the registry restarting, say), each read asks the registry instead.

A job missing from a fresh view (one the registry evicted from memory, or one created an
instant ago through another replica) is asked of the registry once and kept.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from serve_app.contracts.jobs import JobStatus
from serve_app.errors import JobNotFoundError
from serve_app.registry.feeds import Change
from serve_app.registry.jobs import JobPage, JobSnapshot, Viewer, page_of

if TYPE_CHECKING:
    from serve_app.registry.client import RegistryClient

logger = logging.getLogger(__name__)

#: Jobs per ``sync`` call while the view (re)loads every job.
SYNC_PAGE = 1000
#: Pause after a failed feed call before the next try.
RETRY_S = 0.5
#: A poll waits at most this share of ``staleness_s``, so an idle view stays fresh.
WAIT_SHARE = 0.4
#: Shortest time between two polls that brought changes: under load one reply carries
#: every change of this long (a feed call per replica at most this often, not one per
#: heartbeat), for this much more lag.
POLL_GAP_S = 0.05

#: What a listener is sent: the job's next snapshot, or None once the registry forgot it.
Update = JobSnapshot | None


class JobView:
    """The snapshots of one ingress replica, by job id; listed newest first by creation."""

    def __init__(
        self,
        source: RegistryClient,
        staleness_s: float,
        clock: Callable[[], float] = time.monotonic,
        poll_gap_s: float = POLL_GAP_S,
    ) -> None:
        self.staleness_s = staleness_s
        #: Seconds on a clock that only moves forward (freshness is measured on it).
        self.clock = clock
        self.poll_gap_s = poll_gap_s
        self._source = source
        self._jobs: dict[str, JobSnapshot] = {}
        #: (created_at, job_id) of every job, ascending: the same order on every replica,
        #: whatever order the changes arrived in (a replica's own writes come first).
        self._order: list[tuple[float, str]] = []
        self._epoch: str | None = None
        self._seq = 0
        self._heard_at = -float("inf")  # when (``clock``) the last full feed reply was asked
        self._listeners: dict[str, set[asyncio.Queue[Update]]] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Follow the feed in the background (on the running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="job-view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def fresh(self) -> bool:
        """Whether the view has every change the registry made ``staleness_s`` ago."""
        return self.clock() - self._heard_at <= self.staleness_s

    # -- reads -------------------------------------------------------------------------

    def peek(self, job_id: str) -> JobSnapshot | None:
        """The snapshot held now, fresh or not (None if there is none)."""
        return self._jobs.get(job_id)

    async def get(self, job_id: str, viewer: Viewer) -> JobSnapshot:
        """The job as ``viewer`` may see it: 404 unknown, and 404 for someone else's job."""
        job = self._jobs.get(job_id) if self.fresh else None
        if job is None:
            job = await self._source.get(job_id)
            self.apply(job)
        if not viewer.may_see(job.owner):
            raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
        return job

    async def page(
        self, offset: int, limit: int, status: JobStatus | None, viewer: Viewer
    ) -> JobPage:
        """The jobs ``viewer`` may see, newest first, a page at a time."""
        if not self.fresh:
            return await self._source.list_jobs(offset, limit, status, viewer)
        newest_first = (self._jobs[job_id] for _, job_id in reversed(self._order))
        return page_of(newest_first, offset, limit, status, viewer)

    @contextlib.contextmanager
    def listen(self, job_id: str) -> Iterator[asyncio.Queue[Update]]:
        """A queue of the job's snapshots as they arrive, for as long as the block lasts."""
        queue: asyncio.Queue[Update] = asyncio.Queue()
        self._listeners.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[job_id]

    # -- writes ------------------------------------------------------------------------

    def apply(self, job: JobSnapshot) -> None:
        """Keep ``job`` unless a newer snapshot of it is already held (by ``version``)."""
        held = self._jobs.get(job.job_id)
        if held is not None and held.version > job.version:
            return
        self._jobs[job.job_id] = job
        if held is None:
            bisect.insort(self._order, (job.created_at, job.job_id))
        if held is None or held.version < job.version:
            self._deliver(job.job_id, job)

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            key = (job.created_at, job.job_id)
            del self._order[bisect.bisect_left(self._order, key)]
            self._deliver(job_id, None)

    def _deliver(self, job_id: str, update: Update) -> None:
        for queue in self._listeners.get(job_id, ()):
            queue.put_nowait(update)

    # -- following the feed ------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                wait_s = WAIT_SHARE * self.staleness_s
                if self._epoch is None:
                    await self._reload()
                    wait_s = 0.0  # catch up with what changed while listing, then wait
                asked = self.clock()
                reply = await self._source.changes(self._epoch, self._seq, wait_s)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the registry is restarting or unreachable: retry
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    logger.warning("job view: the registry's feed failed (%d): %s", failures, exc)
                await asyncio.sleep(RETRY_S)
                continue
            if reply.reset:
                self._epoch = None
                continue
            for change in reply.changes:
                self._take(change)
            self._seq = reply.seq
            if reply.complete:
                self._heard_at = asked
                if reply.changes:
                    await asyncio.sleep(max(0.0, asked + self.poll_gap_s - self.clock()))

    def _take(self, change: Change) -> None:
        if change.snapshot is None:
            self._forget(change.job_id)
        else:
            self.apply(change.snapshot)

    async def _reload(self) -> None:
        """List every job again and follow the feed from where that listing began."""
        first = await self._source.sync(0, SYNC_PAGE)
        jobs = {job.job_id: job for job in first.jobs}
        offset = len(first.jobs)
        while offset < first.total:
            page = await self._source.sync(offset, SYNC_PAGE)
            if page.epoch != first.epoch or not page.jobs:
                break  # the registry restarted meanwhile; the feed will say reset
            jobs.update((job.job_id, job) for job in page.jobs)
            offset += len(page.jobs)
        before, self._jobs = self._jobs, jobs
        self._order = sorted((job.created_at, job.job_id) for job in jobs.values())
        self._epoch, self._seq = first.epoch, first.seq
        for job_id, job in jobs.items():
            held = before.get(job_id)
            if held is not None and held.version > job.version:
                jobs[job_id] = held  # unchanged since (a journaled job is listed as version 0)
            elif held is None or held.version < job.version:
                self._deliver(job_id, job)
        for job_id in before.keys() - jobs.keys():
            self._deliver(job_id, None)
        logger.info("job view: %d jobs loaded at %s/%d", len(jobs), first.epoch[:8], first.seq)
