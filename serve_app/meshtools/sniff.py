"""Recognise a mesh file by its bytes (never its name): binary or ASCII STL, OBJ, PLY, GLB."""

from __future__ import annotations

import re
import struct
from enum import StrEnum

from serve_app.errors import InvalidMeshError, UnsupportedMediaTypeError


class MeshFormat(StrEnum):
    """The mesh formats the tools read; ``stl`` is binary or ASCII."""

    STL = "stl"
    OBJ = "obj"
    PLY = "ply"
    GLB = "glb"


#: Bytes of a binary STL before its triangles, and of each triangle record.
STL_HEADER_BYTES = 84
STL_RECORD_BYTES = 50

#: Other files people send by mistake, named in the 415's message.
_FOREIGN: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP, WAV, AVI)"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (3MF, a zipped OBJ: send the .obj itself)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
    (b"Draco", "a Draco-compressed mesh"),
    (b"\x00\x00\x00\x1cftyp", "a video"),
)
_OBJ_KEYWORDS = frozenset(
    b"v vt vn vp f l p o g s mtllib usemtl cstype deg curv curv2 surf parm end".split()
)
#: How much of the start of a file the text checks read.
_SNIFF_BYTES = 64 * 1024
_PRINTABLE = re.compile(rb"[^\t\n\r\x20-\x7e]")


def sniff_format(data: bytes) -> MeshFormat:
    """The format of ``data``. Raises UnsupportedMediaTypeError (415) for bytes that are no
    mesh file, InvalidMeshError (400) for an empty file or a binary STL whose header lies."""
    if not data:
        raise InvalidMeshError("the file is empty")
    if data[:4] == b"glTF":
        return MeshFormat.GLB
    if re.match(rb"ply\r?\n", data[:5]):
        return MeshFormat.PLY
    if _is_binary_stl(data):
        return MeshFormat.STL
    head = data[:_SNIFF_BYTES]
    if _is_text(head):
        first = head.lstrip()[:5].lower()
        if first == b"solid":
            return MeshFormat.STL
        if _looks_like_obj(head):
            return MeshFormat.OBJ
        raise UnsupportedMediaTypeError(
            "this is text but not a mesh file; send binary or ASCII STL, OBJ, PLY or GLB"
        )
    for magic, what in _FOREIGN:
        if data.startswith(magic):
            raise UnsupportedMediaTypeError(
                f"this is {what}, not a mesh file; send binary or ASCII STL, OBJ, PLY or GLB"
            )
    if _stl_like(data):
        claimed = struct.unpack_from("<I", data, 80)[0]
        holds = (len(data) - STL_HEADER_BYTES) // STL_RECORD_BYTES
        raise InvalidMeshError(
            f"the binary STL header claims {claimed} triangles, but the file's "
            f"{len(data)} bytes hold {holds}",
            claimed_triangles=claimed,
            size_bytes=len(data),
        )
    raise UnsupportedMediaTypeError(
        "these bytes are not a mesh file; send binary or ASCII STL, OBJ, PLY or GLB"
    )


def stl_is_binary(data: bytes) -> bool:
    """For a file that :func:`sniff_format` called STL: binary (else ASCII)."""
    return _is_binary_stl(data) or data[:4096].lstrip()[:5].lower() != b"solid"


def _is_binary_stl(data: bytes) -> bool:
    """Exactly the size its header's triangle count says (whatever the header's text:
    some binary writers start it with "solid" too)."""
    if len(data) < STL_HEADER_BYTES:
        return False
    count = struct.unpack_from("<I", data, 80)[0]
    return len(data) == STL_HEADER_BYTES + STL_RECORD_BYTES * count


def _stl_like(data: bytes) -> bool:
    """A binary STL whose count is wrong: whole records after the header, or a first
    record that reads as a triangle (a unit or zero normal, finite corners)."""
    if len(data) < STL_HEADER_BYTES + STL_RECORD_BYTES:
        return len(data) == STL_HEADER_BYTES
    if (len(data) - STL_HEADER_BYTES) % STL_RECORD_BYTES == 0:
        return True
    values = struct.unpack_from("<12f", data, STL_HEADER_BYTES)
    if not all(abs(v) < 1e12 for v in values):  # also false for NaN
        return False
    norm = sum(v * v for v in values[:3])
    return norm < 1e-6 or abs(norm - 1.0) < 1e-3


def _is_text(head: bytes) -> bool:
    """Printable ASCII (UTF-8 comments allowed: a few high bytes), no NUL bytes."""
    if b"\x00" in head:
        return False
    stray = len(_PRINTABLE.findall(head))
    return stray <= len(head) // 100 or _utf8(head)


def _utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is fine
        return exc.start >= len(head) - 3
    return True


def _looks_like_obj(head: bytes) -> bool:
    """Every statement line starts with an OBJ keyword, and vertices appear."""
    lines = [line.strip() for line in head.splitlines()[:-1] or head.splitlines()]
    statements = [line for line in lines if line and not line.startswith(b"#")]
    if not statements:
        return False
    keywords = {line.split(None, 1)[0] for line in statements}
    return keywords <= _OBJ_KEYWORDS and b"v" in keywords
