"""Image decoding: types by magic bytes, limits before decoding, clear errors."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from serve_app.errors import (
    ImageTooLargeError,
    InvalidImageError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from serve_app.pipeline.config import ImageLimits
from serve_app.pipeline.images import check_image, decode_image, sniff_image_type
from tests.support import encode, photo


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_decode_real_photo_in_each_accepted_format(fmt, kind):
    data = encode(photo("coffee"), fmt)
    assert sniff_image_type(data) == kind
    image = decode_image(data)
    assert image.size == (600, 400)
    assert image.mode == "RGB"


def test_decode_keeps_alpha_channel():
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[10:30, 10:40] = 255
    image = decode_image(encode(rgba))
    assert image.mode == "RGBA"
    assert np.asarray(image)[..., 3].max() == 255


def test_empty_image_is_invalid():
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")


def test_gif_is_unsupported_media_type():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="GIF")
    with pytest.raises(UnsupportedMediaTypeError) as info:
        decode_image(buf.getvalue())
    assert info.value.status_code == 415


def test_text_pretending_to_be_an_image_is_unsupported():
    with pytest.raises(UnsupportedMediaTypeError):
        decode_image(b"<html>not an image</html>")


def test_truncated_png_is_invalid():
    data = encode(photo("chelsea"))
    with pytest.raises(InvalidImageError, match="truncated or corrupt") as info:
        decode_image(data[: len(data) // 2])
    assert info.value.status_code == 400


def test_corrupt_jpeg_is_invalid():
    data = bytearray(encode(photo("chelsea"), "JPEG"))
    data[200:4000] = bytes(3800)
    with pytest.raises(InvalidImageError):
        decode_image(bytes(data[:5000]))


def test_one_pixel_image_is_invalid():
    with pytest.raises(InvalidImageError, match="at least 16"):
        decode_image(encode(np.zeros((1, 1, 3), np.uint8)))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` but carries one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_absurd_dimensions_rejected_before_decoding():
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(_png_header_only(100_000, 100_000))
    assert info.value.status_code == 413


def test_decompression_bomb_rejected():
    # 6000×6000 of zeros compresses to a few kB but is 36 Mpx: over a 10 Mpx limit
    buf = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageTooLargeError):
        decode_image(buf.getvalue(), ImageLimits(max_pixels=10_000_000))


def test_oversized_upload_rejected_by_bytes():
    data = encode(photo("astronaut"))
    with pytest.raises(PayloadTooLargeError) as info:
        decode_image(data, ImageLimits(max_upload_bytes=len(data) - 1))
    assert info.value.status_code == 413


def test_exif_orientation_is_applied():
    array = np.zeros((20, 40, 3), np.uint8)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue()).size == (20, 40)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_check_image_accepts_real_photos_without_full_decode(fmt):
    assert check_image(encode(photo("astronaut"), fmt)) == fmt.lower()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_check_image_refuses_truncated_files(fmt):
    data = encode(photo("astronaut"), fmt)
    with pytest.raises(InvalidImageError):
        check_image(data[: len(data) // 3])


def test_check_image_refuses_bombs_and_absurd_headers():
    with pytest.raises(ImageTooLargeError):
        check_image(_png_header_only(100_000, 100_000))
