"""How a watch proceeds, without I/O: the SSE stream first, resumed after a drop, else polling.

A job's stream (``GET /api/jobs/{id}/events``) sends the job's state on connect, each
change with its version as the event id, and ends after the terminal state. A stream that
breaks (a dropped connection, no byte within ``read_timeout_s`` although the service sends
a keep-alive every ``keepalive_s``, an end before the terminal state) is opened again with
``Last-Event-ID``; the service then sends the current state, and states already seen give
no event. After ``max_stream_failures`` breaks in a row without an event, or when the route
is missing (404 other than ``job_not_found``, 405, 501) or answers something that is not
an event stream, the watch falls back to polling ``GET /api/job-status/{id}`` every
``poll_s`` (mode ``auto``); mode ``sse`` raises instead, mode ``poll`` never streams. A
poll that gets no answer is tried again, up to ``max_stream_failures`` in a row.

A batch's stream (``GET /api/batches/{id}/events``) is followed the same way: it sends the
batch's whole status on connect, after each change of one of its jobs and once none is
queued or running; a state equal to the last one seen is not given twice, and the polls go
to ``GET /api/batches/{id}``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

import serve_app.client.calls as calls
from serve_app.client.errors import ApiError, TransportError, UnexpectedResponse
from serve_app.client.events import EventTracker, JobEvent
from serve_app.client.sse import SSEDecoder
from serve_app.schemas.jobs import JobStatusResponse
from serve_app.schemas.tools import BatchStatus

logger = logging.getLogger(__name__)

WatchMode = Literal["auto", "sse", "poll"]
#: A state as the stream and the polls send it, and what the watch gives for it.
S = TypeVar("S", bound=BaseModel)
E = TypeVar("E")


class NoEventStream(TransportError):
    """Mode ``sse``, and the service's events route cannot be read."""


#: What to do with an opened stream: read it, poll instead, or ask for the final state.
Opened = Literal["read", "poll", "final"]


@dataclass(frozen=True)
class WatchSettings:
    poll_s: float = 0.5
    keepalive_s: float = 5.0
    read_timeout_s: float = 20.0
    max_stream_failures: int = 3
    #: Reconnection delay when the stream does not set one (its ``retry`` field).
    reconnect_s: float = 0.5
    #: The longest reconnection delay taken from a stream's ``retry`` field.
    max_reconnect_s: float = 5.0


