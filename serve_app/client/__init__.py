"""A Python client of the ORFEAS service's HTTP API, on httpx; needs neither Ray nor torch.

::

    from serve_app.client import OrfeasClient

    with OrfeasClient("http://127.0.0.1:8000", api_key=None) as client:
        job = client.submit("photo.jpg", format="glb", quality=5)
        for event in client.watch(job.job_id):
            print(event.kind, event.job.stage, event.job.progress)
        client.download(job.job_id, "glb", "out/")

``AsyncOrfeasClient`` is the same for asyncio. Bodies and answers are the API's own models
(``serve_app.schemas.jobs`` and friends); errors are ``ApiError`` subclasses carrying the
service's ``code``, ``message``, HTTP ``status`` and ``retry_after``.
"""

from serve_app.client.aio import AsyncOrfeasClient
from serve_app.client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UnsupportedMediaType,
    ValidationFailed,
)
from serve_app.client.events import JobEnded, JobEvent, JobState, Progress, StageChanged
from serve_app.client.retry import NO_RETRIES, RetryPolicy
from serve_app.client.sync import OrfeasClient
from serve_app.client.watch import WatchMode, WatchSettings

__all__ = [
    "NO_RETRIES",
    "ApiError",
    "AsyncOrfeasClient",
    "BadRequest",
    "ClientError",
    "Conflict",
    "Forbidden",
    "JobEnded",
    "JobEvent",
    "JobState",
    "NotFound",
    "OrfeasClient",
    "PayloadTooLarge",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "StageChanged",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WatchMode",
    "WatchSettings",
]
