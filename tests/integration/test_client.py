"""The Python client (sync and async) against the real local service over HTTP.

Routes the service does not serve yet (optimize-mesh, apply-material, preview-3d,
batch-generate, thumbnails, text-to-image jobs) are tested against their contract in
tests/unit/test_client_requests.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh

from serve_app.client import (
    AsyncOrfeasClient,
    Conflict,
    JobEnded,
    JobState,
    NotFound,
    OrfeasClient,
    ServiceUnavailable,
    StageChanged,
    ValidationFailed,
    WatchSettings,
)
from tests.client import Service, photo
from tests.gltf_validator import validate_glb
from tests.meshes import binary_stl, cube

pytestmark = pytest.mark.integration

STAGES = ["background_removal", "shape_generation", "texture_synthesis", "export"]


@pytest.fixture
def client(service: Service) -> Iterator[OrfeasClient]:
    with OrfeasClient(service.url, timeout=60.0) as client:
        yield client


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def assert_whole_run(events: list[Any]) -> None:
    """The first state, the four stages in order, progress that never falls, one end."""
    assert isinstance(events[0], JobState)
    assert isinstance(events[-1], JobEnded) and events[-1].completed, events[-1]
    assert sum(isinstance(e, JobEnded) for e in events) == 1
    stages = [e.job.stage for e in events if isinstance(e, StageChanged)]
    assert [s for s in STAGES if s in stages] == stages and "shape_generation" in stages
    progress = [e.job.progress for e in events]
    assert progress == sorted(progress) and progress[-1] == 100.0


def test_a_photo_becomes_a_valid_glb_on_disk_through_the_client(
    client: OrfeasClient, tmp_path: Path
) -> None:
    upload = client.upload(photo(unique=True, fmt="JPEG"), filename="cat.jpg")
    assert upload.status == "uploaded" and upload.media_type == "image/jpeg"
    started = client.generate(upload.job_id, format="glb", quality=2)
    assert started.status in ("queued", "running") and started.quality == 2
    events = list(client.watch(upload.job_id))
    assert_whole_run(events)

    path = client.download(upload.job_id, "glb", tmp_path)
    assert path.parent == tmp_path and path.name.endswith(".glb")
    assert validate_glb(path)["numErrors"] == 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing half-written left
    assert client.status(upload.job_id).outputs["glb"] == f"/download/{upload.job_id}/glb"

    analysis = client.analyze(job_id=upload.job_id)
    assert analysis.format == "canonical" and analysis.triangles > 0
    cube_analysis = client.analyze(binary_stl(*cube()))
    assert (cube_analysis.volume_mm3, cube_analysis.printable) == (pytest.approx(1000.0), True)
    assert {"metal", "rubber"} <= {m.name for m in client.materials().presets}


def test_polling_gives_the_same_events_as_the_stream(client: OrfeasClient) -> None:
    job = client.submit(photo(unique=True), format="stl", quality=1)
    events = list(client.watch(job.job_id, mode="poll"))
    assert isinstance(events[0], JobState) and isinstance(events[-1], JobEnded)
    assert events[-1].completed and events[-1].job.outputs


class DroppingTransport(httpx.HTTPTransport):
    """The real service behind a network that drops the first event stream after its
    ``after``-th line (and, with ``no_events``, a proxy that has no events route)."""

    def __init__(self, after: int = 0, no_events: bool = False) -> None:
        super().__init__()
        self.after, self.no_events = after, no_events
        self.stream_requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/events"):
            return super().handle_request(request)
        self.stream_requests.append(request)
        if self.no_events:
            body = {"error": {"code": "not_found", "message": "Not Found"}}
            return httpx.Response(404, json=body, request=request)
        response = super().handle_request(request)
        if len(self.stream_requests) == 1:
            response.stream = Cut(response.stream, self.after)
        return response


class Cut(httpx.SyncByteStream):
    def __init__(self, stream: Any, after: int) -> None:
        self.stream, self.after = stream, after

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self.stream:
            yield chunk
            seen += chunk.count(b"\ndata: ")
            if seen >= self.after:
                raise httpx.ReadError("the network dropped the stream")

    def close(self) -> None:
        self.stream.close()


def test_a_dropped_stream_resumes_where_it_left_off(service: Service) -> None:
    transport = DroppingTransport(after=2)
    settings = WatchSettings(max_reconnect_s=0.1)  # sooner than the stream's retry (3 s)
    with OrfeasClient(service.url, transport=transport, watch=settings) as client:
        job = client.submit(photo(unique=True), format="stl", quality=5)
        events = list(client.watch(job.job_id))
    first, *again = transport.stream_requests
    assert "last-event-id" not in first.headers and len(again) == 1
    assert int(again[0].headers["last-event-id"]) >= 2  # the version of the second event
    assert isinstance(events[0], JobState) and len(events) > 2
    assert isinstance(events[-1], JobEnded) and events[-1].completed
    assert sum(isinstance(e, JobEnded) for e in events) == 1
    progress = [e.job.progress for e in events]
    assert progress == sorted(progress)
    states = [e.job.model_dump() for e in events]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))  # none sent twice


def test_without_an_event_stream_the_watch_polls(service: Service) -> None:
    transport = DroppingTransport(no_events=True)
    with OrfeasClient(service.url, transport=transport) as client:
        job = client.submit(photo(unique=True), format="stl", quality=1)
        events = list(client.watch(job.job_id))
    assert len(transport.stream_requests) == 1
    assert isinstance(events[-1], JobEnded) and events[-1].completed


def test_cancel_ends_a_running_job_cancelled(client: OrfeasClient) -> None:
    job = client.submit(photo(unique=True), format="glb", quality=10)
    for event in client.watch(job.job_id):
        if event.job.stage == "shape_generation" or isinstance(event, JobEnded):
            break
    if client.status(job.job_id).status == "completed":
        pytest.skip("the job finished before its cancel")  # pragma: no cover - timing
    answer = client.cancel(job.job_id)
    assert answer.status == "cancelled" and answer.error and answer.error["code"] == "cancelled"
    with pytest.raises(Conflict) as raised:
        client.cancel(job.job_id)
    assert raised.value.code == "job_conflict"
    with pytest.raises(Conflict):
        client.download(job.job_id, "glb")


def test_the_services_refusals_are_typed_errors_and_are_not_retried(
    client: OrfeasClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serve_app.client")
    with pytest.raises(ServiceUnavailable) as raised:
        client.text_to_image("a red teapot on a table")
    assert raised.value.status == 503 and raised.value.code == "model_not_configured"
    assert "text_to_image.model_path" in raised.value.message
    assert raised.value.retry_after is not None
    assert not [r for r in caplog.records if "try 2" in r.getMessage()]  # asked once

    unknown = "f" * 32
    with pytest.raises(NotFound) as missing:
        client.status(unknown)
    assert missing.value.code == "job_not_found"
    upload = client.upload(photo(unique=True))
    with pytest.raises(ValidationFailed) as invalid:
        client.generate(upload.job_id, generator="no-such-generator")
    assert invalid.value.code == "validation_error" and "generator" in invalid.value.message


def test_the_async_client_runs_a_job_from_photo_to_file(service: Service, tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], Path, Any]:
        async with AsyncOrfeasClient(service.url, timeout=60.0) as client:
            jobs = await asyncio.gather(
                client.submit(photo(unique=True), format="stl", quality=1),
                client.submit(photo(unique=True), format="ply", quality=1),
            )
            events = [e async for e in client.watch(jobs[0].job_id)]
            final = await client.wait(jobs[1].job_id, mode="poll")
            path = await client.download(jobs[0].job_id, "stl", tmp_path / "a.stl")
            return events, path, final

    events, path, final = asyncio.run(scenario())
    assert isinstance(events[-1], JobEnded) and events[-1].completed
    assert final.status == "completed" and final.format == "ply"
    mesh = trimesh.load(path)
    assert len(mesh.faces) > 0 and mesh.is_watertight
