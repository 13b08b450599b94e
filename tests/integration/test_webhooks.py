"""Webhooks over real Ray Serve: a receiver on 127.0.0.1 (allowed by the session's config)
gets a job's and a batch's signed final status, retried after 500s, also across a restart
of the registry actor; refused targets start nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from serve_app.client import OrfeasClient
from serve_app.schemas.webhooks import DeliveriesResponse, DeliveryResponse
from tests.client import Api, Service
from tests.serving import WEBHOOK_SECRET
from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.integration

#: The session application's registry (tests/serving.py's app_args name none).
REGISTRY = "job_registry"


def eventually(predicate: Callable[[], Any], what: str, timeout_s: float = 120.0) -> Any:
    """Poll ``predicate`` until it is truthy (a bound on the test, not a figure it checks)."""
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
    return found


def delivered(api: Api, path: str) -> dict[str, Any] | None:
    answer = api.client.get(path)
    if answer.status_code != 200:  # the registry restarting
        return None
    found = answer.json()["deliveries"]
    return found[0] if found and found[0]["state"] == "delivered" else None


def test_a_job_end_is_posted_signed_and_retried_after_500s(api: Api) -> None:
    with running_receiver(script=[500, 500]) as receiver:
        job_id = api.upload(api.unique_photo())
        answer = api.generate(job_id, format="stl", quality=1, callback_url=receiver.url("/h"))
        assert answer.status_code == 202, answer.text
        assert api.wait(job_id)["status"] == "completed"
        record = eventually(
            lambda: delivered(api, f"/api/jobs/{job_id}/deliveries"), "the job's delivery"
        )
        posts = receiver.posts()
    assert [p.answered for p in posts] == [500, 500, 200]
    assert [a["status_code"] for a in record["attempts"]] == [500, 500, 200]
    assert all(p.verified(WEBHOOK_SECRET) for p in posts)
    assert {p.headers["orfeas-delivery"] for p in posts} == {record["delivery_id"]}
    body = json.loads(posts[-1].body)
    assert (body["event"], body["job_id"], body["format"]) == ("job.completed", job_id, "stl")
    assert api.client.get(body["download_url"]).status_code == 200


def test_a_batch_end_is_posted_once(api: Api) -> None:
    with running_receiver() as receiver:
        files = [("images", ("a.jpg", api.unique_photo(), "image/jpeg")),
                 ("images", ("b.txt", b"not an image", "text/plain"))]  # fmt: skip
        data = {"params": '{"quality": 1}', "callback_url": receiver.url("/batch")}
        answer = api.client.post("/api/batch-generate", files=files, data=data)
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]
        eventually(
            lambda: delivered(api, f"/api/batches/{batch_id}/deliveries"), "the batch's delivery"
        )
        (post,) = receiver.posts()
    body = json.loads(post.body)
    assert post.verified(WEBHOOK_SECRET) and body["batch_id"] == batch_id
    assert body["status"] == "partial"
    assert [j["status"] for j in body["jobs"]] == ["completed", "rejected"]


def first_delivered(found: DeliveriesResponse) -> DeliveryResponse | None:
    """The first delivery, once it has succeeded."""
    first = next(iter(found.deliveries), None)
    return first if first is not None and first.state == "delivered" else None


def test_the_python_client_sends_callback_url_and_reads_the_deliveries(service: Service) -> None:
    with (
        running_receiver(script=[500]) as receiver,
        OrfeasClient(service.url, timeout=60.0) as client,
    ):
        hook = receiver.url("/client")
        job = client.submit(Api.unique_photo(), format="stl", quality=1, callback_url=hook)
        assert client.wait(job.job_id).status == "completed"
        record = eventually(
            lambda: first_delivered(client.deliveries(job.job_id)), "the job's delivery"
        )
        batch = client.batch([Api.unique_photo()], quality=1, callback_url=receiver.url("/b"))
        batch_record = eventually(
            lambda: first_delivered(client.batch_deliveries(batch.batch_id)), "the batch's"
        )
        posts = receiver.posts()
    assert (record.event, record.url, record.run) == ("job.completed", hook, 1)
    assert [a.status_code for a in record.attempts] == [500, 200]
    assert (batch_record.event, batch_record.url) == ("batch.completed", receiver.url("/b"))
    assert [(p.path, p.answered) for p in posts] == [("/client", 500), ("/client", 200),
                                                      ("/b", 200)]  # fmt: skip
    assert all(p.verified(WEBHOOK_SECRET) for p in posts)
    assert json.loads(posts[-1].body)["batch_id"] == batch.batch_id


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.1.2.3/hook", "private"),
        ("http://example.com/hook", "must use https"),
    ],
)
def test_a_refused_target_is_422_and_starts_nothing(api: Api, url: str, reason: str) -> None:
    job_id = api.upload(api.unique_photo())
    answer = api.generate(job_id, quality=1, callback_url=url)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "callback_url_refused" and reason in error["message"]
    assert api.status(job_id)["status"] == "uploaded"


def test_a_pending_delivery_is_sent_after_the_registry_restarts(api: Api) -> None:
    from tests.fault.harness import kill_registry, wait_for_registry

    with running_receiver(script=[503] * 10_000) as receiver:
        job_id = api.upload(api.unique_photo())
        answer = api.generate(job_id, quality=1, callback_url=receiver.url("/restart"))
        assert answer.status_code == 202, answer.text
        assert api.wait(job_id)["status"] == "completed"
        eventually(lambda: len(receiver.posts()) >= 2, "two refused attempts")
        kill_registry(REGISTRY, restart=True)
        with receiver.lock:
            receiver.script.clear()  # from now on the receiver accepts
        wait_for_registry(REGISTRY)
        record = eventually(
            lambda: delivered(api, f"/api/jobs/{job_id}/deliveries"), "delivered after restart"
        )
        posts = receiver.posts()
    assert record["attempts"][-1]["status_code"] == 200 and len(record["attempts"]) >= 3
    assert posts[-1].answered == 200 and posts[-1].verified(WEBHOOK_SECRET)
    assert {p.headers["orfeas-delivery"] for p in posts} == {record["delivery_id"]}
