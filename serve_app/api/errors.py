"""One place that turns every error into ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.errors import OrfeasError
from serve_app.ray_errors import as_orfeas_error

_LOC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$|^[0-9]{1,6}$")


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def render_error(error: OrfeasError) -> JSONResponse:
    """The answer for one of the service's errors: its status, body and headers
    (``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401). Routes raise; the
    handler below and the security middleware render through here.
    """
    error = as_orfeas_error(error)
    return JSONResponse(
        {"error": error.to_dict()}, status_code=error.status_code, headers=error.headers() or None
    )


class CarriedError(StarletteHTTPException):
    """One of the service's errors raised while a body is read: FastAPI's body parsing
    lets only HTTP exceptions through (any other becomes a 400), so it travels in one.
    """

    def __init__(self, error: OrfeasError) -> None:
        super().__init__(error.status_code, error.message)
        self.error = error


async def _orfeas_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrfeasError)
    return render_error(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    fields = [
        {"loc": [_safe_loc(p) for p in err.get("loc", ())], "message": _friendly(err)}
        for err in errors
    ]
    first = fields[0] if fields else {"loc": [], "message": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body", "path", "query"))
    message = f"{where}: {first['message']}" if where else str(first["message"])
    return error_response(422, "validation_error", message, fields=fields)


def _safe_loc(part: object) -> str:
    """A location part as shown to clients: a client's own key names are never echoed."""
    text = str(part)
    return text if _LOC_RE.fullmatch(text) else "<field>"


def _friendly(err: Any) -> str:
    """Pydantic's message, except for job ids, whose regular expression says little."""
    loc = err.get("loc", ())
    if err.get("type") == "string_pattern_mismatch" and loc and loc[-1] == "job_id":
        return "must be 32 lowercase hexadecimal characters"
    return str(err.get("msg", ""))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, CarriedError):
        return render_error(exc.error)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    if exc.status_code == 413:  # one code for every body that is too large
        code = "payload_too_large"
    message = exc.detail if isinstance(exc.detail, str) else phrase
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return render_error(as_orfeas_error(exc, unexpected=OrfeasError("internal server error")))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrfeasError, _orfeas_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
