"""A child process for native mesh work, with a hard time limit.

pymeshlab (MeshLab's filters, on its own copy of Qt) runs in the main thread of a child
Python process, not in the threads of the process that renders previews with VTK over EGL.
Used from a worker thread, MeshLab keeps Qt's data of that thread, which is freed when the
thread ends; its plugin manager then reads it as the process exits (valgrind: a use after
free in ``PluginManager::~PluginManager``), and with VTK's EGL renders in the same process
glibc aborts it ("malloc_consolidate(): unaligned fastbin chunk detected"). Apart, a crash
of either on a hostile mesh cannot take the other down either. The child is kept for the
next call; a call over its time kills it (native code cannot be interrupted otherwise),
and a child that died is replaced on the next call.

Calls are pickled over a socket pair: ``fn`` must be a module-level function; an
OrfeasError it raises comes back as itself, any other exception as a safe 500.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any, TypeVar

from serve_app.errors import OrfeasError, WorkerLostError, WorkTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: The directory ``serve_app`` is imported from, so the child imports the same code.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class IsolatedWorker:
    """One child process, one call at a time (others wait, within their own time)."""

    def __init__(self, name: str = "mesh-work") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        #: Children started so far (the first, and one after each kill or crash).
        self.starts = 0

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """``fn(*args)`` in the child; WorkTimeoutError (503) past ``timeout_s`` (waiting
        for an earlier call included), WorkerLostError (503) if the child died."""
        deadline = time.monotonic() + timeout_s
        if not self._lock.acquire(timeout=timeout_s):
            raise _timeout(timeout_s)
        try:
            conn = self._connection()
            conn.send((fn, args))
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                self._stop(kill=True)
                raise _timeout(timeout_s)
            try:
                ok, value = conn.recv()
            except (EOFError, OSError):
                code = self._stop(kill=True)
                logger.error("%s: the child process died (exit status %s)", self.name, code)
                raise WorkerLostError(
                    "the mesh tools' worker process died on this request", retryable=True
                ) from None
        finally:
            self._lock.release()
        if ok:
            return value
        raise value

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def _connection(self) -> Connection:
        if self._conn is not None and self._proc is not None and self._proc.poll() is None:
            return self._conn
        self._stop(kill=True)
        parent, child = Pipe(duplex=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.meshtools.isolated", str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else None,
            env=env,
        )
        child.close()
        self._conn = parent
        self.starts += 1
        return parent

    def _stop(self, kill: bool) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()  # the child's loop ends at end of file
        if proc is None:
            return None
        if kill:
            proc.kill()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def _timeout(timeout_s: float) -> WorkTimeoutError:
    return WorkTimeoutError(
        f"the mesh work did not finish within {timeout_s:g} s and was stopped; "
        "retry later, or ask for less (fewer faces)",
        retry_after_s=max(1, round(timeout_s / 4)),
    )


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _serve(fd: int) -> None:
    """The child's loop: run each call sent, send back (ok, result or error)."""
    conn = Connection(fd)
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except OrfeasError as exc:
            reply = (False, exc)
        except Exception:
            logging.getLogger(__name__).exception("mesh work failed")
            reply = (False, OrfeasError("internal error in the mesh tools"))
        conn.send(reply)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