class FollowPlan(ABC, Generic[S, E]):
    """The state of one watch of something's states; the sync and async clients drive it.

    A subclass says where the stream (``path``) and the polls (``poll``) go, how a state
    reads, what it gives and when the watch is done.
    """

    #: What the stream's events carry.
    state_type: type[S]
    #: Codes of a 404 that mean the thing watched is unknown (not the route missing).
    unknown_codes: frozenset[str]
    #: Whether the stream resumes from ``Last-Event-ID``.
    resumable: bool

    def __init__(
        self,
        name: str,
        path: str,
        poll: calls.Call[S],
        mode: WatchMode,
        settings: WatchSettings,
    ) -> None:
        if mode not in ("auto", "sse", "poll"):
            raise ValueError(f"mode must be auto, sse or poll, not {mode!r:.20}")
        #: The thing watched, for logs and errors ("job 3f2a…").
        self.name = name
        #: The events route.
        self.path = path
        self._poll = poll
        self.mode: WatchMode = mode
        self.settings = settings
        self.streaming = mode != "poll"
        self.failures = 0
        self.last_id: str | None = None
        self._decoder = SSEDecoder()

    @property
    @abstractmethod
    def done(self) -> bool:
        """The last state has been seen."""

    def poll(self) -> calls.Call[S]:
        """The request that reads the state now."""
        return self._poll

    @abstractmethod
    def update(self, state: S) -> E | None:
        """What ``state`` gives after the states seen before (None: nothing new)."""

    # -- the stream ---------------------------------------------------------------------

    @property
    def params(self) -> dict[str, str]:
        return {"keepalive_s": f"{self.settings.keepalive_s:g}"}

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.resumable and self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        return httpx.Timeout(
            connect=base.connect,
            read=self.settings.read_timeout_s,
            write=base.write,
            pool=base.pool,
        )

    def opened(self, response: httpx.Response) -> Opened:
        """What to do with a success answer to the stream's request."""
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code == 204:  # we had the last event already
            self.last_id = None
            return "final"
        if kind != "text/event-stream":
            self._give_up_streaming(f"the events route answered {kind or 'no content type'}")
            return "poll"
        self._decoder = SSEDecoder()
        self._decoder.last_id = self.last_id
        return "read"

    def refused(self, error: ApiError) -> None:
        """The stream's request got an error answer: raise it, unless the route is missing."""
        missing_route = (error.status == 404 and error.code not in self.unknown_codes) or (
            error.status in (405, 501)
        )
        if not missing_route:
            raise error
        self._give_up_streaming(f"the events route answered {error.status} {error.code}")

    def line(self, line: str) -> E | None:
        """A line of the stream; what the event it completes gives, if any."""
        sse = self._decoder.feed(line)
        if sse is None:
            return None
        self.last_id = sse.id
        self.failures = 0
        try:
            state = self.state_type.model_validate_json(sse.data)
        except ValidationError:
            raise UnexpectedResponse(
                f"the events stream of {self.name} sent an event that is no "
                f"{self.state_type.__name__}"
            ) from None
        return self.update(state)

    def lost(self, why: str) -> float:
        """The stream broke before the end; seconds to wait before the next try."""
        self.failures += 1
        logger.info("%s: events stream lost (%s), %d in a row", self.name, why, self.failures)
        if self.failures >= self.settings.max_stream_failures:
            self._give_up_streaming(f"{self.failures} broken streams in a row, last: {why}")
            return 0.0
        retry_ms = self._decoder.retry_ms
        if retry_ms is None:
            return self.settings.reconnect_s
        return min(retry_ms / 1000.0, self.settings.max_reconnect_s)

    def _give_up_streaming(self, why: str) -> None:
        if self.mode == "sse":
            raise NoEventStream(f"{self.name}: no event stream: {why}")
        logger.info("%s: polling instead of streaming: %s", self.name, why)
        self.streaming = False
        self.failures = 0

    # -- polling ------------------------------------------------------------------------

    def polled(self, state: S) -> E | None:
        self.failures = 0
        return self.update(state)

    def poll_failed(self, error: TransportError) -> float:
        """A poll got no answer: seconds to wait before the next, or raise ``error`` after
        ``max_stream_failures`` in a row."""
        self.failures += 1
        if self.failures >= self.settings.max_stream_failures:
            raise error
        logger.info("%s: poll failed (%s)", self.name, error.message)
        return max(self.settings.poll_s, self.settings.reconnect_s)


class WatchPlan(FollowPlan[JobStatusResponse, JobEvent]):
    """A job's watch: typed events up to and including its ``JobEnded``."""

    state_type = JobStatusResponse
    unknown_codes = frozenset({"job_not_found"})
    resumable = True

    def __init__(self, job_id: str, mode: WatchMode, settings: WatchSettings) -> None:
        self.job_id = calls.job_path_id(job_id)
        path = calls.events_path(self.job_id)
        super().__init__(f"job {self.job_id}", path, calls.status(self.job_id), mode, settings)
        self.tracker = EventTracker()

    @property
    def done(self) -> bool:
        return self.tracker.ended

    def update(self, state: JobStatusResponse) -> JobEvent | None:
        return self.tracker.update(state)


class BatchWatchPlan(FollowPlan[BatchStatus, BatchStatus]):
    """A batch's watch: each new state of the batch, the last one once no job of it is
    queued or running."""

    state_type = BatchStatus
    unknown_codes = frozenset({"batch_not_found"})
    resumable = False  # every connection starts with the batch's state now

    def __init__(self, batch_id: str, mode: WatchMode, settings: WatchSettings) -> None:
        self.batch_id = calls.job_path_id(batch_id, "batch")
        path = calls.batch_events_path(self.batch_id)
        poll = calls.batch_status(self.batch_id)
        super().__init__(f"batch {self.batch_id}", path, poll, mode, settings)
        self.last: BatchStatus | None = None

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.status != "running"

    def update(self, state: BatchStatus) -> BatchStatus | None:
        if self.done or state == self.last:
            return None
        self.last = state
        return state
