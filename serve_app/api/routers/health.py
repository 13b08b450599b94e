"""Service routes: liveness, readiness, the generators, the material presets, ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from serve_app.api.deps import Services, ServicesDep
from serve_app.api.job_service import deployment_overrides
from serve_app.api.route_params import error_responses
from serve_app.config import AppConfig, background_model_file
from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.meshtools.materials import PRESETS
from serve_app.metrics import render_prometheus
from serve_app.pipeline.generators import catalog, hunyuan3d_profile
from serve_app.schemas.jobs import (
    CheckResult,
    GeneratorInfo,
    GeneratorsResponse,
    HealthResponse,
    ReadinessResponse,
)
from serve_app.schemas.tools import MaterialsResponse

READINESS_TIMEOUT_S = 2.0
#: Retry-After of a degraded readiness answer (503).
READINESS_RETRY_AFTER_S = 5

_SERVICE_ERRORS = error_responses(400, 401, 404, 409, 413, 415, 422, 429, 500, 503)
router = APIRouter()


@router.get("/health", tags=["health"], responses=_SERVICE_ERRORS)
async def health() -> HealthResponse:
    """Liveness: the ingress answers."""
    return HealthResponse()


@router.get(
    "/api/health",
    tags=["health"],
    response_model=ReadinessResponse,
    responses=_SERVICE_ERRORS,
)
async def readiness(services: ServicesDep) -> JSONResponse:
    """Readiness: the registry, the store, the models, each enabled generator (loaded, or
    why not), the text-to-image model where one is configured, and the deployments."""
    checks = await _readiness_checks(services)
    ready = all(check.ok for check in checks.values())
    body = ReadinessResponse(status="ok" if ready else "degraded", checks=checks)
    if ready:
        return JSONResponse(body.model_dump(mode="json"))
    headers = {"Retry-After": str(READINESS_RETRY_AFTER_S)}
    return JSONResponse(body.model_dump(mode="json"), status_code=503, headers=headers)


@router.get("/api/generators", tags=["health"], responses=_SERVICE_ERRORS)
async def generators(services: ServicesDep) -> GeneratorsResponse:
    """The enabled shape generators: which is the default, which are loaded, what each takes."""
    pipeline = services.config.pipeline
    try:
        info = await asyncio.wait_for(services.registry.ping(), READINESS_TIMEOUT_S)
        versions, errors = info.generators, info.generator_errors
    except Exception:  # still list what is enabled; loaded is then unknown (False)
        versions, errors = {}, {}
    return GeneratorsResponse(
        default=pipeline.generator,
        generators=[
            GeneratorInfo(
                name=name,
                summary=catalog.spec(name).summary,
                default=name == pipeline.generator,
                loaded=name in versions,
                version=versions.get(name),
                error=errors.get(name),
                parameters=list(catalog.spec(name).parameters),
                **deployment_profile(services.config, name),
            )
            for name in pipeline.generators.enabled()
        ],
    )


def deployment_profile(config: AppConfig, generator: str) -> dict[str, Any]:
    """Where ``generator`` runs here, its defaults at quality 1..10 as this deployment
    resolves them, and (hunyuan3d) why: ``GeneratorInfo``'s device, defaults and note."""
    overrides = deployment_overrides(config, generator)
    defaults = [
        catalog.resolve_params(generator, GenerationParams(quality=q), overrides).given()
        for q in range(1, 11)
    ]
    settings = config.pipeline.generators.hunyuan3d
    gpus = config.shape_texture.num_gpus
    if generator != GeneratorName.HUNYUAN3D or settings is None:
        return {"device": config.pipeline.device, "defaults": defaults, "note": None}
    return {
        "device": hunyuan3d_profile.replica_device(settings.device, gpus),
        "defaults": defaults,
        "note": hunyuan3d_profile.defaults_note(settings, gpus),
    }


@router.get(
    "/api/materials",
    tags=["mesh tools"],
    responses={
        **error_responses(400, 401, 404, 409, 413, 415, 422, 429, 500),
        200: {"content": {"application/json": {"example": {"presets": [
            {"name": "metal", "base_color": None, "metallic": 1.0, "roughness": 0.3,
             "description": "brushed metal: the colours reflect as metal"}]}}}},
    },
)  # fmt: skip
async def materials() -> MaterialsResponse:
    """The material presets. A custom material is ``{"base_color": "#rrggbb", "metallic":
    0..1, "roughness": 0..1}``; a preset keeps the model's texture, a ``base_color``
    replaces it."""
    return MaterialsResponse(presets=list(PRESETS.values()))


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={
        **error_responses(404, 409, 422, 503),
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
    },
)
async def metrics(services: ServicesDep) -> Response:
    """Service-wide figures in Prometheus text format, the same from every replica."""
    body, content_type = render_prometheus(await services.registry.metrics())
    return Response(body, media_type=content_type)


async def _readiness_checks(services: Services) -> dict[str, CheckResult]:
    checks: dict[str, CheckResult] = {}
    try:
        info = await asyncio.wait_for(services.registry.ping(), READINESS_TIMEOUT_S)
        checks["registry"] = CheckResult(ok=True)
        versions, errors = info.generators, info.generator_errors
        for name in services.config.pipeline.generators.enabled():
            version = versions.get(name)
            checks[f"generator:{name}"] = CheckResult(
                ok=version is not None,
                detail=version
                or errors.get(name)
                or f"no ShapeTexture replica has loaded {name!r} yet",
            )
        if services.config.text_to_image.model_path is not None:
            text = info.text_to_image
            checks["text_to_image"] = CheckResult(
                ok=text.version is not None,
                detail=text.version
                or text.error
                or "no TextToImage replica has loaded the model yet",
            )
    except Exception as exc:  # readiness reports, it does not raise
        checks["registry"] = CheckResult(ok=False, detail=type(exc).__name__)
    checks["storage"] = await _storage_check(services)
    model = background_model_file(services.config.pipeline)
    checks["background_model"] = CheckResult(
        ok=model.is_file(), detail=None if model.is_file() else f"missing: {model}"
    )
    if services.deployment_status is not None:
        try:
            statuses = await asyncio.wait_for(services.deployment_status(), READINESS_TIMEOUT_S)
            for name, (ok, detail) in statuses.items():
                checks[f"deployment:{name}"] = CheckResult(ok=ok, detail=detail)
        except Exception as exc:  # readiness reports, it does not raise
            checks["deployments"] = CheckResult(ok=False, detail=type(exc).__name__)
    return checks


async def _storage_check(services: Services) -> CheckResult:
    """Writable, and above the free-space floor under which new work is refused."""
    try:
        await run_in_threadpool(services.store.check_writable)
    except OSError as exc:
        return CheckResult(ok=False, detail=f"storage root not writable: {exc}")
    floor = services.config.storage.min_free_bytes
    free = await run_in_threadpool(services.store.free_bytes)
    if free < floor:
        return CheckResult(
            ok=False,
            detail=f"storage nearly full: {free} bytes free, below the floor of {floor} "
            "(storage.min_free_bytes); new uploads and jobs are refused",
        )
    return CheckResult(ok=True, detail=f"{free} bytes free")
