"""Webhooks end to end in one process: the real API and registry, a real receiver on
127.0.0.1 (allowed by config), signed deliveries, retries after 500s, and the journal
keeping a pending delivery (and a subscription) across a registry restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve_app.webhooks.records import Subscription, TargetKind
from tests.unit.inprocess import InProcessService, app_config, in_process_service
from tests.webhook_receiver import running_receiver

SECRET = "unit-test-secret"


def webhooks(**extra: Any) -> dict[str, Any]:
    """A webhooks block that lets the tests' receiver on 127.0.0.1 be sent to, quickly."""
    return {
        "secret": SECRET,
        "http_hosts": ["127.0.0.1"],
        "internal_hosts": ["127.0.0.1"],
        "first_backoff_s": 0.05,
        "max_backoff_s": 0.2,
        "timeout_s": 5,
        **extra,
    }


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)
    return found


def deliveries(service: InProcessService, job_id: str) -> list[dict[str, Any]]:
    answer = service.http.get(f"/api/jobs/{job_id}/deliveries")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["deliveries"]
    return found


def delivered(service: InProcessService, job_id: str) -> dict[str, Any] | None:
    found = deliveries(service, job_id)
    return found[0] if found and found[0]["state"] == "delivered" else None


def generate(service: InProcessService, job_id: str, url: str) -> None:
    service.complete_from_cache(job_id, quality=2)
    answer = service.http.post(
        "/api/generate-3d", json={"job_id": job_id, "quality": 2, "callback_url": url}
    )
    assert answer.status_code == 202, answer.text


def test_a_completed_job_is_posted_signed_and_retried_after_500s(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks())
    with running_receiver(script=[500, 500]) as receiver, in_process_service(config) as service:
        job_id = service.upload()
        generate(service, job_id, receiver.url("/hooks/orfeas"))
        record = wait_for(lambda: delivered(service, job_id), "the delivery succeeded")

        posts = receiver.posts()
        assert [p.answered for p in posts] == [500, 500, 200]
        assert [a["status_code"] for a in record["attempts"]] == [500, 500, 200]
        assert record["event"] == "job.completed" and record["next_try_at"] is None
        assert all(p.path == "/hooks/orfeas" and p.verified(SECRET) for p in posts)
        assert not posts[0].verified("another-secret")
        assert {p.headers["orfeas-delivery"] for p in posts} == {record["delivery_id"]}
        body = json.loads(posts[-1].body)
        assert body["job_id"] == job_id and body["status"] == "completed"
        assert body["download_url"] == f"/download/{job_id}/glb"
        assert body["status_url"] == f"/api/job-status/{job_id}"


def test_a_redirect_is_not_followed_and_a_timeout_is_retried(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks(timeout_s=0.3))
    with (
        running_receiver(script=[307], stalls=2, stall_s=1.0) as receiver,
        in_process_service(config) as service,
    ):
        job_id = service.upload()
        generate(service, job_id, receiver.url("/h"))
        record = wait_for(lambda: delivered(service, job_id), "the delivery succeeded")
        attempts = record["attempts"]
        assert [a["status_code"] for a in attempts] == [None, None, 307, 200]
        assert all("no answer within" in a["error"] for a in attempts[:2])
        assert {p.path for p in receiver.posts()} == {"/h"}  # never /elsewhere


def test_a_failed_job_is_posted_with_its_error(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks())
    with running_receiver() as receiver, in_process_service(config) as service:
        job_id = service.upload()
        # No generation deployment and nothing in the cache: the run fails.
        answer = service.http.post(
            "/api/generate-3d", json={"job_id": job_id, "callback_url": receiver.url()}
        )
        assert answer.status_code == 202, answer.text
        wait_for(lambda: delivered(service, job_id), "the delivery succeeded")
        body = json.loads(receiver.posts()[0].body)
        assert body["event"] == "job.failed" and body["status"] == "failed"
        assert body["error"]["code"] and body["download_url"] is None


