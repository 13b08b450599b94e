"""The Python client (sync and async) against the real local service over HTTP: jobs, their
events, mesh tools and variants, previews, batches, and text jobs on the application with
the tiny text-to-image model (``text_app``).

The client-only logic (retry decisions, SSE decoding, resuming, falling back to polls) is
tested without a service in tests/unit/test_client_*.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

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
from serve_app.pipeline.text_params import prompt_sha256
from tests.client import Service, photo
from tests.formats import base_materials, lib3mf_model, open_usdz, usd_errors
from tests.gltf_validator import validate_glb
from tests.meshes import binary_stl, cube

pytestmark = pytest.mark.integration

STAGES = ["background_removal", "shape_generation", "texture_synthesis", "export"]
#: The text tests' prompt and picture (test_cli.py asks for the same picture).
PROMPT = "a wooden toy boat on a plain background"
PICTURE = {"seed": 41, "steps": 3, "width": 64, "height": 64}


@pytest.fixture
def client(service: Service) -> Iterator[OrfeasClient]:
    with OrfeasClient(service.url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def modelled(service: Service) -> str:
    """A completed job: a small real photo, inflate at quality 1, made through the client."""
    with OrfeasClient(service.url, timeout=60.0) as client:
        job = client.submit(photo("coffee", size=200, unique=True), format="glb", quality=1)
        assert client.wait(job.job_id).status == "completed"
    return job.job_id


def png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def gltf_json(glb: bytes) -> dict[str, Any]:
    length = struct.unpack_from("<I", glb, 12)[0]
    return dict(json.loads(glb[20 : 20 + length]))


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
            seen += sum(line.startswith(b"data: ") for line in chunk.split(b"\n"))
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


def test_mesh_tools_make_variants_pictures_and_downloads_through_the_client(
    client: OrfeasClient, modelled: str, tmp_path: Path
) -> None:
    job_id = modelled
    light = client.optimize(job_id, 400)
    assert (light.job_id, light.operation, light.base) == (job_id, "optimize", None)
    assert light.params == {"target_faces": 400, "repair": True}
    assert light.faces <= 400 and light.watertight is True
    assert light.downloads["stl"] == f"/download/{job_id}/stl?variant={light.variant_id}"
    metal = client.apply_material(job_id, "metal", variant=light.variant_id)
    assert metal.base == light.variant_id and metal.faces == light.faces
    assert (metal.params["name"], metal.params["metallic"]) == ("metal", 1.0)
    red = client.apply_material(job_id, {"base_color": "#C0392B", "metallic": 0, "roughness": 0.6})
    assert red.params["base_color"] == "#c0392b" and red.base is None
    listed = {v.variant_id: v.operation for v in client.status(job_id).variants}
    assert listed == {light.variant_id: "optimize", metal.variant_id: "material",
                      red.variant_id: "material"}  # fmt: skip

    async def again() -> str:  # the async twin, and the same request gives the same variant
        async with AsyncOrfeasClient(client.settings.base_url, timeout=60.0) as twin:
            return (await twin.optimize(job_id, 400)).variant_id

    assert asyncio.run(again()) == light.variant_id

    glb = client.download(job_id, "glb", tmp_path, variant=metal.variant_id)
    assert glb == tmp_path / f"{job_id}_{metal.variant_id[:12]}_model.glb"  # the served name
    assert validate_glb(glb)["numErrors"] == 0
    factors = gltf_json(glb.read_bytes())["materials"][0]["pbrMetallicRoughness"]
    assert factors["metallicFactor"] == 1.0 and "baseColorTexture" in factors
    stl = client.download(job_id, "stl", tmp_path / "light.stl", variant=light.variant_id)
    mesh = trimesh.load(stl)
    assert len(mesh.faces) == light.faces and mesh.is_watertight
    analysis = client.analyze(job_id=job_id, variant=light.variant_id)
    assert analysis.triangles == light.faces and analysis.printable
    # A plain colour is the 3MF's base material; the USDZ of a variant passes USD's checks.
    printed = client.download(job_id, "3mf", tmp_path, variant=red.variant_id)
    assert printed == tmp_path / f"{job_id}_{red.variant_id[:12]}_model.3mf"
    model = lib3mf_model(printed.read_bytes(), tmp_path)
    assert base_materials(model) == [("custom", (0xC0, 0x39, 0x2B))]
    usdz = client.download(job_id, "usdz", tmp_path, variant=metal.variant_id)
    assert usd_errors(open_usdz(usdz.read_bytes(), tmp_path)) == []

    picture = client.preview(
        job_id, tmp_path / "red.png", variant=red.variant_id, width=96, height=64,
        background="transparent",
    )  # fmt: skip
    assert (tmp_path / "red.png").read_bytes() == picture
    pixels = png(picture)
    assert pixels.shape == (64, 96, 4) and pixels[0, 0, 3] == 0  # transparent around it
    shown = pixels[pixels[..., 3] == 255][:, :3].astype(float)
    assert len(shown) > 0.05 * 64 * 96 and shown[:, 0].mean() > 1.5 * shown[:, 1].mean()
    thumbnail = client.thumbnail(job_id, tmp_path)
    assert thumbnail == tmp_path / f"{job_id}_thumbnail.png"
    assert png(thumbnail.read_bytes()).shape == (256, 256, 4)

    with pytest.raises(NotFound) as unknown:
        client.optimize(job_id, 400, variant="a" * 64)
    assert unknown.value.code == "variant_not_found"
    with pytest.raises(ValidationFailed) as preset:
        client.apply_material(job_id, "unobtainium")
    assert preset.value.code == "validation_error" and "metal" in preset.value.message
    uploaded = client.upload(photo("rocket", size=64, unique=True)).job_id
    with pytest.raises(Conflict) as early:
        client.preview(uploaded)
    assert early.value.code == "job_conflict" and early.value.details["status"] == "uploaded"


def test_a_batch_is_made_watched_and_read_through_the_client(client: OrfeasClient) -> None:
    image = photo("rocket", size=128, unique=True)
    created = client.batch([image, b"no image at all"], format="stl", quality=1)
    first, refused = created.jobs
    assert first.index == 0 and first.job_id and first.status in ("queued", "running")
    assert first.error is None
    assert (refused.index, refused.job_id, refused.status) == (1, None, "rejected")
    assert refused.error is not None and refused.error["code"] == "unsupported_media_type"

    states = list(client.watch_batch(created.batch_id))
    final = states[-1]
    assert [s.status for s in states[:-1]] == ["running"] * (len(states) - 1)
    assert final.status == "partial" and final.counts == {"completed": 1, "rejected": 1}
    assert [s.progress for s in states] == sorted(s.progress for s in states)
    assert final.progress == 100.0 and final.jobs[0].download_url == f"/download/{first.job_id}/stl"
    assert client.batch_status(created.batch_id) == final

    # Uploaded jobs by id (JSON): the same photo and options complete from the cache.
    upload = client.upload(image)
    again = client.batch(job_ids=[upload.job_id], format="stl", quality=1)
    assert [(j.index, j.job_id) for j in again.jobs] == [(0, upload.job_id)]
    polled = list(client.watch_batch(again.batch_id, mode="poll"))
    assert polled[-1].status == "completed" and polled[-1].counts == {"completed": 1}
    assert client.status(upload.job_id).cached

    with pytest.raises(NotFound) as unknown:
        client.batch_status("b" * 32)
    assert unknown.value.code == "batch_not_found"
    with pytest.raises(NotFound):
        list(client.watch_batch("b" * 32))


def test_a_prompt_becomes_a_picture_through_the_client(text_app: Service, tmp_path: Path) -> None:
    with OrfeasClient(text_app.url, timeout=60.0) as client:
        accepted = client.text_to_image(PROMPT, **PICTURE)
        assert accepted.source == "prompt" and accepted.stages == ["text_to_image"]
        assert accepted.status in ("queued", "running", "completed")
        assert accepted.text_to_image is not None
        assert accepted.text_to_image.prompt_sha256 == prompt_sha256(PROMPT)
        assert accepted.text_to_image.seed == 41
        job = client.wait(accepted.job_id)
        assert job.status == "completed" and job.outputs == {}, job.error
        assert job.text_to_image is not None and job.text_to_image.made

        path = client.download_image(job.job_id, tmp_path)
        assert path == tmp_path / f"{job.job_id}.png"  # the served name
        assert png(path.read_bytes()).shape[:2] == (64, 64)
        with pytest.raises(Conflict) as no_model:
            client.download(job.job_id, "glb")
        assert no_model.value.code == "job_conflict"
        with pytest.raises(ValidationFailed) as over:  # over this service's max_steps
            client.text_to_image(PROMPT, steps=61)
        assert over.value.code == "validation_error" and "steps" in over.value.message
