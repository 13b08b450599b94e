"""The client's own decisions about requests, against httpx's MockTransport: what is sent
again after a refusal, what is refused before anything is sent, downloads that break and
answers of the wrong kind.

Every route's requests and answers are tested against the real service in
tests/integration/test_client.py and test_cli.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serve_app.client import (
    AsyncOrfeasClient,
    OrfeasClient,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
)
from tests.unit.test_client_protocol import JOB_ID

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


def test_bad_arguments_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    service = Recorder(lambda r: httpx.Response(500))
    client = service.client()
    refused: list[Callable[[], object]] = [
        lambda: client.optimize(JOB_ID, 10),  # under the route's 100 faces
        lambda: client.optimize(JOB_ID, 500, variant="../x"),
        lambda: client.apply_material(JOB_ID, {"metallic": 2.0, "roughness": 0.1}),
        lambda: client.apply_material(JOB_ID, "x" * 65),
        lambda: client.preview(JOB_ID, background="red"),
        lambda: client.preview(JOB_ID, width=4096),
        lambda: client.text_to_image("bad\x07prompt"),  # control characters
        lambda: client.text_to_image("a mug", width=100),  # not a multiple of 8
        lambda: client.batch([b"png"] * 17),
        lambda: client.batch(),
        lambda: client.batch_status("../../etc"),
        lambda: client.download(JOB_ID, "fbx"),
        lambda: client.download("../../etc/passwd", "stl"),
        lambda: client.download(JOB_ID, "stl", tmp_path, variant="ab"),
    ]
    for call in refused:
        with pytest.raises((ValidationError, ValueError)):
            call()
    assert service.requests == [] and list(tmp_path.iterdir()) == []


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
    with service.client() as client:
        with pytest.raises(UnexpectedResponse, match="JobStatusResponse"):
            client.status(JOB_ID)
        with pytest.raises(UnexpectedResponse, match="BatchStatus"):
            client.batch_status(JOB_ID)
        with pytest.raises(UnexpectedResponse, match="not a PNG"):
            client.preview(JOB_ID)
