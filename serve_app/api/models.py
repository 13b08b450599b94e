"""A completed job's model and its variants, as the routes that need one find them."""

from __future__ import annotations

from serve_app.api.deps import Services
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.variants import VariantInfo
from serve_app.errors import JobConflictError, VariantNotFoundError
from serve_app.registry.jobs import JobSnapshot, Viewer


async def completed_job(services: Services, viewer: Viewer, job_id: str) -> JobSnapshot:
    """The job, if ``viewer`` may see it (else 404) and it is completed (else 409)."""
    job = await services.jobs.get(job_id, viewer)
    if job.status is not JobStatus.COMPLETED or job.result is None:
        raise JobConflictError(
            f"job {job_id} is {job.status}; this needs its model, so wait until it is completed",
            status=str(job.status),
        )
    return job


async def mesh_of(
    services: Services, job: JobSnapshot, variant: str | None
) -> tuple[str, VariantInfo | None]:
    """The store key of the job's model, or of its variant ``variant`` (with the variant);
    404 for a variant the job does not have."""
    assert job.result is not None
    if variant is None:
        return job.result.artifact_key, None
    found = find_variant(job, variant)
    if found is None:  # made an instant ago, through another replica: ask the registry
        job = await services.registry.get(job.job_id)
        services.jobs.apply(job)
        found = find_variant(job, variant)
    if found is None:
        raise VariantNotFoundError(
            f"job {job.job_id} has no variant {variant}", job_id=job.job_id, variant=variant
        )
    return found.variant_id, found


def find_variant(job: JobSnapshot, variant: str) -> VariantInfo | None:
    return next((v for v in job.variants if v.variant_id == variant), None)
