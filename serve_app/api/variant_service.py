"""New versions and pictures of a completed job's model: a variant is asked of the registry,
which makes each one once however many ask; a preview is rendered once into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serve_app.api.deps import Services
from serve_app.api.job_service import completed_job, find_variant, mesh_of
from serve_app.api.model_files import preview_file
from serve_app.contracts.variants import VariantOrder
from serve_app.meshtools.variants import PreviewOrder, VariantOperation, variant_id
from serve_app.registry.jobs import Viewer
from serve_app.schemas.jobs import VariantResponse
from serve_app.schemas.tools import PreviewRequest, VariantMade, VariantRequest


async def make_variant(
    services: Services,
    viewer: Viewer,
    body: VariantRequest,
    operation: VariantOperation,
    params: dict[str, Any],
) -> VariantMade:
    """The variant ``operation`` with ``params`` makes of the job's model (or of its variant
    ``body.variant``): 404 unknown job or variant, 409 not completed."""
    job = await completed_job(services, viewer, body.job_id)
    base_key, _ = await mesh_of(services, job, body.variant)
    order = VariantOrder(
        job_id=job.job_id,
        variant_id=variant_id(job.job_id, base_key, operation, params),
        base=body.variant,
        base_key=base_key,
        operation=str(operation),
        params=params,
    )
    job = await services.registry.make_variant(order)
    services.jobs.apply(job)  # read-your-writes: the variant is listed on this replica
    made = find_variant(job, order.variant_id)
    assert made is not None, "the registry answers with the job holding the variant"
    listed = VariantResponse.of(job.job_id, made)
    return VariantMade(job_id=job.job_id, **listed.model_dump(exclude={"created_at"}))


async def preview(services: Services, viewer: Viewer, body: PreviewRequest) -> Path:
    """The stored PNG of the view ``body`` asks of the job's model (or of its variant)."""
    job = await completed_job(services, viewer, body.job_id)
    key = (await mesh_of(services, job, body.variant))[0]
    order = PreviewOrder(mesh_key=key, **body.view_of())
    return await preview_file(services, order)
