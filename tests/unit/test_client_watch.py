"""Watching a job or a batch over MockTransport: resuming a dropped stream, falling back to
polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serve_app.api.batch_service import summarize
from serve_app.client import (
    JobEnded,
    JobState,
    NotFound,
    StageChanged,
    TransportError,
    WatchSettings,
)
from serve_app.schemas.tools import BatchJob, BatchStatus
from tests.unit.test_client_protocol import JOB_ID, job
from tests.unit.test_client_requests import Recorder, error

EVENTS = f"/api/jobs/{JOB_ID}/events"
STATUS = f"/api/job-status/{JOB_ID}"
FAST = WatchSettings(poll_s=0.0, reconnect_s=0.0, keepalive_s=1.0, read_timeout_s=5.0)

STATES = [
    job(status="queued", stage=None),
    job(stage="background_removal", progress=1.0),
    job(stage="shape_generation", progress=20.0),
    job(status="completed", stage="export", progress=100.0),
]


def sse(*versions: int, retry_ms: int | None = 0) -> bytes:
    """The stream's bytes for STATES at ``versions`` (1-based, the event ids)."""
    parts = [f"retry: {retry_ms}\n\n"] if retry_ms is not None else []
    for version in versions:
        parts.append(f"id: {version}\ndata: {STATES[version - 1].model_dump_json()}\n\n")
        parts.append(": keep-alive\n\n")
    return "".join(parts).encode()


