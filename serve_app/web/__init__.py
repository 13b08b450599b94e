"""The studio page, its static files, the vendored browser libraries and offline Swagger UI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serve_app.web.assets import VENDOR_DIR

if TYPE_CHECKING:
    from fastapi import FastAPI


def install_web(app: FastAPI, vendor_dir: Path = VENDOR_DIR) -> None:
    """Add ``GET /``, ``/static/``, ``/vendor/`` and ``GET /api/docs`` to ``app``.

    The app should be created with ``docs_url=None, redoc_url=None`` and the service's
    error handlers. When the vendored files are missing it still starts: ``/vendor/...``
    and ``/api/docs`` raise a 503 ``assets_missing`` error naming the command that copies
    them.
    """
    # FastAPI is imported here, not above: ``python -m serve_app.web`` vendors the assets
    # with the standard library alone, before any venv exists.
    from serve_app.web.routes import install

    install(app, vendor_dir)


__all__ = ["install_web"]
