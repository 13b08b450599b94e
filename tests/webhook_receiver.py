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
    """One POST as the receiver saw it (``answered``: the status it answered, perhaps too
    late for a sender that had stopped waiting)."""

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
    #: The first ``stalls`` requests wait ``stall_s`` before answering (a slow receiver).
    stalls: int = 0
    stall_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self) -> tuple[int, float]:
        """The next status to answer and how long to wait before answering."""
        with self.lock:
            if self.stalls > 0:  # too late to matter: the sender has given up on it
                self.stalls -= 1
                return 200, self.stall_s
            return (self.script.pop(0) if self.script else 200), 0.0

    def posts(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextlib.contextmanager
def running_receiver(
    script: list[int] | None = None, stalls: int = 0, stall_s: float = 0.0
) -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1, stopped on exit."""
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's name in http.server
            assert state is not None
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status, stall_s = state.answer()
            time.sleep(stall_s)
            with state.lock:
                state.received.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )  # fmt: skip
                )
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", state.url("/elsewhere"))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender stopped waiting

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    state = Receiver(port=port, script=list(script or []), stalls=stalls, stall_s=stall_s)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
