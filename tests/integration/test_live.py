"""Live progress over real Ray Serve: WebSocket and SSE streams, cancel, the job log, /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.client import TERMINAL, Api

pytestmark = pytest.mark.integration

STAGES = ["background_removal", "shape_generation", "texture_synthesis", "export"]
STREAM_TIMEOUT_S = 60.0

Event = dict[str, Any]


def ws_url(api: Api, path: str) -> str:
    return api.service.url.replace("http://", "ws://", 1) + path


async def watch_ws(
    api: Api, job_id: str, connected: asyncio.Event | None = None, max_events: int | None = None
) -> tuple[list[Event], int | None, str]:
    """Job events from the WebSocket until it closes (or ``max_events``); and the close."""
    events: list[Event] = []
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        async with connect(ws_url(api, f"/ws/jobs/{job_id}")) as ws:
            try:
                async for message in ws:
                    event = json.loads(message)
                    if event.get("type") == "keepalive":
                        continue
                    events.append(event)
                    if connected is not None:
                        connected.set()
                    if max_events is not None and len(events) >= max_events:
                        break
            except ConnectionClosed:
                pass
        return events, ws.close_code, ws.close_reason


async def watch_sse(
    client: httpx.AsyncClient,
    job_id: str,
    connected: asyncio.Event | None = None,
    max_events: int | None = None,
) -> list[Event]:
    """Job events from the SSE stream until the server ends it (or ``max_events``)."""
    events: list[Event] = []
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                    if connected is not None:
                        connected.set()
                    if max_events is not None and len(events) >= max_events:
                        break
    return events


def changes(values: list[Any]) -> list[Any]:
    """``values`` without consecutive repeats."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def assert_complete_run(events: list[Event], job_id: str) -> None:
    """Current state first, then four stages in order, monotonic progress, an ETA, the end."""
    assert events, "no events"
    assert all(e["job_id"] == job_id for e in events)
    assert events[0]["status"] == "uploaded"  # the state on connect
    statuses = changes([e["status"] for e in events])
    assert statuses == ["uploaded", "queued", "running", "completed"], statuses
    assert changes([e["stage"] for e in events if e["stage"] is not None]) == STAGES
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100.0
    running_etas = [e["eta_seconds"] for e in events if e["status"] in ("queued", "running")]
    assert running_etas and all(isinstance(t, int | float) and t >= 0 for t in running_etas)
    assert any(t > 0 for t in running_etas)
    last = events[-1]
    assert sum(e["status"] in TERMINAL for e in events) == 1
    assert last["outputs"]["glb"] == f"/download/{job_id}/glb"
    assert set(last["stage_durations"]) == set(STAGES)
    assert last["started_at"] and last["finished_at"]


def test_websocket_and_sse_watchers_of_one_job_see_every_stage_in_order(api: Api) -> None:
    job_id = api.upload(api.unique_photo())

    async def scenario() -> tuple[list[list[Event]], tuple[int | None, str]]:
        async with httpx.AsyncClient(base_url=api.service.url, timeout=60) as client:
            ready = [asyncio.Event() for _ in range(3)]
            ws = asyncio.create_task(watch_ws(api, job_id, ready[0]))
            ws_two = asyncio.create_task(watch_ws(api, job_id, ready[1]))
            sse = asyncio.create_task(watch_sse(client, job_id, ready[2]))
            async with asyncio.timeout(20):
                await asyncio.gather(*(r.wait() for r in ready))
            body = {"job_id": job_id, "format": "glb", "quality": 5}
            response = await client.post("/api/generate-3d", json=body)
            assert response.status_code == 202, response.text
            (ws_events, code, reason), (ws_two_events, _, _), sse_events = await asyncio.gather(
                ws, ws_two, sse
            )
            return [ws_events, ws_two_events, sse_events], (code, reason)

    streams, (code, reason) = asyncio.run(scenario())
    for events in streams:
        assert_complete_run(events, job_id)
    assert code == 1000 and reason == "job completed"
    # Both channels carry the job-status JSON: the last event is what job-status says.
    final = api.status(job_id)
    for events in streams:
        assert {k: v for k, v in events[-1].items() if k != "eta_seconds"} == {
            k: v for k, v in final.items() if k != "eta_seconds"
        }


