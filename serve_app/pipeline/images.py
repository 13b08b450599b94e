"""Safe image decoding: type by magic bytes, size limits checked before pixels are decoded."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from serve_app.errors import (
    ImageTooLargeError,
    InvalidImageError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from serve_app.pipeline.config import ImageLimits

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def sniff_image_type(data: bytes) -> str:
    """Return ``"png"``, ``"jpeg"`` or ``"webp"`` from the magic bytes, or raise 415/400."""
    if not data:
        raise InvalidImageError("the image is empty (0 bytes)")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise UnsupportedMediaTypeError(
        "unsupported image type: only PNG, JPEG and WebP are accepted",
        accepted=["image/png", "image/jpeg", "image/webp"],
    )


@contextmanager
def _opened(data: bytes, limits: ImageLimits) -> Iterator[tuple[ImageFile.ImageFile, str]]:
    """Open ``data`` lazily, refusing by bytes, type and header dimensions (413/415/400)
    before any pixel is decoded; decoding errors inside the block become a clear 400/413.
    """
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the image is {len(data)} bytes; the limit is {limits.max_upload_bytes}",
            limit_bytes=limits.max_upload_bytes,
        )
    kind = sniff_image_type(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]])
            _check_dimensions(image.size, limits)
            yield image, kind
    except (ImageTooLargeError, InvalidImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the image is too large to decode: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"the {kind.upper()} file is truncated or corrupt") from exc


def check_image(data: bytes, limits: ImageLimits | None = None) -> str:
    """Validate an upload as cheaply as decoding allows; return its type (as ``sniff_image_type``).

    PNG chunks and CRCs are verified, a JPEG is decoded at 1/8 scale, a WebP in full.
    """
    with _opened(data, limits or ImageLimits()) as (image, kind):
        if kind == "png":
            image.verify()
        else:
            if kind == "jpeg":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    return kind


def decode_image(data: bytes, limits: ImageLimits | None = None) -> Image.Image:
    """Decode ``data`` into a fully loaded RGB or RGBA image, upright per its EXIF orientation."""
    with _opened(data, limits or ImageLimits()) as (image, _):
        image.load()
    upright: Image.Image = ImageOps.exif_transpose(image) or image
    if upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    ):
        return upright.convert("RGBA")
    return upright.convert("RGB")


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if min(width, height) < limits.min_side:
        raise InvalidImageError(
            f"the image is {width}×{height} pixels; each side must be at least {limits.min_side}"
        )
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} pixels; the limits are {limits.max_side} per side "
            f"and {limits.max_pixels} pixels in all",
            max_side=limits.max_side,
            max_pixels=limits.max_pixels,
        )
