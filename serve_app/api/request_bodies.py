"""Request bodies read by hand, for routes that take either a file or a small JSON body."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from serve_app.errors import PayloadTooLargeError

M = TypeVar("M", bound=BaseModel)


def body_kind(request: Request) -> str:
    """The request's media type, without its parameters, lowercase."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_small_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body, refused with a 413 as soon as more than ``limit_bytes`` arrive."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLargeError(
                f"a JSON body here is at most {limit_bytes} bytes", limit_bytes=limit_bytes
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(model: type[M], raw: bytes | str, *where: str) -> M:
    """``raw`` as ``model``, with the same 400/422 answers as any other JSON body's;
    ``where`` is its place in the body."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *where, *err.get("loc", ()))} for err in exc.errors()]
        ) from None


def file_or_json_body(
    files: dict[str, Any], required: str, json_model: type[BaseModel], json_example: Any
) -> dict[str, Any]:
    """The OpenAPI request body of a route read by hand: multipart ``files`` (the field
    ``required`` required) or JSON ``json_model``."""
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": [required], "properties": files}
            },
            "application/json": {
                "schema": json_model.model_json_schema(),
                "example": json_example,
            },
        },
    }
