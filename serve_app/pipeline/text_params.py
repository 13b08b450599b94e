"""Text-to-image parameters resolved: defaults, drawn seeds, limits, the image cache key."""

from __future__ import annotations

import hashlib
import json
import secrets

from serve_app.contracts.text import MAX_SEED, TextToImageParams
from serve_app.errors import ValidationFailedError

#: Bumped when the image key recipe changes.
IMAGE_CACHE_SCHEMA = 1


def with_defaults(
    params: TextToImageParams, default_steps: int, default_guidance_scale: float
) -> TextToImageParams:
    """``params`` with a drawn seed, and the deployment's default steps and guidance scale,
    where unset; the size is left to the model (``with_size``)."""
    return params.model_copy(
        update={
            "seed": params.seed if params.seed is not None else draw_seed(),
            "steps": params.steps or default_steps,
            "guidance_scale": (
                params.guidance_scale
                if params.guidance_scale is not None
                else default_guidance_scale
            ),
        }
    )


def with_size(params: TextToImageParams, native_size: int) -> TextToImageParams:
    """``params`` with an unset width or height given the model's native side."""
    if params.width is not None and params.height is not None:
        return params
    return params.model_copy(
        update={"width": params.width or native_size, "height": params.height or native_size}
    )


def prompt_sha256(text: str) -> str:
    """The full sha256 hex of a prompt (UTF-8): what a job's status shows of it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def draw_seed() -> int:
    """A fresh random seed for a request that gave none."""
    return secrets.randbelow(MAX_SEED + 1)


def check_limits(params: TextToImageParams, max_pixels: int, max_steps: int) -> None:
    """Raise a 422 naming the field when ``params`` exceed a deployment's limits."""
    if params.steps is not None and params.steps > max_steps:
        _refuse("steps", f"must be at most {max_steps} on this service")
    width, height = params.width, params.height
    if width is not None and height is not None and width * height > max_pixels:
        _refuse("width", f"width × height must be at most {max_pixels} pixels on this service")


def _refuse(field: str, message: str) -> None:
    raise ValidationFailedError(
        f"{field}: {message}", fields=[{"loc": ["body", field], "message": message}]
    )


def image_cache_key(params: TextToImageParams, model_version: str) -> str:
    """The sha256 hex key of one generated image: a pure function of its inputs.

    Inputs: the prompt and negative prompt (exact text; a blank negative prompt is none),
    seed, steps, guidance scale, width and height — all resolved, so a key never
    depends on a default or a drawn seed — and ``model_version`` (the weights and
    configs' digest and the compute dtype, see ``TextToImageBackend.version``).
    Same inputs, same key; any change to one, another key.
    """
    if not params.resolved:
        raise ValueError("the image cache key needs resolved parameters (seed, steps, size)")
    recipe = {
        "schema": IMAGE_CACHE_SCHEMA,
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "steps": params.steps,
        "guidance_scale": float(params.guidance_scale or 0.0),
        "width": params.width,
        "height": params.height,
        "model_version": model_version,
    }
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()


def describe_prompt(text: str | None) -> str:
    """How a prompt appears in logs: a short hash and its length, never the text.

    The hash lets an operator tell whether two log lines came from the same prompt.
    """
    if text is None:
        return "none"
    return f"sha256:{prompt_sha256(text)[:12]} ({len(text)} chars)"
