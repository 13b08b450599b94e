"""A real webhook receiver on 127.0.0.1 for the tests: answers each POST with the next
scripted status (200 once the script is used up) and keeps what it was sent."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve_app.webhooks import signing


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def verified(self, secret: str) -> bool:
        """The signature checks out under ``secret`` (as the README's receiver checks it)."""
        return signing.verify(
            secret,
            self.headers.get(signing.TIMESTAMP_HEADER.lower(), ""),
            self.body,
            self.headers.get(signing.SIGNATURE_HEADER.lower(), ""),
            now=time.time(),
        )


@dataclass
class Receiver:
    """The receiver's address, its script and what it received, in order."""

    port: int
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else 200

    def posts(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextlib.contextmanager
def running_receiver(script: list[int] | None = None) -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1, stopped on exit."""
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's name in http.server
            assert state is not None
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = state.answer()
            with state.lock:
                state.received.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )  # fmt: skip
                )
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(port=server.server_address[1], script=list(script or []))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