def stream(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


class Broken(httpx.SyncByteStream):
    """A stream that sends ``body`` and then loses its connection."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body
        raise httpx.ReadError("connection reset by peer")


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_a_dropped_stream_resumes_from_its_last_event_id_without_repeats() -> None:
    answers = [stream(sse(1, 2)), stream(sse(2, 3, 4))]
    service = Recorder(lambda r: answers.pop(0))
    with service.client(watch=FAST) as client:
        events = list(client.watch(JOB_ID))
    assert kinds(events) == ["JobState", "JobState", "StageChanged", "JobEnded"]
    first, second = service.requests
    assert "last-event-id" not in first.headers and second.headers["last-event-id"] == "2"
    assert first.url.params["keepalive_s"] == "1"
    assert first.headers["accept"] == "text/event-stream"
    assert isinstance(events[2], StageChanged) and events[2].previous_stage == "background_removal"
    assert isinstance(events[-1], JobEnded) and events[-1].completed


def test_a_connection_lost_mid_stream_is_opened_again() -> None:
    answers = [
        httpx.Response(200, stream=Broken(sse(1)), headers={"content-type": "text/event-stream"}),
        stream(sse(1, 2, 3, 4)),
    ]
    service = Recorder(lambda r: answers.pop(0))
    with service.client(watch=FAST) as client:
        events = list(client.watch(JOB_ID))
    assert kinds(events) == ["JobState", "JobState", "StageChanged", "JobEnded"]
    assert service.requests[1].headers["last-event-id"] == "1"


def test_without_an_events_route_the_watch_polls_the_status() -> None:
    polls = iter(STATES)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == EVENTS:
            return error(404, "not_found", "Not Found")
        return httpx.Response(200, json=next(polls).model_dump(mode="json"))

    service = Recorder(handler)
    with service.client(watch=FAST) as client:
        events = list(client.watch(JOB_ID))
    assert kinds(events) == ["JobState", "JobState", "StageChanged", "JobEnded"]
    assert [r.url.path for r in service.requests] == [EVENTS] + [STATUS] * 4
    with service.client(watch=FAST) as client, pytest.raises(TransportError, match="404"):
        list(client.watch(JOB_ID, mode="sse"))


def test_streams_that_keep_breaking_give_way_to_polling() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == EVENTS:
            return stream(b"retry: 0\n\n: keep-alive\n\n")  # never an event
        return httpx.Response(200, json=STATES[-1].model_dump(mode="json"))

    service = Recorder(handler)
    with service.client(watch=FAST) as client:
        events = list(client.watch(JOB_ID))
    assert kinds(events) == ["JobEnded"]
    paths = [r.url.path for r in service.requests]
    assert paths == [EVENTS] * FAST.max_stream_failures + [STATUS]


def test_an_unknown_job_is_not_found_and_a_proxy_that_buffers_is_polled_past() -> None:
    missing = Recorder(lambda r: error(404, "job_not_found", "no such job"))
    with missing.client(watch=FAST) as client, pytest.raises(NotFound, match="no such job"):
        list(client.watch(JOB_ID))

    def html_then_status(request: httpx.Request) -> httpx.Response:
        if request.url.path == EVENTS:
            return httpx.Response(200, text="<html>", headers={"content-type": "text/html"})
        return httpx.Response(200, json=STATES[-1].model_dump(mode="json"))

    service = Recorder(html_then_status)
    with service.client(watch=FAST) as client:
        assert kinds(list(client.watch(JOB_ID))) == ["JobEnded"]
        with pytest.raises(TransportError, match="text/html"):
            list(client.watch(JOB_ID, mode="sse"))
    assert [r.url.path for r in service.requests] == [EVENTS, STATUS, EVENTS]  # no second try


def test_a_204_after_a_reconnect_means_the_end_was_sent_and_the_status_says_it() -> None:
    answers = [
        stream(sse(1, 2)),
        httpx.Response(204),
        httpx.Response(200, json=STATES[-1].model_dump(mode="json")),
    ]
    service = Recorder(lambda r: answers.pop(0))
    with service.client(watch=FAST) as client:
        events = list(client.watch(JOB_ID))
    assert kinds(events) == ["JobState", "JobState", "JobEnded"]
    assert service.requests[2].url.path == STATUS


def test_a_watch_of_an_ended_job_is_its_one_end_event_and_modes_are_checked() -> None:
    service = Recorder(lambda r: stream(sse(4)))
    with service.client(watch=FAST) as client:
        (event,) = list(client.watch(JOB_ID))
        assert isinstance(event, JobEnded) and client.wait(JOB_ID).status == "completed"
        with pytest.raises(ValueError):
            list(client.watch(JOB_ID, mode="websocket"))  # type: ignore[arg-type]


def test_the_async_watch_resumes_and_falls_back_like_the_sync_one() -> None:
    answers = [stream(sse(1, 2)), error(405, "method_not_allowed", "no")]
    polls = iter(STATES[2:])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == EVENTS:
            return answers.pop(0)
        return httpx.Response(200, json=next(polls).model_dump(mode="json"))

    service = Recorder(handler)

    async def scenario() -> list[Any]:
        async with service.async_client(watch=FAST) as client:
            return [event async for event in client.watch(JOB_ID)]

    events = asyncio.run(scenario())
    assert kinds(events) == ["JobState", "JobState", "StageChanged", "JobEnded"]
    assert isinstance(events[0], JobState)
    assert [r.url.path for r in service.requests] == [EVENTS, EVENTS, STATUS, STATUS]


def test_polling_rides_out_a_lost_connection_but_not_a_dead_service() -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, json=STATES[1].model_dump(mode="json")),
        httpx.ConnectError("connection refused"),
        httpx.Response(200, json=STATES[-1].model_dump(mode="json")),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with Recorder(handler).client(watch=FAST) as client:
        assert kinds(list(client.watch(JOB_ID, mode="poll"))) == ["JobState", "JobEnded"]

    def dead(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    service = Recorder(dead)
    with service.client(watch=FAST) as client, pytest.raises(TransportError, match="connect"):
        list(client.watch(JOB_ID, mode="poll"))
    assert len(service.requests) == FAST.max_stream_failures


# -- batches -------------------------------------------------------------------------

BATCH_ID = "b" * 32
BATCH_EVENTS = f"/api/batches/{BATCH_ID}/events"
BATCH = f"/api/batches/{BATCH_ID}"


def batch_state(*statuses: str) -> BatchStatus:
    jobs = [
        BatchJob(index=i, job_id=f"{i:032x}", status=s, progress=100.0 if s == "completed" else 0)
        for i, s in enumerate(statuses)
    ]
    return summarize(BATCH_ID, 1.0, jobs)


BATCH_STATES = [
    batch_state("queued", "queued"),
    batch_state("completed", "running"),
    batch_state("completed", "failed"),
]


def batch_sse(*states: BatchStatus) -> bytes:
    body = "retry: 0\n\n" + "".join(
        f"id: {n}\ndata: {state.model_dump_json()}\n\n" for n, state in enumerate(states, 1)
    )
    return body.encode()


def test_a_batch_watch_gives_each_new_state_once_across_a_dropped_stream() -> None:
    answers = [
        httpx.Response(
            200,
            stream=Broken(batch_sse(*BATCH_STATES[:2])),
            headers={"content-type": "text/event-stream"},
        ),
        stream(batch_sse(BATCH_STATES[1], BATCH_STATES[2])),  # a new stream starts with now
    ]
    service = Recorder(lambda r: answers.pop(0))
    with service.client(watch=FAST) as client:
        states = list(client.watch_batch(BATCH_ID))
    assert states == BATCH_STATES and states[-1].status == "partial"
    first, second = service.requests
    assert first.url.path == second.url.path == BATCH_EVENTS
    assert "last-event-id" not in second.headers  # each connection starts afresh


def test_a_batch_watch_polls_without_a_stream_and_an_unknown_batch_is_not_found() -> None:
    polls = iter(BATCH_STATES)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == BATCH_EVENTS:
            return error(404, "not_found", "Not Found")
        return httpx.Response(200, json=next(polls).model_dump(mode="json"))

    service = Recorder(handler)
    with service.client(watch=FAST) as client:
        assert list(client.watch_batch(BATCH_ID)) == BATCH_STATES
    assert [r.url.path for r in service.requests] == [BATCH_EVENTS] + [BATCH] * 3

    missing = Recorder(lambda r: error(404, "batch_not_found", "no batch with id"))

    async def scenario() -> None:
        async with missing.async_client(watch=FAST) as client:
            with pytest.raises(NotFound, match="no batch"):
                [state async for state in client.watch_batch(BATCH_ID)]

    asyncio.run(scenario())
    assert len(missing.requests) == 1
