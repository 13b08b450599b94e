"""Routes of the web front end: the studio page, static and vendored files, Swagger UI."""

from __future__ import annotations

import html
import os
from os import PathLike
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.errors import AssetsMissingError
from serve_app.web.assets import WEB_DIR, missing

STATIC_DIR = WEB_DIR / "static"
INDEX_HTML = STATIC_DIR / "index.html"
SWAGGER_JS_URL = "/vendor/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS_URL = "/vendor/swagger-ui/swagger-ui.css"
SWAGGER_FAVICON_URL = "/vendor/swagger-ui/favicon-32x32.png"
SETUP_HINT = "run `make setup` (or `scripts/setup.sh web`) to copy them from node_modules"
#: The page's base element; its address becomes the application's route prefix.
INDEX_BASE = '<base href="/">'


def install(app: FastAPI, vendor_dir: Path) -> None:
    """Mount the front end on ``app`` (see ``serve_app.web.install_web``)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def studio(request: Request) -> HTMLResponse:
        """The studio: photo or prompt in, live progress, 3D viewer, downloads."""
        return HTMLResponse(
            studio_page(request.scope.get("root_path", "")),
            headers={"Cache-Control": "no-cache"},
        )

    @router.get("/api/docs", response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> Response:
        """Swagger UI of the OpenAPI spec, its script and style served from ``/vendor/``."""
        check_assets(vendor_dir)
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url or '/openapi.json'}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{SWAGGER_JS_URL}",
            swagger_css_url=f"{root}{SWAGGER_CSS_URL}",
            swagger_favicon_url=f"{root}{SWAGGER_FAVICON_URL}",
            # No online validator badge: the docs page reaches nothing outside the service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.include_router(router)
    app.mount("/static", NoCacheFiles(directory=STATIC_DIR), name="static")
    app.mount("/vendor", VendorFiles(vendor_dir), name="vendor")


def studio_page(root_path: str) -> str:
    """The studio's HTML with its base at ``root_path`` (where Serve mounted the app), so
    its relative addresses (API, static files, WebSocket) work under any route prefix.
    """
    base = html.escape(root_path.rstrip("/") + "/", quote=True)
    return INDEX_HTML.read_text(encoding="utf-8").replace(INDEX_BASE, f'<base href="{base}">', 1)


def check_assets(vendor_dir: Path) -> None:
    """Raise a 503 naming the missing vendored files and the command that copies them."""
    absent = missing(vendor_dir)
    if absent:
        message = f"the vendored browser assets are missing ({', '.join(absent)}): {SETUP_HINT}"
        raise AssetsMissingError(message)


class NoCacheFiles(StaticFiles):
    """Static files a browser revalidates on every load, so a new release is seen at once."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


class VendorFiles:
    """Static files under ``vendor_dir``; a 503 error (not a crash) while any is missing."""

    def __init__(self, vendor_dir: Path) -> None:
        self.vendor_dir = vendor_dir
        self._files: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._files is None:
            check_assets(self.vendor_dir)
            self._files = StaticFiles(directory=self.vendor_dir)
        await self._files(scope, receive, send)
