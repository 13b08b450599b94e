"""The client's parts that need no service: SSE decoding, events, retry decisions, errors."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from serve_app.client import (
    ApiError,
    JobEnded,
    JobState,
    NotFound,
    Progress,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    StageChanged,
    ValidationFailed,
)
from serve_app.client.errors import error_from_response, parse_retry_after
from serve_app.client.events import EventTracker
from serve_app.client.retry import may_retry
from serve_app.client.sse import SSEDecoder
from serve_app.schemas.jobs import JobStatusResponse
from tests.support import REPO

JOB_ID = "0123456789abcdef0123456789abcdef"
#: What the client and the CLI never load: the service's heavy libraries and its web app.
HEAVY = (
    "ray",
    "torch",
    "trimesh",
    "vtk",
    "vtkmodules",
    "pymeshlab",
    "diffusers",
    "transformers",
    "fastapi",
    "starlette",
)


def test_the_client_and_its_commands_import_neither_ray_nor_torch_nor_the_web_app() -> None:
    code = (
        "import sys, serve_app.client, serve_app.commands, serve_app.cli; "
        f"heavy = set({HEAVY!r}) & set(sys.modules); "
        "sys.exit(f'imported {sorted(heavy)}' if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout


def job(**fields: Any) -> JobStatusResponse:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "job_id": JOB_ID,
        "status": "running",
        "run": 1,
        "stage": "background_removal",
        "progress": 0.0,
        "eta_seconds": None,
        "error": None,
        "format": "glb",
        "quality": 5,
        "cached": False,
        "download_url": None,
        "outputs": {},
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
    }
    return JobStatusResponse.model_validate({**base, **fields})


# -- SSE -----------------------------------------------------------------------------


def decode(lines: list[str]) -> tuple[list[Any], SSEDecoder]:
    decoder = SSEDecoder()
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    return events, decoder


def test_sse_decoder_reads_the_service_stream_with_ids_retry_and_keepalives() -> None:
    events, decoder = decode(
        [
            "retry: 3000",
            "",
            "id: 4",
            'data: {"a":1}',
            "",
            ": keep-alive",
            "",
            "id: 5",
            "data: x",
            "",
        ]
    )
    assert [(e.id, e.data, e.event) for e in events] == [
        ("4", '{"a":1}', "message"),
        ("5", "x", "message"),
    ]
    assert decoder.retry_ms == 3000 and decoder.last_id == "5"


def test_sse_decoder_joins_data_lines_and_keeps_the_last_id_across_events() -> None:
    events, _ = decode(["id: 7", "event: job", "data:a", "data: b", "", "data: c", ""])
    assert [(e.id, e.event, e.data) for e in events] == [
        ("7", "job", "a\nb"),
        ("7", "message", "c"),
    ]


def test_sse_decoder_ignores_bad_fields_and_empty_events() -> None:
    events, decoder = decode(["id: 1", "", "retry: soon", "id: a\0b", "nonsense", "data", ""])
    assert [(e.id, e.data) for e in events] == [("1", "")]
    assert decoder.retry_ms is None


# -- events --------------------------------------------------------------------------


def test_events_name_the_first_state_stages_progress_and_one_end() -> None:
    tracker = EventTracker()
    states = [
        job(status="queued", stage=None, queue_position=2),
        job(status="queued", stage=None, queue_position=1),
        job(stage="background_removal", progress=0.0),
        job(stage="background_removal", progress=0.0),  # a repeat: nothing new
        job(stage="background_removal", progress=5.0, eta_seconds=9.0),
        job(stage="shape_generation", progress=10.0),
        job(stage="shape_generation", progress=10.0, cancel_requested=True),
        job(status="cancelled", stage="shape_generation", progress=10.0),
        job(status="cancelled", stage="shape_generation", progress=10.0),
    ]
    events = [tracker.update(s) for s in states]
    kinds = [type(e).__name__ if e else None for e in events]
    assert kinds == [
        "JobState",
        "Progress",
        "JobState",
        None,
        "Progress",
        "StageChanged",
        "Progress",
        "JobEnded",
        None,
    ]
    stage = events[5]
    assert isinstance(stage, StageChanged) and stage.previous_stage == "background_removal"
    end = events[7]
    assert isinstance(end, JobEnded) and not end.completed and end.kind == "ended"
    assert json.loads(json.dumps(end.to_json()))["job"]["status"] == "cancelled"


def test_an_ended_job_gives_its_error_code_and_message() -> None:
    error = {"code": "no_subject", "message": "no subject found"}
    event = EventTracker().update(job(status="failed", error=error))
    assert isinstance(event, JobEnded)
    assert (event.error_code, event.error_message) == ("no_subject", "no subject found")
    assert isinstance(EventTracker().update(job()), JobState)
    assert not isinstance(EventTracker().update(job()), Progress)


# -- errors --------------------------------------------------------------------------


def answer(status: int, body: Any = None, text: str = "", **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "http://svc/api/generate-3d")
    if body is not None:
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, text=text, headers=headers, request=request)


def test_an_error_answer_becomes_a_typed_error_with_the_service_code_and_fields() -> None:
    fields = [{"loc": ["body", "quality"], "message": "too high"}]
    body = {"error": {"code": "validation_error", "message": "quality: too high", "fields": fields}}
    error = error_from_response(answer(422, body))
    assert isinstance(error, ValidationFailed)
    assert (error.status, error.code, error.message) == (
        422,
        "validation_error",
        "quality: too high",
    )
    assert error.details == {"fields": fields} and error.method == "POST"
    busy = {"error": {"code": "rate_limited", "message": "too many requests"}}
    limited = error_from_response(answer(429, busy, **{"Retry-After": "3"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0
    missing = error_from_response(answer(404, {"error": {"code": "job_not_found", "message": "x"}}))
    assert isinstance(missing, NotFound) and str(missing) == "404 job_not_found: x"


def test_an_answer_that_is_not_the_services_own_gets_a_code_from_its_status() -> None:
    error = error_from_response(answer(502, text="<html><body>Bad   gateway</body></html>"))
    assert isinstance(error, ServerError) and error.code == "bad_gateway"
    assert error.message == "HTTP 502 Bad Gateway: <html><body>Bad gateway</body></html>"
    assert error_from_response(answer(503)).code == "service_unavailable"


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after(date, now=1_000_000.0) == pytest.approx(10.0)
    assert parse_retry_after(email.utils.formatdate(1.0, usegmt=True), now=50.0) == 0.0


# -- retries -------------------------------------------------------------------------


def api_error(status: int, code: str, retry_after: float | None = 1.0) -> ApiError:
    cls = {429: RateLimited, 503: ServiceUnavailable}.get(status, ApiError)
    return cls(status, code, "m", retry_after=retry_after)


@pytest.mark.parametrize(
    ("status", "code", "idempotent", "retried"),
    [
        (429, "rate_limited", False, True),  # refused by the guard or the registry's share
        (503, "overloaded", False, True),  # the registry's queue is full
        (503, "service_unavailable", False, False),  # a proxy: the request may have run
        (503, "model_unavailable", False, False),
        (503, "service_unavailable", True, True),
        (503, "model_unavailable", True, True),
        (503, "timed_out", True, True),  # a variant or preview not made in time: ask again
        (503, "model_not_configured", True, False),  # no wait cures it
        (503, "assets_missing", True, False),
        (500, "internal_error", True, False),
        (409, "job_conflict", True, False),
        (409, "variant_limit", True, False),
    ],
)
def test_what_is_retried(status: int, code: str, idempotent: bool, retried: bool) -> None:
    assert may_retry(api_error(status, code), idempotent) is retried


def test_the_policy_honours_retry_after_within_its_bounds() -> None:
    policy = RetryPolicy(max_attempts=3, max_wait_s=10.0, backoff_s=0.5)
    limited = api_error(429, "rate_limited", retry_after=4.0)
    assert policy.delay(limited, idempotent=False, attempt=1, waited_s=0.0) == 4.0
    assert policy.delay(limited, idempotent=False, attempt=2, waited_s=4.0) == 4.0
    assert policy.delay(limited, idempotent=False, attempt=3, waited_s=8.0) is None  # attempts
    assert policy.delay(limited, idempotent=False, attempt=2, waited_s=7.0) is None  # wait
    too_long = api_error(429, "rate_limited", retry_after=11.0)
    assert policy.delay(too_long, idempotent=True, attempt=1, waited_s=0.0) is None
    silent = api_error(503, "service_unavailable", retry_after=None)
    assert [policy.delay(silent, True, n, 0.0) for n in (1, 2)] == [0.5, 1.0]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
