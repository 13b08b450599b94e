"""Text to image: ``POST /api/text-to-image``, a prompt in, a job out (its picture is
``GET /api/jobs/{job_id}/image``, a job route).

Prompts are untrusted text: 1 to 1,000 characters, no control characters (tabs and line
breaks are allowed), never echoed in an error, logged only as a hash and a length, and
shown in a job's status the same way.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from serve_app.api import responses
from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.job_service import check_room, run_request
from serve_app.api.route_params import error_responses
from serve_app.api.webhook_service import check_callback, subscribe_job
from serve_app.errors import ModelNotConfiguredError
from serve_app.pipeline.text_params import (
    check_limits,
    describe_prompt,
    prompt_sha256,
    with_defaults,
)
from serve_app.schemas.jobs import JobStatusResponse
from serve_app.schemas.tools import TextToImageRequest

logger = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])


EXAMPLES: dict[str, Any] = {
    "picture": {
        "summary": "a picture (then POST /api/generate-3d with its job id)",
        "value": {"prompt": "a red ceramic mug on a white table", "seed": 7, "steps": 20},
    },
    "text_to_3d": {
        "summary": "a picture and a model of it, in one job",
        "value": {
            "prompt": "a ceramic owl, studio photo, plain background",
            "negative_prompt": "blurry, text",
            "seed": 42,
            "width": 512,
            "height": 512,
            "generate_3d": {"format": "glb", "quality": 5, "dimensions": {"height": 80}},
        },
    },
}
TextToImageBody = Annotated[TextToImageRequest, Body(openapi_examples=EXAMPLES)]

_TEXT_TO_3D = EXAMPLES["text_to_3d"]["value"]
#: The 202 of the text-to-3D example (some fields of the status left out).
ACCEPTED_EXAMPLE: dict[str, Any] = {
    "job_id": "6f1c2b0e9a8d4f3e8b7a6c5d4e3f2a1b",
    "status": "queued",
    "run": 1,
    "source": "prompt",
    "stages": [
        "text_to_image",
        "background_removal",
        "shape_generation",
        "texture_synthesis",
        "export",
    ],
    "stage": None,
    "progress": 0.0,
    "eta_seconds": 21.4,
    "queue_position": 1,
    "error": None,
    "format": "glb",
    "quality": 5,
    "generator": "inflate",
    "cached": False,
    "download_url": None,
    "outputs": {},
    "image_url": None,
    "text_to_image": {
        "prompt_sha256": prompt_sha256(_TEXT_TO_3D["prompt"]),
        "prompt_chars": len(_TEXT_TO_3D["prompt"]),
        "negative_prompt_sha256": prompt_sha256(_TEXT_TO_3D["negative_prompt"]),
        "negative_prompt_chars": len(_TEXT_TO_3D["negative_prompt"]),
        "seed": 42,
        "steps": 30,
        "guidance_scale": 7.0,
        "width": 512,
        "height": 512,
        "made": False,
        "cached": False,
        "model_version": None,
    },
}


@router.post(
    "/api/text-to-image",
    status_code=202,
    responses={
        202: {
            "description": "the job, queued: its status as GET /api/job-status/{job_id} shows it",
            "content": {"application/json": {"example": ACCEPTED_EXAMPLE}},
        },
        **error_responses(404, 422, 429, 503, 507),
    },
)
async def text_to_image(
    body: TextToImageBody, services: ServicesDep, viewer: ViewerDep, http: Request
) -> JobStatusResponse:
    """Make a picture from ``prompt`` as a new job (202 with its status; then, with
    ``generate_3d``, a model of it in the same run).

    The job runs in the registry like a model run: stage ``text_to_image`` with a progress
    step per denoising step, then (with ``generate_3d``) the four model stages, one
    progress bar over all of them; cancel, live events and retries as for any run. Once
    the picture is made, ``GET /api/jobs/{job_id}/image`` returns it and
    ``POST /api/generate-3d`` with the job id models it as it would an upload.

    503 ``model_not_configured`` when ``text_to_image.model_path`` is not set (an image is
    never faked); 422 naming the field for a bad prompt or parameters over the limits;
    503/429 with Retry-After when the service's queue or the caller's share is full.
    """
    section = services.config.text_to_image
    # Options the document refuses (an unknown generator) are a 422, configured or not.
    options = body.generate_3d
    then = run_request(options, services.config, ("generate_3d",)) if options else None
    if section.model_path is None:
        raise ModelNotConfiguredError(
            "text-to-image is not configured on this service: no text-to-image model is "
            "installed (setting text_to_image.model_path), so upload a photo instead",
            feature="text_to_image",
            setting="text_to_image.model_path",
        )
    params = body.params()
    check_limits(params, section.max_pixels, section.max_steps)
    # The seed is drawn here, so a retried or resumed run makes the very same picture.
    params = with_defaults(params, section.default_steps, section.default_guidance_scale)
    await check_callback(services, viewer, body.callback_url)
    await check_room(services)
    job_id = uuid.uuid4().hex
    client = getattr(http.state, "client_id", None)
    job = await services.registry.submit_text(job_id, params, then, viewer.key_id, client)
    services.jobs.apply(job)  # read-your-writes on this replica
    await subscribe_job(services, viewer, job, body.callback_url)
    logger.info(
        "text job %s: prompt %s, %s", job_id, describe_prompt(params.prompt), job.plan.value
    )
    return responses.job_status(job)
