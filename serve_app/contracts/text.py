"""What a text-to-image generation is asked for: the prompt rules, limits and parameters."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_PROMPT_CHARS = 1000
#: Seeds are 32-bit, so they survive JSON, JavaScript and numpy unchanged.
MAX_SEED = 2**32 - 1
MAX_STEPS = 150
MAX_GUIDANCE_SCALE = 30.0
MIN_SIDE = 64
MAX_SIDE = 2048
#: The most pixels any request may ask for (2 megapixels); a deployment may allow fewer.
MAX_PIXELS = 2 * 1024 * 1024
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

#: An image's width or height.
Side = Annotated[
    int | None,
    Field(
        default=None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=8,
        description="pixels, a multiple of 8; unset: the model's native size",
    ),
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
    width: Side = None
    height: Side = None

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
