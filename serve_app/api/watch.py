"""Fan-out of job changes inside one ingress replica: one registry long-poll per watched job.

However many streams of this replica watch a job, one ``registry.watch`` call is waiting
for its next change; each change goes to every stream's queue. A stream starts from the
state it read itself (its own ``watch(job_id, None)``), gets the changes the shared poll
delivered since then replayed from a short history, and skips those it already has, so
it sees every version once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from serve_app.api.deps import JobRegistryClient
from serve_app.api.schemas import JobStatusResponse
from serve_app.errors import JobNotFoundError, OrfeasError
from serve_app.registry.feeds import WatchReply
from serve_app.registry.jobs import JobSnapshot

logger = logging.getLogger(__name__)

#: Longest one shared registry call waits before it is made again.
POLL_S = 10.0
#: Registry calls a shared poll retries (0.5 s apart) before its streams give up.
WATCH_RETRIES = 3
HISTORY_SIZE = 64

Update = tuple[int, JobSnapshot]
Event = tuple[int, dict[str, Any]]


class _End:
    """Put on the queues when no more changes will come (``error`` set if that is a fault)."""

    def __init__(self, error: OrfeasError | None = None) -> None:
        self.error = error


@dataclass(eq=False)
class _Stream:
    queue: asyncio.Queue[Update | _End] = field(default_factory=asyncio.Queue)


class _SharedPoll:
    """The one long-poll of a job in this replica and the streams it feeds."""

    def __init__(self, registry: JobRegistryClient, job_id: str, version: int) -> None:
        self.job_id = job_id
        self.version = version
        self.streams: set[_Stream] = set()
        self.history: deque[Update] = deque(maxlen=HISTORY_SIZE)
        self._registry = registry
        self.task: asyncio.Task[None] | None = None

    def deliver(self, item: Update | _End) -> None:
        if not isinstance(item, _End):
            self.history.append(item)
        for stream in self.streams:
            stream.queue.put_nowait(item)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                reply = await self._registry.watch(self.job_id, self.version, POLL_S)
                failures = 0
            except JobNotFoundError:
                self.deliver(_End())  # forgotten by the registry: nothing more will come
                return
            except OrfeasError as exc:
                failures += 1
                if failures > WATCH_RETRIES:
                    self.deliver(_End(exc))
                    return
                logger.warning("watching job %s: %s; retrying", self.job_id, exc.message)
                await asyncio.sleep(0.5)
                continue
            count = len(reply.snapshots)
            for i, snapshot in enumerate(reply.snapshots):
                self.deliver((reply.version - (count - 1 - i), snapshot))
            self.version = max(self.version, reply.version)


class WatchHub:
    """The shared polls of one ingress replica, by job id."""

    def __init__(self, registry: JobRegistryClient) -> None:
        self._registry = registry
        self._polls: dict[str, _SharedPoll] = {}

    @contextlib.contextmanager
    def join(self, job_id: str, version: int) -> Any:
        """A queue of the job's changes after ``version``, for as long as the block lasts."""
        poll = self._polls.get(job_id)
        if poll is None or poll.task is None or poll.task.done():
            poll = self._polls[job_id] = _SharedPoll(self._registry, job_id, version)
            poll.task = asyncio.get_running_loop().create_task(poll.run())
            poll.task.add_done_callback(functools.partial(self._on_done, poll))
        stream = _Stream()
        for item in poll.history:
            if item[0] > version:
                stream.queue.put_nowait(item)
        poll.streams.add(stream)
        try:
            yield stream.queue
        finally:
            poll.streams.discard(stream)
            if not poll.streams and poll.task is not None:
                self._finished(poll)
                poll.task.cancel()

    def _on_done(self, poll: _SharedPoll, task: asyncio.Task[None]) -> None:
        self._finished(poll)

    def _finished(self, poll: _SharedPoll) -> None:
        if self._polls.get(poll.job_id) is poll:
            del self._polls[poll.job_id]

    def __len__(self) -> int:
        return len(self._polls)


def event_payload(job: JobSnapshot) -> dict[str, Any]:
    """One stream event: exactly the body of ``GET /api/job-status/{id}``."""
    return JobStatusResponse.from_snapshot(job).model_dump(mode="json")


async def job_updates(
    hub: WatchHub, job_id: str, first: WatchReply, keepalive_s: float
) -> AsyncIterator[Event | None]:
    """(version, event) for the state in ``first`` and every later change, up to and
    including the first terminal state; None after ``keepalive_s`` without a change.
    """
    seen = first.version
    for job in first.snapshots:
        yield seen, event_payload(job)
        if job.status.terminal:
            return
    with hub.join(job_id, seen) as queue:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield None
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            version, job = item
            if version <= seen:
                continue
            seen = version
            yield version, event_payload(job)
            if job.status.terminal:
                return
