"""Text-to-image parameters: prompt rules, limits, the image cache key (no torch)."""

from __future__ import annotations

import hashlib
import json
import secrets
import unicodedata
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from serve_app.errors import ValidationFailedError

MAX_PROMPT_CHARS = 1000
#: Seeds are 32-bit, so they survive JSON, JavaScript and numpy unchanged.
MAX_SEED = 2**32 - 1
MAX_STEPS = 150
MAX_GUIDANCE_SCALE = 30.0
MIN_SIDE = 64
MAX_SIDE = 2048
#: The most pixels any request may ask for (2 megapixels); a deployment may allow fewer.
MAX_PIXELS = 2 * 1024 * 1024
#: Bumped when the image key recipe changes.
IMAGE_CACHE_SCHEMA = 1

#: Whitespace a prompt may hold: a prompt typed in a text area may span lines.
ALLOWED_CONTROLS = frozenset("\t\n\r")
#: Bidirectional embeddings, overrides and isolates: they make text read other than it is.
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def check_prompt_text(text: str) -> str:
    """Return ``text`` if it is a usable prompt; raise ValueError saying why not.

    Refused: text with no visible character; control characters other than tab, line feed
    and carriage return (C0, DEL, C1); lone surrogates; bidirectional controls. The message
    names the offending code point and position, never the text itself.
    """
    _check_characters(text)
    if not text.strip():
        raise ValueError("must contain visible text, not only whitespace")
    return text


def check_negative_prompt(text: str | None) -> str | None:
    """A negative prompt follows the prompt's character rules; blank means none."""
    if text is None:
        return None
    _check_characters(text)
    return text if text.strip() else None


def _check_characters(text: str) -> None:
    for position, char in enumerate(text, start=1):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in ALLOWED_CONTROLS) or char in BIDI_CONTROLS:
            raise ValueError(
                f"must not contain control characters (U+{ord(char):04X} at character "
                f"{position}); tabs and line breaks are allowed"
            )
        if category == "Cs":
            raise ValueError(f"must be valid Unicode (a lone surrogate at character {position})")


Prompt = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PROMPT_CHARS, examples=["a red ceramic mug"], repr=False),
    AfterValidator(check_prompt_text),
]
NegativePrompt = Annotated[
    str | None,
    Field(default=None, max_length=MAX_PROMPT_CHARS, examples=["blurry, text"], repr=False),
    AfterValidator(check_negative_prompt),
]


class TextToImageParams(BaseModel):
    """What one text-to-image generation is asked for; all of it is in the image cache key.

    Unset ``seed``, ``steps``, ``guidance_scale``, ``width`` and ``height`` are filled in
    before the key is made (a drawn seed, the deployment's defaults, the model's native
    size), so a resolved copy says exactly what was generated. The prompts are left out of
    the ``repr``, so a logged object never shows them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="same seed, same image; unset: drawn"
    )
    steps: int | None = Field(
        default=None, ge=1, le=MAX_STEPS, description="denoising steps; unset: the default"
    )
    guidance_scale: float | None = Field(
        default=None,
        ge=0.0,
        le=MAX_GUIDANCE_SCALE,
        allow_inf_nan=False,
        description="classifier-free guidance; unset: the default",
    )
    width: int | None = Field(
        default=None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=8,
        description="pixels, a multiple of 8; unset: the model's native size",
    )
    height: int | None = Field(
        default=None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=8,
        description="pixels, a multiple of 8; unset: the model's native size",
    )

    @model_validator(mode="after")
    def _bounded_pixels(self) -> Self:
        width, height = self.width, self.height
        if width is not None and height is not None and width * height > MAX_PIXELS:
            raise ValueError(f"width × height must be at most {MAX_PIXELS} pixels")
        return self

    @property
    def resolved(self) -> bool:
        """Every value that decides the image is set."""
        return None not in (self.seed, self.steps, self.guidance_scale, self.width, self.height)


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
