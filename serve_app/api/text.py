"""``POST /api/text-to-image``: a prompt in, an image job out — when a model is configured.

Prompts are untrusted text: 1 to 1,000 characters, no control characters (tabs and line
breaks are allowed), never echoed in an error and logged only as a hash and a length.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from serve_app.api.deps import ServicesDep
from serve_app.api.schemas import ErrorResponse, GenerateOptions, UploadResponse
from serve_app.errors import ModelNotConfiguredError, ModelUnavailableError
from serve_app.pipeline.text_params import TextToImageParams, check_limits, describe_prompt

logger = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])


class TextToImageRequest(TextToImageParams):
    """``POST /api/text-to-image``: the picture to make, and optionally the model to make
    of it (``generate_3d``) in the same job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generate_3d: GenerateOptions | None = Field(
        default=None, description="go on to a 3D model under the same job id"
    )

    def params(self) -> TextToImageParams:
        return TextToImageParams.model_validate(self.model_dump(exclude={"generate_3d"}))


@router.post(
    "/api/text-to-image",
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def text_to_image(body: TextToImageRequest, services: ServicesDep) -> UploadResponse:
    """Make a picture from ``prompt`` (then, with ``generate_3d``, a model of it).

    503 ``model_not_configured`` when ``text_to_image.model_path`` is not set: an image is
    never faked. 422 naming the field for a bad prompt or parameters over the limits.
    """
    section = services.config.text_to_image
    if section.model_path is None:
        raise ModelNotConfiguredError(
            "text-to-image is not configured on this service: no text-to-image model is "
            "installed (setting text_to_image.model_path), so upload a photo instead",
            feature="text_to_image",
            setting="text_to_image.model_path",
        )
    params = body.params()
    check_limits(params, section.max_pixels, section.max_steps)
    logger.info("text-to-image request refused: prompt %s", describe_prompt(params.prompt))
    raise ModelUnavailableError(
        "text-to-image jobs are not served by this version of the service: upload a photo instead",
        feature="text_to_image",
        setting="text_to_image.model_path",
    )
