"""Downloads to disk: streamed into a temporary file beside the target, then renamed.

A reader never sees a half-written model: the file appears complete (``os.replace``) or
not at all, and a broken or short transfer leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from types import TracebackType

import httpx

from serve_app.client.errors import TransportError

_DISPOSITION_NAME = re.compile(r'filename="?([^";]+)"?')
CHUNK_BYTES = 1 << 16


def target_path(
    path: str | os.PathLike[str] | None, response: httpx.Response, default: str
) -> Path:
    """Where a download goes: ``path``, or the served file name inside ``path`` when it is
    a directory (the current directory when None)."""
    name = served_name(response) or default
    if path is None:
        return Path.cwd() / name
    target = Path(path)
    if target.is_dir() or str(path).endswith(os.sep):
        return target / name
    return target


def served_name(response: httpx.Response) -> str | None:
    """The file name of ``Content-Disposition``, reduced to a plain name (no directories)."""
    match = _DISPOSITION_NAME.search(response.headers.get("content-disposition", ""))
    if not match:
        return None
    name = Path(match.group(1).replace("\\", "/")).name
    return name if name not in ("", ".", "..") and not name.startswith(".") else None


class AtomicFile:
    """``with AtomicFile(path) as out: out.write(...)``; the file exists after a clean exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.written += len(chunk)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if kind is None:
                os.replace(self._temp, self.path)
        finally:
            self._temp.unlink(missing_ok=True)


def check_complete(response: httpx.Response, written: int) -> None:
    """Raise if ``written`` bytes are not what ``Content-Length`` announced (a cut transfer).
    A compressed body's length is that of its encoded bytes: not checked here."""
    declared = response.headers.get("content-length", "")
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    if declared.isdigit() and not encoded and written != int(declared):
        raise TransportError(
            f"{response.request.url.path}: the transfer stopped after {written} of {declared} bytes"
        )
