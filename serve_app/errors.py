"""One error root for the service: each subclass carries its HTTP status and a stable code."""

from __future__ import annotations

import math
from typing import Any

#: Retry-After (seconds) of a 429 or 503 whose error does not say ``retry_after_s``.
DEFAULT_RETRY_AFTER_S = 1


class OrfeasError(Exception):
    """Base of every error the service reports to a user.

    ``status_code`` is the HTTP status the API answers with, ``code`` a stable
    machine-readable name, ``details`` extra JSON-safe fields for the error body.
    """

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def headers(self) -> dict[str, str]:
        """HTTP headers of the answer: every 429 and 503 says when to come back."""
        if self.status_code in (429, 503):
            seconds = float(self.details.get("retry_after_s", DEFAULT_RETRY_AFTER_S))
            return {"Retry-After": str(max(1, math.ceil(seconds)))}
        return {}

    def __reduce__(self):  # keep message and details across Ray/pickle boundaries
        return (_rebuild_error, (type(self), self.message, self.details))


def _rebuild_error(cls: type[OrfeasError], message: str, details: dict[str, Any]) -> OrfeasError:
    return cls(message, **details)


class InvalidInputError(OrfeasError):
    status_code = 400
    code = "invalid_input"


class InvalidImageError(InvalidInputError):
    code = "invalid_image"


class ImageTooLargeError(OrfeasError):
    status_code = 413
    code = "image_too_large"


class PayloadTooLargeError(OrfeasError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(OrfeasError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidMeshError(InvalidInputError):
    """A mesh file that is recognised but broken: truncated, lying counts, NaN coordinates."""

    code = "invalid_mesh"


class MeshTooLargeError(OrfeasError):
    """A mesh with more faces or vertices than the service analyses."""

    status_code = 413
    code = "mesh_too_large"


class NoSubjectError(OrfeasError):
    status_code = 422
    code = "no_subject"


class NoSurfaceError(OrfeasError):
    """A neural shape model's level set missed the decoded volume: no mesh to build."""

    status_code = 422
    code = "no_surface"


class ValidationFailedError(OrfeasError):
    status_code = 422
    code = "validation_error"


class JobNotFoundError(OrfeasError):
    status_code = 404
    code = "job_not_found"


class BatchNotFoundError(OrfeasError):
    status_code = 404
    code = "batch_not_found"


class VariantNotFoundError(OrfeasError):
    status_code = 404
    code = "variant_not_found"


class VariantLimitError(OrfeasError):
    """A job's model already has as many variants as the service keeps for one job."""

    status_code = 409
    code = "variant_limit"


class ArtifactNotFoundError(OrfeasError):
    status_code = 404
    code = "not_found"


class JobConflictError(OrfeasError):
    status_code = 409
    code = "job_conflict"


class JobCancelledError(OrfeasError):
    """Raised inside the pipeline when the job's cancel flag is set."""

    status_code = 409
    code = "cancelled"


class RateLimitedError(OrfeasError):
    status_code = 429
    code = "rate_limited"


class RequestTimeoutError(OrfeasError):
    """A request's body stopped arriving: nothing came for the configured idle time."""

    status_code = 408
    code = "request_timeout"


class StorageFullError(OrfeasError):
    """The artifact store has no room (below its free-space floor, or a write found the disk
    full); nothing partial was kept. Retryable once space is freed."""

    status_code = 507
    code = "storage_full"


class UnauthorizedError(OrfeasError):
    status_code = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ServiceOverloadedError(OrfeasError):
    status_code = 503
    code = "overloaded"


class AssetsMissingError(OrfeasError):
    """The vendored browser files (three.js, Swagger UI) were not copied into the package."""

    status_code = 503
    code = "assets_missing"


class ModelNotConfiguredError(OrfeasError):
    status_code = 503
    code = "model_not_configured"


class ModelUnavailableError(OrfeasError):
    status_code = 503
    code = "model_unavailable"


class GpuOutOfMemoryError(OrfeasError):
    """CUDA ran out of memory during a run; the replica freed it and stays up. Retryable."""

    status_code = 503
    code = "gpu_out_of_memory"


class WorkerLostError(ModelUnavailableError):
    """A worker replica died (or stopped renewing its lease) while it held a run; retryable."""


class WorkersUnavailableError(WorkerLostError):
    """No replica of a deployment could take the request: its application is being deleted
    or redeployed, or failed to deploy. A run waits for one, as for a full queue, rather
    than spending a retry; retryable."""


class GeneratorVersionChangedError(WorkerLostError):
    """The replica that took a run has another version of its generator than the run's
    ticket was keyed for (a rolling update): the run is retried under the new version's key.

    Details: ``generator``, and ``version``, the replica's.
    """


class JobInterruptedError(OrfeasError):
    """A run was cut short by a restart of the service; submitting it again is safe."""

    status_code = 503
    code = "interrupted"


class WorkTimeoutError(OrfeasError):
    """A bounded piece of work (a variant, a preview) did not finish in its time; retryable."""

    status_code = 503
    code = "timed_out"


class GenerationFailedError(OrfeasError):
    status_code = 500
    code = "generation_failed"
