"""Errors that crossed a Ray boundary: unwrap them to the service's own errors, safely."""

from __future__ import annotations

import errno
import logging

from serve_app.errors import (
    GenerationFailedError,
    JobCancelledError,
    OrfeasError,
    ServiceOverloadedError,
    StorageFullError,
    WorkerLostError,
    WorkersUnavailableError,
)

logger = logging.getLogger(__name__)


def as_orfeas_error(exc: BaseException, unexpected: OrfeasError | None = None) -> OrfeasError:
    """The user-facing error behind ``exc``: its own OrfeasError, or a safe generic one.

    ``unexpected`` is what a bug (any other exception) turns into; it is logged in full.

    Ray wraps an exception raised in an actor or replica in ``RayTaskError`` (whose
    ``cause`` is the original); Serve and Ray report lost or overloaded workers with
    their own types. None of their messages or tracebacks reach a user.
    """
    cause = _root_cause(exc)
    if isinstance(cause, OrfeasError):
        return _plain(cause)
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
        # A write outside the store (a temporary file, say) found the disk full.
        return StorageFullError("no space left on the service's disk", retryable=True)
    from ray import exceptions as ray_exc
    from ray.serve import exceptions as serve_exc

    if isinstance(cause, serve_exc.BackPressureError):
        return ServiceOverloadedError("the service is at capacity; retry shortly")
    if isinstance(cause, serve_exc.RequestCancelledError | ray_exc.TaskCancelledError):
        return JobCancelledError("the job was cancelled")
    if isinstance(cause, serve_exc.DeploymentUnavailableError):
        # Serve refuses at once while a deployment is deleted, redeployed or failed.
        return WorkersUnavailableError(
            "no worker can take the request now (the service is restarting)", retryable=True
        )
    if isinstance(
        cause,
        ray_exc.RayActorError
        | ray_exc.WorkerCrashedError
        | ray_exc.ObjectLostError
        | ray_exc.OutOfMemoryError
        | serve_exc.ReplicaUnavailableError,
    ):
        return WorkerLostError("a worker was lost while handling the request", retryable=True)
    logger.error("unexpected error", exc_info=(type(cause), cause, cause.__traceback__))
    return unexpected or GenerationFailedError("internal error while generating the model")


def _root_cause(exc: BaseException) -> BaseException:
    seen = 0
    while seen < 8 and not isinstance(exc, OrfeasError):
        # RayTaskError keeps the original in ``cause``; Serve's own wrappers (an upstream
        # replica died before a dependent task) chain it as ``__cause__``.
        nested = getattr(exc, "cause", None)
        if nested is None and type(exc).__module__.startswith("ray."):
            nested = exc.__cause__
        if not isinstance(nested, BaseException) or nested is exc:
            break
        exc = nested
        seen += 1
    return exc


def _plain(error: OrfeasError) -> OrfeasError:
    """A fresh instance of the error's own class (not Ray's dual-class wrapper)."""
    if type(error).__module__.startswith("ray."):
        for cls in type(error).__mro__:
            if issubclass(cls, OrfeasError) and not cls.__module__.startswith("ray."):
                return cls(error.message, **error.details)
    return error