def test_a_pending_delivery_survives_a_registry_restart(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks(first_backoff_s=0.2, max_backoff_s=0.2))
    with running_receiver(script=[500] * 1000) as receiver:
        with in_process_service(config) as service:
            job_id = service.upload()
            generate(service, job_id, receiver.url())
            wait_for(lambda: len(receiver.posts()) >= 2, "two attempts")
            before = deliveries(service, job_id)[0]
            assert before["state"] == "pending" and before["next_try_at"] is not None
        # The registry stopped with the delivery pending; the receiver now accepts.
        with receiver.lock:
            receiver.script.clear()
        sent_before = len(receiver.posts())
        with in_process_service(config) as restarted:
            after = wait_for(lambda: delivered(restarted, job_id), "delivered after a restart")
        assert after["delivery_id"] == before["delivery_id"]
        assert len(after["attempts"]) >= len(before["attempts"]) + 1
        assert [a["status_code"] for a in after["attempts"]][-1] == 200
        assert receiver.posts()[-1].answered == 200 and len(receiver.posts()) > sent_before


def test_a_subscription_survives_a_registry_restart(tmp_path: Path) -> None:
    """A job's run ends after the restart of the registry that accepted its callback."""
    config = app_config(tmp_path, webhooks=webhooks())
    with running_receiver() as receiver:
        with in_process_service(config) as service:
            job_id = service.upload()
            # Subscribed to the job's first run, before it exists (as a restart can find it).
            subscription = Subscription(TargetKind.JOB, job_id, receiver.url(), run=1)
            service.run(lambda: service.registry.subscribe(subscription))
        with in_process_service(config) as restarted:
            restarted.complete_from_cache(job_id, quality=2)
            answer = restarted.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 2})
            assert answer.status_code == 202, answer.text
            wait_for(lambda: delivered(restarted, job_id), "the delivery after the restart")
        assert json.loads(receiver.posts()[0].body)["status"] == "completed"


def test_a_batch_is_posted_once_when_its_last_job_ends(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks())
    with running_receiver() as receiver, in_process_service(config) as service:
        done, failing = service.upload(name="chelsea"), service.upload(name="astronaut")
        service.complete_from_cache(done, quality=2)
        answer = service.http.post(
            "/api/batch-generate",
            json={
                "job_ids": [done, failing],
                "params": {"quality": 2},
                "callback_url": receiver.url("/batch"),
            },  # fmt: skip
        )
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]

        def batch_delivered() -> list[Any] | None:
            found = service.http.get(f"/api/batches/{batch_id}/deliveries").json()["deliveries"]
            return found if found and found[0]["state"] == "delivered" else None

        wait_for(batch_delivered, "the batch's delivery")
        (post,) = receiver.posts()
        body = json.loads(post.body)
        assert post.verified(SECRET) and body["batch_id"] == batch_id
        assert body["event"] == "batch.partial" and body["status"] == "partial"
        assert [(j["job_id"], j["status"]) for j in body["jobs"]] == [
            (done, "completed"),
            (failing, "failed"),
        ]
        assert deliveries(service, done) == []  # the batch's callback, not each job's


def test_refused_callbacks_are_422_and_start_nothing(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks=webhooks(internal_hosts=[]))
    with in_process_service(config) as service:
        job_id = service.upload()
        for url, reason in [
            ("http://127.0.0.1:9/h", "a loopback address"),
            ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
            ("https://10.0.0.8/h", "a private address"),
            ("http://example.com/h", "must use https"),
        ]:
            answer = service.http.post(
                "/api/generate-3d", json={"job_id": job_id, "callback_url": url}
            )
            assert answer.status_code == 422, answer.text
            error = answer.json()["error"]
            assert error["code"] == "callback_url_refused" and reason in error["message"]
        assert service.http.get(f"/api/job-status/{job_id}").json()["status"] == "uploaded"
        answer = service.http.post(
            "/api/text-to-image", json={"prompt": "a cat", "callback_url": "ftp://x.example/"}
        )
        assert answer.status_code in (422, 503), answer.text


def test_without_a_signing_secret_a_callback_is_refused(tmp_path: Path) -> None:
    config = app_config(tmp_path, webhooks={"http_hosts": ["127.0.0.1"]})
    with in_process_service(config) as service:
        job_id = service.upload()
        answer = service.http.post(
            "/api/generate-3d", json={"job_id": job_id, "callback_url": "http://127.0.0.1:9/"}
        )
        assert answer.status_code == 422
        assert "no signing secret" in answer.json()["error"]["message"]
        assert service.http.get(f"/api/jobs/{'f' * 32}/deliveries").status_code == 404
