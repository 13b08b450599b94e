"""The registry's job snapshots and logs made into the API's response bodies."""

from __future__ import annotations

from collections import OrderedDict

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import OUTPUT_FORMATS
from serve_app.contracts.runs import UploadInfo
from serve_app.pipeline.text_params import prompt_sha256
from serve_app.registry.feeds import JobLog
from serve_app.registry.jobs import JobSnapshot
from serve_app.schemas.jobs import (
    JobLogEntry,
    JobLogResponse,
    JobStatusResponse,
    TextToImageStatus,
    VariantResponse,
    ViewInfo,
    as_datetime,
    download_url,
)


def job_status(job: JobSnapshot) -> JobStatusResponse:
    """A job's snapshot as clients see it."""
    request, result = job.request, job.result
    completed = job.status is JobStatus.COMPLETED and result is not None
    outputs: dict[str, str] = (
        {fmt: download_url(job.job_id, fmt) for fmt in OUTPUT_FORMATS} if completed else {}
    )
    return JobStatusResponse(
        job_id=job.job_id,
        status=job.status,
        run=job.run,
        source="prompt" if job.text is not None else "upload",
        stages=[str(stage) for stage in job.plan.stages] if job.run else [],
        stage=job.stage,
        progress=job.progress,
        eta_seconds=job.eta_seconds,
        queue_position=job.queue_position,
        stage_durations=job.stage_durations,
        cancel_requested=job.cancel_requested,
        error=job.error,
        format=request.format if request else None,
        quality=request.params.quality if request else None,
        generator=request.generator if request else None,
        views=view_list(job.upload),
        parameters=request.params.given() if request else {},
        generator_version=result.generator_version if result else None,
        watertight=result.watertight if result else None,
        cached=_from_cache(job),
        download_url=outputs.get(request.format) if request else None,
        outputs=outputs,
        image_url=f"/api/jobs/{job.job_id}/image" if job.upload is not None else None,
        text_to_image=text_status(job),
        thumbnail_url=f"/api/jobs/{job.job_id}/thumbnail" if completed else None,
        variants=[VariantResponse.of(job.job_id, v) for v in job.variants],
        created_at=as_datetime(job.created_at),
        updated_at=as_datetime(job.updated_at),
        started_at=as_datetime(job.started_at) if job.started_at else None,
        finished_at=as_datetime(job.finished_at) if job.finished_at else None,
    )


def view_list(upload: UploadInfo | None) -> list[ViewInfo]:
    """Every photo of a job by view, the photo's first (none before it has a picture)."""
    if upload is None:
        return []
    front = ViewInfo(
        view=upload.view,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        media_type=upload.media_type,
    )
    others = [
        ViewInfo(view=v.view, sha256=v.sha256, size_bytes=v.size_bytes, media_type=v.media_type)
        for v in upload.views
    ]
    return [front, *others]


def text_status(job: JobSnapshot) -> TextToImageStatus | None:
    """A text job's prompt (hash and length) and picture, as its status shows them."""
    text = job.text
    if text is None:
        return None
    image = job.image
    params = image.params if image is not None else text
    negative = text.negative_prompt
    return TextToImageStatus(
        prompt_sha256=prompt_sha256(text.prompt),
        prompt_chars=len(text.prompt),
        negative_prompt_sha256=prompt_sha256(negative) if negative is not None else None,
        negative_prompt_chars=len(negative) if negative is not None else None,
        seed=params.seed,
        steps=params.steps,
        guidance_scale=params.guidance_scale,
        width=params.width,
        height=params.height,
        made=image is not None,
        cached=bool(image and image.cached),
        model_version=image.model_version if image else None,
    )


class StatusBodies:
    """The JSON body of each job's current snapshot, rendered once per snapshot.

    A job view replaces a job's snapshot object on every change, so the body held for
    the very same object is that snapshot's body; many polls of an unchanged job cost one
    rendering. Holds the ``size`` most recently rendered jobs.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._bodies: OrderedDict[str, tuple[JobSnapshot, bytes]] = OrderedDict()

    def body(self, job: JobSnapshot) -> bytes:
        held = self._bodies.get(job.job_id)
        if held is not None and held[0] is job:
            return held[1]
        body = job_status(job).model_dump_json().encode()
        self._bodies[job.job_id] = (job, body)
        self._bodies.move_to_end(job.job_id)
        while len(self._bodies) > self.size:
            self._bodies.popitem(last=False)
        return body


def _from_cache(job: JobSnapshot) -> bool:
    """Whether the job's run completed without generating: every part it made came from
    the content-addressed caches (the model's, and a text run's picture's)."""
    if job.status is not JobStatus.COMPLETED:
        return False
    model = job.result.cached if job.result is not None else True
    picture = job.image.cached if job.plan.makes_image and job.image is not None else True
    return model and picture and (job.result is not None or job.image is not None)


def job_log(log: JobLog) -> JobLogResponse:
    """A job's recent events as clients see them."""
    return JobLogResponse(
        job_id=log.job_id,
        entries=[
            JobLogEntry(
                time=as_datetime(e.time), run=e.run, event=e.event, stage=e.stage, message=e.message
            )
            for e in log.entries
        ],
        dropped=log.dropped,
    )
