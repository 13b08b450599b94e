"""Bodies that stall, and one client's many uploads at once, against the running service.

Raw sockets over loopback, through HAProxy to the ingress replicas: an upload that declares
1,000 bytes and sends 6 is answered 408; uploads that keep trickling hold their client's
upload slots, and the ones over the bound are answered 429 with Retry-After at once.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.client import photo
from tests.fault.conftest import (
    BODY_IDLE_TIMEOUT_S,
    MAX_CONCURRENT_UPLOADS,
    PACE_KEY,
    keyed_client,
)
from tests.fault.harness import FaultService, replica_names

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(120)]

KEY = PACE_KEY
BOUNDARY = "pa"
#: The six bytes that are sent of the thousand declared.
FIRST = f"--{BOUNDARY}\r\n".encode()
#: At most this long for any answer the tests wait for (the idle timeout is far shorter).
ANSWER_WITHIN_S = 30.0


def open_upload(url: str, declared: int, first: bytes) -> socket.socket:
    """A socket that has sent an upload's head (``declared`` body bytes) and ``first``."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 10)
    head = (
        f"POST {parts.path}/api/upload-image HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Authorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + first)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers and JSON body of the answer on ``sock`` (bounded wait)."""
    sock.settimeout(ANSWER_WITHIN_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body[:length] or b"{}")


def test_a_body_that_stops_after_6_of_1000_bytes_is_answered_408(
    fault_service: FaultService,
) -> None:
    assert len(FIRST) == 6
    sock = open_upload(fault_service.url, declared=1000, first=FIRST)
    with sock:
        status, _, body = read_answer(sock)
    assert status == 408, body
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "request_timeout"
    assert error["idle_timeout_s"] == BODY_IDLE_TIMEOUT_S
    # The service answers as before.
    with keyed_client(fault_service, KEY) as client:
        files = {"image": ("p.png", photo(size=64, unique=True), "image/png")}
        assert client.post("/api/upload-image", files=files).status_code == 200


def test_one_clients_uploads_beyond_the_bound_are_429_and_the_slots_come_back(
    fault_service: FaultService,
) -> None:
    replicas = len(replica_names(fault_service.app, "Ingress")) or 2
    slots = replicas * MAX_CONCURRENT_UPLOADS  # the bound holds per ingress replica
    opened = [open_upload(fault_service.url, declared=10**6, first=FIRST) for _ in range(slots + 2)]
    refused: list[tuple[int, dict[str, str], dict[str, object]]] = []
    try:
        waiting = list(opened)
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while len(refused) < 2 and time.monotonic() < deadline:
            for sock in waiting:  # keep every held upload moving: never idle, never done
                with contextlib.suppress(OSError):  # one answered already: read below
                    sock.sendall(b"x")
            ready, _, _ = select.select(waiting, [], [], BODY_IDLE_TIMEOUT_S / 4)
            for sock in ready:
                refused.append(read_answer(sock))
                waiting.remove(sock)
        # At least the two over every replica's bound were refused, at most all but one
        # replica's worth; the others are still being received.
        assert 2 <= len(refused) <= len(opened) - MAX_CONCURRENT_UPLOADS, refused
        for status, headers, body in refused:
            assert status == 429, body
            assert int(headers["retry-after"]) >= 1
            error = body["error"]
            assert isinstance(error, dict) and error["code"] == "rate_limited"
            assert error["max_concurrent_uploads"] == MAX_CONCURRENT_UPLOADS
    finally:
        for sock in opened:
            sock.close()
    # Closed uploads give their slots back: the client uploads again.
    files = {"image": ("p.png", photo(size=64, unique=True), "image/png")}
    with keyed_client(fault_service, KEY) as client:
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while True:
            answer = client.post("/api/upload-image", files=files)
            if answer.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert answer.status_code == 200, answer.text
