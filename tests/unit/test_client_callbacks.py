"""``callback_url`` and the deliveries in the Python client: each method that starts work
sends the URL where its route reads it (a JSON field, the ``params`` part, a form field),
checked before anything is sent; ``deliveries`` and ``batch_deliveries`` read the API's
model. Then the same requests against the in-process API and a real receiver."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serve_app.client import calls
from serve_app.schemas.webhooks import AttemptResponse, DeliveriesResponse, DeliveryResponse
from tests.meshes import binary_stl, cube
from tests.support import encode, photo
from tests.unit.inprocess import app_config, in_process_service
from tests.unit.test_client_protocol import JOB_ID, job
from tests.unit.test_client_requests import Recorder
from tests.unit.test_webhook_delivery import webhooks
from tests.webhook_receiver import running_receiver

HOOK = "https://example.com/hooks/orfeas"
BATCH_ID = "f" * 32


def answer(request: httpx.Request) -> httpx.Response:
    """What the service answers each route with: a new job, a batch, deliveries."""
    path = request.url.path
    if path == "/api/upload-image":
        return httpx.Response(200, json={"job_id": JOB_ID, "status": "uploaded", "sha256": "0",
                                         "size_bytes": 3, "media_type": "image/png"})  # fmt: skip
    if path == "/api/batch-generate":
        return httpx.Response(202, json={"batch_id": BATCH_ID, "jobs": []})
    if path.endswith("/deliveries"):
        target = path.split("/")[3]
        return httpx.Response(200, content=deliveries_body(target).model_dump_json())
    return httpx.Response(202, content=job(status="queued", stage=None).model_dump_json())


def deliveries_body(target_id: str) -> DeliveriesResponse:
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    attempts = [
        AttemptResponse(at=at, status_code=None, error="timeout", seconds=10.0),
        AttemptResponse(at=at, status_code=200, error=None, seconds=0.02),
    ]
    delivery = DeliveryResponse(
        delivery_id="9c1e" * 8, event="job.completed", url=HOOK, run=1, state="delivered",
        attempts=attempts, next_try_at=None, give_up_at=at, created_at=at,
    )  # fmt: skip
    return DeliveriesResponse(target_id=target_id, deliveries=[delivery])


def form(request: httpx.Request) -> dict[str, bytes]:
    """A multipart request's parts by field name (the last of a repeated one)."""
    head = f"content-type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
    parts: dict[str, bytes] = {}
    for part in message.walk():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts[name] = part.get_payload(decode=True)
    return parts


def starts(client: Any, url: str | None) -> list[Any]:
    """Every method that starts a job or batch, once, with ``callback_url=url``."""
    return [
        client.generate(JOB_ID, quality=2, callback_url=url),
        client.submit(b"png", format="stl", callback_url=url),
        client.text_to_image("a mug", generate_3d={"quality": 3}, callback_url=url),
        client.texture_mesh(b"solid", {"front": b"png"}, quality=2, callback_url=url),
        client.batch(job_ids=[JOB_ID], quality=2, callback_url=url),
        client.batch([b"png", b"jpg"], quality=2, callback_url=url),
    ]


def sent(service: Recorder) -> list[tuple[str, Any]]:
    """(path, what the route reads) of each request: the JSON body or the form's parts."""
    out: list[tuple[str, Any]] = []
    for request in service.requests:
        kind = request.headers.get("content-type", "")
        read = form(request) if kind.startswith("multipart/") else json.loads(request.content)
        out.append((request.url.path, read))
    return out


def test_callback_url_goes_where_each_route_reads_it_from_both_clients() -> None:
    synced = Recorder(answer)
    with synced.client() as client:
        starts(client, HOOK)

    awaited = Recorder(answer)

    async def scenario() -> None:
        async with awaited.async_client() as client:
            for made in starts(client, HOOK):
                await made

    asyncio.run(scenario())
    requests = sent(synced)
    assert sent(awaited) == requests  # the same requests, built once
    bodies = [read for path, read in requests if path != "/api/upload-image"]
    generate, submitted, text, texture, job_batch, photo_batch = bodies
    assert generate == {"job_id": JOB_ID, "quality": 2, "callback_url": HOOK}
    assert submitted == {"job_id": JOB_ID, "format": "stl", "callback_url": HOOK}
    assert text == {"prompt": "a mug", "generate_3d": {"quality": 3}, "callback_url": HOOK}
    assert json.loads(texture["params"]) == {"format": "glb", "quality": 2, "callback_url": HOOK}
    assert job_batch == {"job_ids": [JOB_ID], "params": {"quality": 2}, "callback_url": HOOK}
    assert photo_batch["callback_url"] == HOOK.encode()  # a form field beside params
    assert json.loads(photo_batch["params"]) == {"quality": 2}


