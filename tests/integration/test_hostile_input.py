"""A corpus of hostile inputs, each with the exact status it must get; the service survives.

Uploads that lie about their type, are truncated or corrupt, claim absurd dimensions or
are too big; path parameters that try to leave the storage root; JSON bodies that are
malformed, mistyped, non-finite, deeply nested or oversized; filenames with markup.
Nothing in here reaches a path, echoes a client's text unescaped, or costs a 5xx.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.client import Api

pytestmark = pytest.mark.integration

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MB = 1024 * 1024


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels, with one tiny IDAT chunk."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 60, 40)).save(buf, format=fmt)
    return buf.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 marker is patched to claim ``width`` × ``height``."""
    data = bytearray(encoded("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def corrupt_png() -> bytes:
    data = bytearray(encoded("PNG", (64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 8] ^= 0xFF  # a flipped byte in the pixel data: its CRC no longer matches
    return bytes(data)


#: (name, bytes, expected status, expected error code)
UPLOADS: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("text", lambda: b"hello, I am not an image", 415, "unsupported_media_type"),
    ("html", lambda: b"<html><script>alert(1)</script></html>", 415, "unsupported_media_type"),
    ("gif", lambda: encoded("GIF"), 415, "unsupported_media_type"),
    ("bmp", lambda: encoded("BMP"), 415, "unsupported_media_type"),
    ("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "unsupported_media_type"),
    ("empty", lambda: b"", 400, "invalid_image"),
    ("png magic only", lambda: b"\x89PNG\r\n\x1a\n", 400, "invalid_image"),
    ("truncated png", lambda: encoded("PNG", (64, 64))[:-30], 400, "invalid_image"),
    ("truncated jpeg", lambda: encoded("JPEG", (256, 256))[:400], 400, "invalid_image"),
    ("truncated webp", lambda: encoded("WEBP", (256, 256))[:60], 400, "invalid_image"),
    ("corrupt png", corrupt_png, 400, "invalid_image"),
    ("tiny png", lambda: encoded("PNG", (8, 8)), 400, "invalid_image"),
    ("png 100000 x 100000", lambda: png_claiming(100_000, 100_000), 413, "image_too_large"),
    ("png 9000 x 20", lambda: png_claiming(9000, 20), 413, "image_too_large"),
    ("png 8000 x 6000 bomb", lambda: png_claiming(8000, 6000), 413, "image_too_large"),
    ("jpeg 65000 x 65000", lambda: jpeg_claiming(65000, 65000), 413, "image_too_large"),
    ("jpeg 30000 x 30000", lambda: jpeg_claiming(30000, 30000), 413, "image_too_large"),
]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    assert "Traceback" not in response.text
    return dict(body["error"])


def stored_files(api: Api) -> set[str]:
    root = api.service.storage_root
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("name", "make", "status", "code"), UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_upload_gets_its_exact_status_and_stores_nothing(
    api: Api, name: str, make: Callable[[], bytes], status: int, code: str
) -> None:
    before = {p for p in stored_files(api) if p.startswith("jobs/")}
    response = api.client.post("/api/upload-image", files={"image": ("x.png", make(), "image/png")})
    assert error_of(response, status)["code"] == code
    assert {p for p in stored_files(api) if p.startswith("jobs/")} <= before | set()


def test_an_upload_over_the_size_limit_is_413_before_it_is_read_whole(api: Api) -> None:
    limit = 20 * MB
    declared = api.client.post(
        "/api/upload-image",
        files={"image": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (limit + 1), "image/png")},
    )
    assert error_of(declared, 413)["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: counted while it streams in
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(limit // MB + 2):
            yield b"\0" * MB
        yield b"\r\n--b--\r\n"

    try:
        streamed = api.client.post(
            "/api/upload-image",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    except httpx.TransportError:
        pass  # the server may close the connection before the client has sent it all
    else:
        assert error_of(streamed, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "filename", ["../../../../etc/passwd", "<script>alert(1)</script>.png", "a\x00b.png", "é" * 300]
)
def test_client_filenames_never_reach_a_path_nor_the_response(api: Api, filename: str) -> None:
    files = {"image": (filename, api.photo(), "image/jpeg")}
    response = api.client.post("/api/upload-image", files=files)
    assert response.status_code == 200, response.text
    assert "passwd" not in response.text and "script" not in response.text
    assert all("passwd" not in p and "script" not in p for p in stored_files(api))


#: (path, status): every path parameter is validated before it can reach storage.
PATHS = [
    ("/api/job-status/..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/job-status/%2e%2e%2f%2e%2e%2fetc", 404),
    ("/api/job-status/0123456789abcdef0123456789abcdeF", 422),
    ("/api/job-status/0123456789abcdef0123456789abcdef%00", 422),
    ("/api/job-status/" + "a" * 10_000, 422),
    ("/download/0123456789abcdef0123456789abcdef/exe", 422),
    ("/download/0123456789abcdef0123456789abcdef/..%2F..%2Fetc%2Fpasswd", 404),
    ("/download/0123456789abcdef0123456789abcdef/glb%00", 422),
    ("/api/jobs?limit=100000", 422),
    ("/api/jobs?limit=-1", 422),
    ("/api/jobs?offset=abc", 422),
    ("/api/jobs?status=exploded", 422),
]


@pytest.mark.parametrize(("path", "status"), PATHS, ids=[p for p, _ in PATHS])
def test_hostile_path_gets_its_exact_status(api: Api, path: str, status: int) -> None:
    error_of(api.client.get(path), status)


def raw_generate(
    api: Api, content: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return api.client.post(
        "/api/generate-3d", content=content, headers={"Content-Type": content_type}
    )


#: (name, body for a fresh job id, status, code)
BODIES: list[tuple[str, Callable[[str], bytes], int, str]] = [
    ("not json", lambda j: b"{", 400, "invalid_json"),
    ("json garbage", lambda j: b"\xff\xfe\x00garbage", 400, "invalid_json"),
    ("a list", lambda j: b"[]", 422, "validation_error"),
    ("a string", lambda j: b'"job"', 422, "validation_error"),
    ("null", lambda j: b"null", 422, "validation_error"),
    ("no job id", lambda j: b"{}", 422, "validation_error"),
    ("job id a number", lambda j: b'{"job_id": 12}', 422, "validation_error"),
    ("quality a string", lambda j: _body(j, quality="high"), 422, "validation_error"),
    ("quality a float", lambda j: _body(j, quality=5.5), 422, "validation_error"),
    ("quality huge", lambda j: _body(j, quality=10**30), 422, "validation_error"),
    ("width NaN", lambda j: _raw(j, '{"width": NaN}'), 422, "validation_error"),
    ("width Infinity", lambda j: _raw(j, '{"width": Infinity}'), 422, "validation_error"),
    ("width negative", lambda j: _body(j, dimensions={"width": -5}), 422, "validation_error"),
    ("width zero", lambda j: _body(j, dimensions={"width": 0}), 422, "validation_error"),
    ("width 1e300", lambda j: _body(j, dimensions={"width": 1e300}), 422, "validation_error"),
    ("width a string", lambda j: _body(j, dimensions={"width": "x"}), 422, "validation_error"),
    ("dimensions a list", lambda j: _body(j, dimensions=[1, 2, 3]), 422, "validation_error"),
    ("unknown field", lambda j: _body(j, **{"<script>": 1}), 422, "validation_error"),
    ("format exe", lambda j: _body(j, format="exe"), 422, "validation_error"),
    ("deeply nested", lambda j: b"[" * 50_000 + b"]" * 50_000, 400, "bad_request"),
    ("over 1 MB", lambda j: _body(j, pad="x" * (2 * MB)), 413, "payload_too_large"),
]


def _body(job_id: str, **fields: Any) -> bytes:
    return json.dumps({"job_id": job_id, **fields}).encode()


def _raw(job_id: str, dimensions: str) -> bytes:
    return f'{{"job_id": "{job_id}", "dimensions": {dimensions}}}'.encode()


@pytest.fixture(scope="module")
def idle_job(api: Api) -> str:
    return api.upload(api.photo())


@pytest.mark.parametrize(("name", "make", "status", "code"), BODIES, ids=[b[0] for b in BODIES])
def test_hostile_generate_body_gets_its_exact_status(
    api: Api, idle_job: str, name: str, make: Callable[[str], bytes], status: int, code: str
) -> None:
    error = error_of(raw_generate(api, make(idle_job)), status)
    assert error["code"] == code
    assert "<script>" not in json.dumps(error)
    assert api.status(idle_job)["status"] == "uploaded"


def test_the_service_keeps_serving_after_the_corpus(api: Api) -> None:
    assert api.client.get("/health").status_code == 200
    assert api.client.get("/api/health").status_code == 200
    job_id = api.upload(api.photo())
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"
