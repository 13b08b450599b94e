"""Requests the client builds and answers it reads, against httpx's MockTransport.

The routes here answer as the published contract says: optimize-mesh, apply-material,
preview-3d, batch-generate and its status, thumbnails, a text-to-image job's picture,
variant downloads. (Routes the service serves today are tested against it, in
tests/integration/test_client.py and tests/unit/test_client_inprocess.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serve_app.client import (
    AsyncOrfeasClient,
    NotFound,
    OrfeasClient,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationFailed,
)
from serve_app.meshtools.materials import CustomMaterial
from tests.unit.test_client_protocol import JOB_ID, job

VARIANT = "ab" * 32
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport that answers with ``handler`` and keeps every request."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def client(self, **options: Any) -> OrfeasClient:
        options.setdefault("retry", RetryPolicy(max_attempts=3, max_wait_s=5.0, backoff_s=0.0))
        return OrfeasClient("http://svc", api_key="k" * 16, transport=self.transport, **options)

    def async_client(self, **options: Any) -> AsyncOrfeasClient:
        options.setdefault("retry", RetryPolicy(max_attempts=3, max_wait_s=5.0, backoff_s=0.0))
        return AsyncOrfeasClient(
            "http://svc", api_key="k" * 16, transport=self.transport, **options
        )

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def error(status: int, code: str, message: str = "refused", **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message}}
    return httpx.Response(status, json=body, headers=headers)


def variant_answer(request: httpx.Request) -> httpx.Response:
    downloads = {f: f"/download/{JOB_ID}/{f}?variant={VARIANT}" for f in ("glb", "stl")}
    body = {"job_id": JOB_ID, "variant_id": VARIANT, "faces": 1200, "watertight": True}
    return httpx.Response(200, json={**body, "downloads": downloads, "operation": "optimize"})


def test_optimize_sends_the_contracts_body_and_reads_the_variant() -> None:
    service = Recorder(variant_answer)
    with service.client() as client:
        variant = client.optimize(JOB_ID, 1200, variant=VARIANT)
    request = service.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/optimize-mesh")
    assert request.headers["authorization"] == "Bearer " + "k" * 16
    assert service.body() == {
        "job_id": JOB_ID, "variant": VARIANT, "target_faces": 1200, "repair": True,
    }  # fmt: skip
    assert (variant.variant_id, variant.faces, variant.watertight) == (VARIANT, 1200, True)
    assert variant.downloads["stl"].endswith(VARIANT)
    with pytest.raises(ValidationError):  # out of the service's bounds: never sent
        service.client().optimize(JOB_ID, 10)
    assert len(service.requests) == 1


def test_apply_material_takes_a_preset_name_or_custom_factors() -> None:
    service = Recorder(variant_answer)
    with service.client() as client:
        client.apply_material(JOB_ID, "metal")
        client.apply_material(JOB_ID, {"base_color": "#c0392b", "metallic": 0.2, "roughness": 0.5})
        client.apply_material(JOB_ID, CustomMaterial(metallic=1.0, roughness=0.1), variant=VARIANT)
    assert [service.body(i)["material"] for i in range(3)] == [
        "metal",
        {"base_color": "#c0392b", "metallic": 0.2, "roughness": 0.5},
        {"metallic": 1.0, "roughness": 0.1},
    ]
    assert service.body(2)["variant"] == VARIANT
    with pytest.raises(ValidationError):
        service.client().apply_material(JOB_ID, {"metallic": 2.0, "roughness": 0.1})


def test_an_unknown_variant_is_a_typed_not_found() -> None:
    service = Recorder(lambda r: error(404, "variant_not_found", "job has no such variant"))
    with service.client() as client, pytest.raises(NotFound) as raised:
        client.optimize(JOB_ID, 500, variant=VARIANT)
    assert (raised.value.code, raised.value.message) == (
        "variant_not_found",
        "job has no such variant",
    )
    assert len(service.requests) == 1


def test_preview_returns_the_png_and_writes_it_atomically(tmp_path: Path) -> None:
    service = Recorder(
        lambda r: httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    )
    with service.client() as client:
        png = client.preview(JOB_ID, tmp_path / "view.png", width=256, background="transparent")
    assert png == PNG and (tmp_path / "view.png").read_bytes() == PNG
    assert service.body() == {
        "job_id": JOB_ID, "width": 256, "height": 512, "azimuth_deg": 30.0,
        "elevation_deg": 20.0, "background": "transparent",
    }  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]
    with pytest.raises(ValidationError):
        service.client().preview(JOB_ID, background="red")


def batch_answer(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        jobs = [{"job_id": JOB_ID, "status": "completed"}]
        body = {"status": "completed", "progress": 100.0, "counts": {"completed": 1}, "jobs": jobs}
        return httpx.Response(200, json=body)
    jobs = [
        {"job_id": JOB_ID, "status": "queued"},
        {"job_id": None, "status": "refused", "error": {"code": "invalid_image", "message": "x"}},
    ]
    return httpx.Response(202, json={"batch_id": "b1", "jobs": jobs})


def test_a_batch_of_images_is_one_multipart_request_with_params(tmp_path: Path) -> None:
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"jpeg bytes")
    service = Recorder(batch_answer)
    with service.client() as client:
        batch = client.batch([photo, b"png bytes"], format="stl", quality=3)
        status = client.batch_status(batch.batch_id)
    post = service.requests[0]
    assert post.url.path == "/api/batch-generate"
    assert post.headers["content-type"].startswith("multipart/form-data")
    content = post.content
    assert content.count(b'name="images"') == 2 and b'filename="cat.jpg"' in content
    assert b'{"format":"stl","quality":3}' in content
    assert [j.status for j in batch.jobs] == ["queued", "refused"]
    assert batch.jobs[1].error == {"code": "invalid_image", "message": "x"}
    assert service.requests[1].url.path == "/api/batches/b1"
    assert status.counts == {"completed": 1}


def test_a_batch_of_uploaded_jobs_is_json_and_is_never_retried_after_a_proxys_503() -> None:
    service = Recorder(lambda r: httpx.Response(503, text="no server is available"))
    with service.client() as client, pytest.raises(ServiceUnavailable) as raised:
        client.batch(job_ids=[JOB_ID], quality=2)
    assert service.body() == {"job_ids": [JOB_ID], "params": {"quality": 2}}
    assert raised.value.code == "service_unavailable" and len(service.requests) == 1
    with pytest.raises(ValueError):
        client.batch()


def test_a_create_request_is_retried_after_a_refusal_before_admission() -> None:
    answers = [error(429, "rate_limited", **{"Retry-After": "0"}), error(503, "overloaded")]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"job_id": JOB_ID, "status": "uploaded", "sha256": "0",
                                         "size_bytes": 3, "media_type": "image/png"})  # fmt: skip

    service = Recorder(handler)
    with service.client() as client:
        assert client.upload(b"png").job_id == JOB_ID
    assert len(service.requests) == 3
    for request in service.requests:  # the same photo each time
        assert b'name="image"; filename="image"' in request.content
        assert b"\r\n\r\npng\r\n" in request.content


def test_a_retry_that_would_wait_past_the_bound_is_not_waited_for() -> None:
    service = Recorder(lambda r: error(429, "rate_limited", **{"Retry-After": "30"}))
    with service.client() as client, pytest.raises(RateLimited) as raised:
        client.status(JOB_ID)
    assert raised.value.retry_after == 30.0 and len(service.requests) == 1


def test_text_to_image_reads_a_job_or_asks_for_the_job_of_a_bare_id(tmp_path: Path) -> None:
    queued = job(status="queued", stage=None).model_dump(mode="json")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/text-to-image":
            return httpx.Response(202, json={"job_id": JOB_ID, "status": "queued"})
        if request.url.path == f"/api/jobs/{JOB_ID}/image":
            return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
        return httpx.Response(200, json=queued)

    service = Recorder(handler)
    with service.client() as client:
        started = client.text_to_image("a red teapot", seed=3, generate_3d={"format": "stl"})
        saved = client.download_image(JOB_ID, tmp_path)
    assert started.status == "queued"
    assert service.body(0) == {
        "prompt": "a red teapot",
        "seed": 3,
        "generate_3d": {"format": "stl"},
    }
    assert service.requests[1].url.path == f"/api/job-status/{JOB_ID}"
    assert saved == tmp_path / f"{JOB_ID}.png" and saved.read_bytes() == PNG
    with pytest.raises(ValidationError):  # control characters are refused before sending
        service.client().text_to_image("bad\x07prompt")


def model_answer(request: httpx.Request) -> httpx.Response:
    headers = {"content-disposition": f'attachment; filename="{JOB_ID}_model.stl"'}
    return httpx.Response(200, content=b"solid x" * 1000, headers=headers)


def test_download_names_the_file_as_served_and_asks_for_the_variant(tmp_path: Path) -> None:
    service = Recorder(model_answer)
    with service.client() as client:
        into_dir = client.download(JOB_ID, "stl", tmp_path, variant=VARIANT)
        as_file = client.download(JOB_ID, "stl", tmp_path / "sub" / "cube.stl")
        thumb = client.thumbnail(JOB_ID, tmp_path / "t.png")
    assert into_dir == tmp_path / f"{JOB_ID}_model.stl"
    assert service.requests[0].url.params["variant"] == VARIANT
    assert service.requests[2].url.path == f"/api/jobs/{JOB_ID}/thumbnail"
    assert as_file.read_bytes() == b"solid x" * 1000 and thumb.exists()
    with pytest.raises(ValueError):
        client.download(JOB_ID, "fbx")
    with pytest.raises(ValueError):
        client.download("../../etc/passwd", "stl")


def test_a_cut_download_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "model.glb"
    target.write_bytes(b"the old model")

    def short(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 10, headers={"content-length": "500"})

    with Recorder(short).client() as client, pytest.raises(TransportError, match="10 of 500"):
        client.download(JOB_ID, "glb", target)
    assert target.read_bytes() == b"the old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.glb"]


def test_a_success_answer_of_the_wrong_shape_is_an_unexpected_response() -> None:
    service = Recorder(lambda r: httpx.Response(200, text="<html>a login page</html>"))
    with service.client() as client, pytest.raises(UnexpectedResponse, match="JobStatusResponse"):
        client.status(JOB_ID)


def test_the_async_twin_builds_the_same_requests_and_raises_the_same_errors(
    tmp_path: Path,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/preview-3d":
            return httpx.Response(200, content=PNG)
        if request.url.path.startswith("/download/"):
            return model_answer(request)
        if request.url.path == "/api/generate-3d":
            return error(422, "validation_error", "generator: not enabled")
        return variant_answer(request)

    service = Recorder(handler)

    async def scenario() -> None:
        async with service.async_client() as client:
            await client.optimize(JOB_ID, 300)
            await client.apply_material(JOB_ID, "rubber")
            assert await client.preview(JOB_ID, elevation_deg=-10) == PNG
            path = await client.download(JOB_ID, "stl", tmp_path)
            assert path.read_bytes() == b"solid x" * 1000
            with pytest.raises(ValidationFailed, match="not enabled"):
                await client.generate(JOB_ID, generator="nope")

    asyncio.run(scenario())
    paths = [r.url.path for r in service.requests]
    assert paths == [
        "/api/optimize-mesh",
        "/api/apply-material",
        "/api/preview-3d",
        f"/download/{JOB_ID}/stl",
        "/api/generate-3d",
    ]
    assert service.body(2)["elevation_deg"] == -10.0
    assert service.body(4) == {"job_id": JOB_ID, "generator": "nope"}