def test_without_a_callback_url_no_field_is_sent() -> None:
    service = Recorder(answer)
    with service.client() as client:
        starts(client, None)
    for path, read in sent(service):
        params = read.get("params", {})
        inner = json.loads(params) if isinstance(params, bytes) else params  # a form part
        assert "callback_url" not in {**read, **inner}, path


@pytest.mark.parametrize("url", ["http:/", "https://example.com/" + "x" * 2048])
def test_a_bad_callback_url_is_refused_before_anything_is_sent(url: str) -> None:
    service = Recorder(answer)
    client = service.client()
    for method in (
        lambda: client.generate(JOB_ID, callback_url=url),
        lambda: client.text_to_image("a mug", callback_url=url),
        lambda: client.texture_mesh(b"solid", {"front": b"png"}, callback_url=url),
        lambda: client.batch([b"png"], callback_url=url),
        lambda: client.batch(job_ids=[JOB_ID], callback_url=url),
    ):
        with pytest.raises(ValidationError, match="callback_url"):
            method()
    with pytest.raises(ValueError, match="not a batch id"):
        client.batch_deliveries("../" + BATCH_ID)
    assert service.requests == []


def test_deliveries_are_read_as_the_api_s_model_from_both_clients() -> None:
    service = Recorder(answer)
    with service.client() as client:
        found = [client.deliveries(JOB_ID), client.batch_deliveries(BATCH_ID)]

    async def scenario() -> list[DeliveriesResponse]:
        async with service.async_client() as client:
            return [await client.deliveries(JOB_ID), await client.batch_deliveries(BATCH_ID)]

    found += asyncio.run(scenario())
    paths = [(r.method, r.url.path) for r in service.requests]
    assert (
        paths
        == [
            ("GET", f"/api/jobs/{JOB_ID}/deliveries"),
            ("GET", f"/api/batches/{BATCH_ID}/deliveries"),
        ]
        * 2
    )
    assert [f.target_id for f in found] == [JOB_ID, BATCH_ID] * 2
    (delivery,) = found[0].deliveries
    assert isinstance(delivery.attempts[0].at, datetime) and delivery.state == "delivered"
    assert [(a.status_code, a.error) for a in delivery.attempts] == [(None, "timeout"), (200, None)]


def test_the_requests_with_a_callback_are_what_the_api_reads(tmp_path: Path) -> None:
    """A generate-3d (JSON), a photo batch (a form field) and a texture-mesh (its params
    part) each post to the receiver; the deliveries read back through the client's calls."""
    config = app_config(tmp_path, webhooks=webhooks())
    with running_receiver() as receiver, in_process_service(config) as service:

        def send(call: calls.Call[Any]) -> Any:
            response = service.http.request(call.method, call.path, **call.send_args())
            assert response.is_success, response.text
            return call.read(response)

        job_id = service.upload()
        service.complete_from_cache(job_id, quality=2)
        send(calls.generate(job_id, None, {"quality": 2}, receiver.url("/job")))
        picture = encode(photo("coffee")[:120, :160])
        service.seed_cache(picture, quality=2)
        batch = send(calls.batch([picture], None, None, {"quality": 2}, receiver.url("/batch")))
        mesh = binary_stl(*cube())
        views = {"front": encode(photo("chelsea")[:96, :128])}
        textured = send(calls.texture_mesh(mesh, views, {}, receiver.url("/texture")))

        def delivered(call: calls.Call[DeliveriesResponse]) -> DeliveryResponse | None:
            found = send(call).deliveries
            return found[0] if found and found[0].state == "delivered" else None

        records = [
            wait(lambda: delivered(calls.deliveries(job_id))),
            wait(lambda: delivered(calls.deliveries(batch.batch_id, "batch"))),
            wait(lambda: delivered(calls.deliveries(textured.job_id))),
        ]
        posts = {p.path: json.loads(p.body) for p in receiver.posts()}
    assert [(r.event, r.url) for r in records] == [
        ("job.completed", receiver.url("/job")),
        ("batch.completed", receiver.url("/batch")),
        (f"job.{posts['/texture']['status']}", receiver.url("/texture")),
    ]
    assert posts["/batch"]["batch_id"] == batch.batch_id
    assert posts["/texture"]["job_id"] == textured.job_id


def wait(found: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, "never delivered"
        time.sleep(0.05)
    return value