def test_a_finished_job_yields_its_terminal_event_at_once(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"

    async def scenario() -> tuple[list[Event], list[Event], int | None]:
        async with httpx.AsyncClient(base_url=api.service.url, timeout=10) as client:
            sse = await watch_sse(client, job_id)
            ws, code, _ = await watch_ws(api, job_id)
            return sse, ws, code

    sse, ws, code = asyncio.run(scenario())
    for events in (sse, ws):
        assert [e["status"] for e in events] == ["completed"]
        assert events[0]["outputs"]["stl"] == f"/download/{job_id}/stl"
    assert code == 1000


def test_streams_of_an_unknown_job_are_refused(api: Api) -> None:
    unknown = "f" * 32
    response = api.client.get(f"/api/jobs/{unknown}/events")
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert api.client.get("/api/jobs/not-a-job/events").status_code == 422
    assert api.client.get(f"/api/jobs/{unknown}/logs").status_code == 404
    assert api.client.post(f"/api/jobs/{unknown}/cancel").status_code == 404

    async def close_of(job_id: str) -> tuple[int | None, str]:
        events, code, reason = await watch_ws(api, job_id)
        assert events == []
        return code, reason

    assert asyncio.run(close_of(unknown)) == (4404, "job not found")
    assert asyncio.run(close_of("NOT-A-JOB"))[0] == 4422


def test_quiet_streams_send_keep_alives(api: Api) -> None:
    job_id = api.upload(api.unique_photo())  # uploaded and never started: nothing happens

    async def scenario() -> tuple[list[str], list[Event]]:
        lines: list[str] = []
        messages: list[Event] = []
        async with httpx.AsyncClient(base_url=api.service.url, timeout=10) as client:
            url = f"/api/jobs/{job_id}/events?keepalive_s=0.5"
            async with asyncio.timeout(10), client.stream("GET", url) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == ": keep-alive":
                        break
        url = ws_url(api, f"/ws/jobs/{job_id}?keepalive_s=0.5")
        async with asyncio.timeout(10), connect(url) as ws:
            for _ in range(2):
                messages.append(json.loads(await ws.recv()))
        return lines, messages

    lines, messages = asyncio.run(scenario())
    data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert [e["status"] for e in data] == ["uploaded"] and lines[-1] == ": keep-alive"
    assert messages[0]["status"] == "uploaded" and messages[1] == {"type": "keepalive"}
    assert api.status(job_id)["status"] == "uploaded"


def test_closing_a_stream_leaves_its_job_running_to_completion(api: Api) -> None:
    job_id = api.upload(api.unique_photo())

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=api.service.url, timeout=60) as client:
            body = {"job_id": job_id, "format": "glb", "quality": 8}
            assert (await client.post("/api/generate-3d", json=body)).status_code == 202
            # Two watchers hang up after their first event, while the job runs.
            (ws_events, _, _), sse_events = await asyncio.gather(
                watch_ws(api, job_id, max_events=1), watch_sse(client, job_id, max_events=1)
            )
            assert ws_events[0]["status"] in ("queued", "running")
            assert sse_events[0]["status"] in ("queued", "running")

    asyncio.run(scenario())
    job = api.wait(job_id)
    assert job["status"] == "completed" and not job["cancel_requested"], job


# -- cancel ----------------------------------------------------------------------------


def cancel_when_shape_generation_starts(api: Api) -> tuple[str, httpx.Response]:
    """Start a quality-10 job and cancel it as soon as its shape stage begins.

    Returns the job id and the cancel's answer. Retries (a few times) when the job
    finished before the cancel reached it: then there was nothing to cancel, which says
    nothing about cancel itself.
    """
    for _ in range(3):
        job_id = api.upload(api.unique_photo())

        async def scenario(job_id: str = job_id) -> httpx.Response:
            async with httpx.AsyncClient(base_url=api.service.url, timeout=30) as client:
                async with asyncio.timeout(STREAM_TIMEOUT_S):
                    async with connect(ws_url(api, f"/ws/jobs/{job_id}")) as ws:
                        body = {"job_id": job_id, "format": "glb", "quality": 10}
                        response = await client.post("/api/generate-3d", json=body)
                        assert response.status_code == 202, response.text
                        async for message in ws:
                            event = json.loads(message)
                            if event.get("stage") == "shape_generation":
                                break
                        return await client.post(f"/api/jobs/{job_id}/cancel")

        answer = asyncio.run(scenario())
        if answer.status_code != 409:
            return job_id, answer
    pytest.fail("every quality-10 job finished before its cancel arrived")


def log_events(api: Api, job_id: str) -> list[str]:
    return [e["event"] for e in api.client.get(f"/api/jobs/{job_id}/logs").json()["entries"]]


