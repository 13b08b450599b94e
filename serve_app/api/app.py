"""The FastAPI app of one ingress replica, built around its services."""

from __future__ import annotations

from fastapi import FastAPI

import serve_app
from serve_app.api.deps import Services
from serve_app.api.errors import install_error_handlers
from serve_app.api.openapi import install_openapi
from serve_app.api.routers import (
    batches,
    health,
    jobs,
    meshtools,
    streams,
    text,
    texturing,
    variants,
)
from serve_app.api.security import UPLOAD_PATH, install_security
from serve_app.contracts.views import MAX_VIEWS
from serve_app.schemas.tools import MAX_BATCH
from serve_app.web import install_web


def create_api(services: Services) -> FastAPI:
    """The FastAPI app of the seed contract, wired to ``services``."""
    app = FastAPI(
        title="ORFEAS Serve",
        version=serve_app.__version__,
        description="Photo in, textured 3D model (GLB, OBJ, STL, PLY, 3MF, USDZ) out.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    install_error_handlers(app)
    install_security(
        app,
        services.config.security,
        services.config.pipeline.limits.max_upload_bytes,
        services.limiter,
        path_limits={
            meshtools.ANALYZE_PATH: services.config.mesh_tools.max_upload_bytes,
            batches.BATCH_PATH: MAX_BATCH * services.config.pipeline.limits.max_upload_bytes,
            UPLOAD_PATH: MAX_VIEWS * services.config.pipeline.limits.max_upload_bytes,
            texturing.TEXTURE_PATH: services.config.mesh_tools.max_upload_bytes
            + MAX_VIEWS * services.config.pipeline.limits.max_upload_bytes,
        },
    )
    for resource in (health, jobs, streams, text, meshtools, variants, batches, texturing):
        app.include_router(resource.router)
    install_web(app)
    install_openapi(app, services.config)
    return app
