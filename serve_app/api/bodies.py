"""Request bodies read by hand, for routes that take either a file or a small JSON body."""

from __future__ import annotations

from fastapi import Request

from serve_app.errors import PayloadTooLargeError


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