def test_cancel_stops_a_running_quality_10_job_and_its_workers(api: Api) -> None:
    job_id, answer = cancel_when_shape_generation_starts(api)
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "cancelled" and job["outputs"] == {} and job["download_url"] is None
    assert job["error"]["code"] == "cancelled"
    # stopped in the worker's stages (the cancel left as the shape stage began; on a busy
    # machine the worker may have reached the texture before it arrived), before the export
    assert job["stage"] in ("shape_generation", "texture_synthesis") and job["progress"] < 90
    assert api.status(job_id)["status"] == "cancelled"
    assert api.client.get(f"/download/{job_id}/glb").status_code == 409
    # The workers themselves stop (they raise at a cancel check), after the request.
    deadline = time.monotonic() + 30  # a bound on the test, not a figure it checks
    while "workers_stopped" not in (events := log_events(api, job_id)):
        assert time.monotonic() < deadline, events
        time.sleep(0.05)
    assert events.index("cancel_requested") < events.index("workers_stopped")
    assert "completed" not in events
    # Cancelling it again is a conflict: it has ended.
    assert api.client.post(f"/api/jobs/{job_id}/cancel").status_code == 409
    # And the job can run again afterwards.
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"


def test_a_cancelled_queued_job_never_starts(api: Api) -> None:
    ahead = [api.upload(api.unique_photo()) for _ in range(4)]
    job_id = api.upload(api.unique_photo())
    for other in ahead:
        assert api.generate(other, format="stl", quality=1).status_code == 202
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    queued = api.status(job_id)
    answer = api.client.post(f"/api/jobs/{job_id}/cancel")

    assert queued["status"] == "queued", queued
    assert queued["queue_position"] >= 1 and queued["eta_seconds"] > 0
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "cancelled" and job["started_at"] is None
    for other in ahead:
        assert api.wait(other)["status"] == "completed"
    job = api.status(job_id)
    assert job["status"] == "cancelled" and job["stage"] is None and job["started_at"] is None
    events = [e["event"] for e in api.client.get(f"/api/jobs/{job_id}/logs").json()["entries"]]
    # Its dispatched work may have ended since ("workers_stopped"), but it never ran.
    assert events[:4] == ["uploaded", "queued", "cancel_requested", "cancelled"], events
    assert "started" not in events and "stage_started" not in events
    assert api.client.get(f"/download/{job_id}/stl").status_code == 409


def test_cancelling_a_finished_or_never_started_job_is_409(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.client.post(f"/api/jobs/{job_id}/cancel").status_code == 409  # uploaded
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"
    response = api.client.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_conflict"


def test_the_job_log_tells_the_story_of_a_run(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="glb", quality=2).status_code == 202
    api.wait(job_id)
    body = api.client.get(f"/api/jobs/{job_id}/logs").json()
    events = [(e["event"], e["stage"]) for e in body["entries"]]
    assert events[:3] == [("uploaded", None), ("queued", None), ("started", "background_removal")]
    finished = [stage for event, stage in events if event == "stage_finished"]
    assert finished == STAGES
    assert events[-1][0] == "completed" and body["dropped"] == 0


# -- metrics ---------------------------------------------------------------------------


def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_counters_move_by_the_right_amounts(api: Api) -> None:
    def idle() -> bool:
        now = scrape(api)
        return now[("orfeas_queue_depth", ())] == 0 and now[("orfeas_active_jobs", ())] == 0

    deadline = time.monotonic() + 30
    while not idle():
        assert time.monotonic() < deadline, "other jobs are still running"
        time.sleep(0.2)
    before = scrape(api)

    photos = [api.unique_photo(), api.unique_photo()]
    done, cancelled = (api.upload(photo) for photo in photos)
    assert api.generate(done, format="glb", quality=3).status_code == 202
    assert api.wait(done)["status"] == "completed"
    assert api.generate(done, format="glb", quality=3).status_code == 202  # the same again
    assert api.wait(done)["cached"] is True
    assert api.generate(cancelled, format="glb", quality=3).status_code == 202
    assert api.client.post(f"/api/jobs/{cancelled}/cancel").status_code == 200
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    inflate = {"generator": "inflate"}
    assert delta("orfeas_jobs_submitted_total", **inflate) == 3
    assert delta("orfeas_jobs_completed_total", **inflate) == 2
    assert delta("orfeas_cache_hits_total", **inflate) == 1
    assert delta("orfeas_jobs_cancelled_total", **inflate) == 1
    assert delta("orfeas_jobs_failed_total", **inflate) == 0
    assert delta("orfeas_uploads_total") == 2
    assert delta("orfeas_upload_bytes_total") == sum(len(p) for p in photos)
    for stage in STAGES:
        labels = {"stage": stage, "generator": "inflate", "quality": "3"}
        assert delta("orfeas_stage_duration_seconds_count", **labels) == 1
    assert after[("orfeas_queue_depth", ())] == 0 and after[("orfeas_active_jobs", ())] == 0
