"""What the client raises: the service's error answers, typed by HTTP status, and lost connections.

An answer of the service carries ``{"error": {"code", "message", ...}}`` (the API's
``ErrorResponse``); :class:`ApiError` keeps its HTTP status, ``code``, ``message``, the
other fields of the body (``details``) and, on 429 and 503, ``Retry-After`` in seconds.
An answer that is not the service's own (a proxy's 502, say) gets a code from its status.
"""

from __future__ import annotations

import email.utils
import time
from http import HTTPStatus
from typing import Any

import httpx
from pydantic import ValidationError

from serve_app.schemas.jobs import ErrorResponse

#: How much of a body that is not the service's JSON goes into a message.
MAX_FOREIGN_MESSAGE_CHARS = 200


class ClientError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransportError(ClientError):
    """The service could not be reached, or the connection broke (no answer to read)."""


class ApiError(ClientError):
    """The service answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.details = details or {}
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class BadRequest(ApiError):
    """400: malformed input (a broken image or mesh, invalid JSON)."""


class Unauthorized(ApiError):
    """401: the service needs an API key, or did not accept the one sent."""


class Forbidden(ApiError):
    """403."""


class NotFound(ApiError):
    """404: no such job (or another key's job), variant or route."""


class Conflict(ApiError):
    """409: the job is not in a state for this (already running, not completed yet)."""


class PayloadTooLarge(ApiError):
    """413: the file or body is over the service's limit."""


class UnsupportedMediaType(ApiError):
    """415: bytes that are no image (or no mesh file)."""


class ValidationFailed(ApiError):
    """422: a field out of range, an unknown generator; ``details["fields"]`` names them."""


class RateLimited(ApiError):
    """429: over a rate limit or the client's share of the queue; see ``retry_after``."""


class ServerError(ApiError):
    """500 and other 5xx answers but 503."""


class ServiceUnavailable(ApiError):
    """503: the queue is full, a model is not configured or not loaded; see ``code``."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for an error answer whose body has been read."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    method, url = response.request.method, str(response.request.url)
    try:
        body = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:
        code, message = _status_code(status), _foreign_message(response)
        return cls(status, code, message, retry_after=retry_after, method=method, url=url)
    details = {k: v for k, v in body.model_dump().items() if k not in ("code", "message")}
    return cls(
        status,
        body.code,
        body.message,
        retry_after=retry_after,
        details=details,
        method=method,
        url=url,
    )


def _status_code(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return phrase.lower().replace(" ", "_").replace("-", "_")


def _foreign_message(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:MAX_FOREIGN_MESSAGE_CHARS]
    reason = response.reason_phrase or _status_code(response.status_code)
    return f"HTTP {response.status_code} {reason}" + (f": {text}" if text else "")


class UnexpectedResponse(ClientError):
    """A success answer whose body is not what the route returns (a wrong URL, a proxy)."""
