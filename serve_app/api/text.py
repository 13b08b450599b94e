"""``POST /api/text-to-image``: a prompt in, an upload out — when a model is configured."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.schemas import ErrorResponse, UploadResponse
from serve_app.errors import ModelNotConfiguredError

router = APIRouter(tags=["jobs"])


class TextToImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Field(min_length=1, max_length=500, examples=["a red ceramic mug"])]


@router.post(
    "/api/text-to-image",
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def text_to_image(body: TextToImageRequest) -> UploadResponse:
    """Make a photo from ``prompt`` and store it as a new upload (then generate as usual).

    This build has no text-to-image backend, so the answer is always a 503
    ``model_not_configured``: an image is never faked. Upload a photo instead.
    """
    raise ModelNotConfiguredError(
        "text-to-image is not configured on this service: no text-to-image model is "
        "installed, so upload a photo instead",
        feature="text_to_image",
    )
