"""Read a mesh file's bytes into vertices and triangles in millimetres, defensively.

Units: STL carries none and is read as millimetres; OBJ and PLY as millimetres too (what
this service writes); GLB is in metres (glTF's unit) and is converted. Sizes are checked
before a parser sees the bytes (the body, the claimed counts), and the result is checked
after (counts, indices, finite coordinates).
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

import numpy as np

from serve_app.errors import InvalidMeshError, PayloadTooLargeError
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.guards import check_counts, check_glb, check_ply
from serve_app.meshtools.sniff import (
    STL_HEADER_BYTES,
    MeshFormat,
    sniff_format,
    stl_is_binary,
)

#: glTF's metre in the millimetres every other format uses.
MM_PER_METRE = 1000.0
#: Coordinates beyond ±1000 km are refused: their volumes would overflow.
MAX_COORDINATE_MM = 1e9

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
_ASCII_VERTEX = re.compile(rb"vertex[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", re.IGNORECASE)


@dataclass
class LoadedMesh:
    """A mesh as read from a file, in millimetres.

    vertices : (n, 3) float64, millimetres; as the file indexes them (STL: three per
               triangle, unmerged)
    faces    : (m, 3) int64, indices into ``vertices``
    format   : the format recognised from the bytes
    """

    vertices: np.ndarray
    faces: np.ndarray
    format: MeshFormat


def read_mesh(data: bytes, limits: MeshLimits | None = None) -> LoadedMesh:
    """Recognise and read ``data``.

    Raises PayloadTooLargeError (413) past ``limits.max_upload_bytes``, MeshTooLargeError
    (413) past the face or vertex limits, UnsupportedMediaTypeError (415) for bytes that
    are no mesh file, InvalidMeshError (400) for a broken one.
    """
    limits = limits or MeshLimits()
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the mesh file is larger than {limits.max_upload_bytes} bytes",
            limit_bytes=limits.max_upload_bytes,
        )
    fmt = sniff_format(data)
    if fmt is MeshFormat.STL:
        if stl_is_binary(data):
            vertices, faces = _binary_stl(data, limits)
        else:
            vertices, faces = _ascii_stl(data, limits)
    elif fmt is MeshFormat.OBJ:
        vertices, faces = _obj(data, limits)
    elif fmt is MeshFormat.PLY:
        check_ply(data, limits)
        vertices, faces = _with_trimesh(data, "ply")
    else:
        check_glb(data, limits)
        vertices, faces = _with_trimesh(data, "glb")
        vertices = vertices * MM_PER_METRE
    return _checked(vertices, faces, fmt, limits)


def _binary_stl(data: bytes, limits: MeshLimits) -> tuple[np.ndarray, np.ndarray]:
    count = struct.unpack_from("<I", data, 80)[0]
    check_counts(0, count, limits)
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=STL_HEADER_BYTES)
    vertices = records["corners"].reshape(-1, 3).astype(np.float64)
    return vertices, np.arange(3 * count, dtype=np.int64).reshape(-1, 3)


def _ascii_stl(data: bytes, limits: MeshLimits) -> tuple[np.ndarray, np.ndarray]:
    facets = len(re.findall(rb"endfacet", data, re.IGNORECASE))
    check_counts(0, facets, limits)
    corners = _ASCII_VERTEX.findall(data)
    if len(corners) != 3 * facets:
        raise InvalidMeshError(
            f"the ASCII STL has {facets} facets but {len(corners)} vertices; "
            "each facet needs exactly three"
        )
    vertices = _floats(corners).reshape(-1, 3)
    return vertices, np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)


def _obj(data: bytes, limits: MeshLimits) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (``v``) and faces (``f``, polygons split as fans; ``i``, ``i/t``, ``i/t/n``,
    ``i//n``, negative indices relative) of an OBJ; the rest is ignored."""
    text = b"\n" + data
    check_counts(text.count(b"\nv "), text.count(b"\nf "), limits)
    positions = re.findall(rb"(?m)^v[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", data)
    vertices = _floats(positions).reshape(-1, 3)
    triangles: list[tuple[int, int, int]] = []
    for line in re.findall(rb"(?m)^f[ \t]+([^\r\n#]*)", data):
        corners = [_obj_index(token, len(vertices)) for token in line.split()]
        if len(corners) < 3:
            raise InvalidMeshError("an OBJ face has fewer than three corners")
        if len(triangles) + len(corners) - 2 > limits.max_faces:
            check_counts(0, len(triangles) + len(corners) - 2, limits)
        first = corners[0]
        triangles.extend((first, b, c) for b, c in zip(corners[1:-1], corners[2:], strict=True))
    faces = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    return vertices, faces


def _obj_index(token: bytes, count: int) -> int:
    head = token.split(b"/", 1)[0]
    try:
        index = int(head)
    except ValueError:
        message = f"an OBJ face has a corner that is not an index: {head[:20]!r}"
        raise InvalidMeshError(message) from None
    if index < 0:
        index += count + 1
    if not 1 <= index <= count:
        raise InvalidMeshError(f"an OBJ face refers to vertex {int(head)}; there are {count}")
    return index - 1


def _floats(rows: list[tuple[bytes, bytes, bytes]]) -> np.ndarray:
    try:
        return np.array(rows, dtype="S40").astype(np.float64)
    except ValueError:
        raise InvalidMeshError("a vertex has a coordinate that is not a number") from None


def _with_trimesh(data: bytes, file_type: str) -> tuple[np.ndarray, np.ndarray]:
    """PLY and GLB through trimesh, after the guards: the scene's meshes placed by their
    nodes and concatenated; materials and images are not decoded."""
    import trimesh

    try:
        loaded = trimesh.load(
            io.BytesIO(data), file_type=file_type, process=False, skip_materials=True
        )
    except (ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        raise InvalidMeshError(f"the {file_type.upper()} file cannot be read: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(meshes) if meshes else trimesh.Trimesh()
    if not isinstance(loaded, trimesh.Trimesh):
        raise InvalidMeshError(f"the {file_type.upper()} file holds no triangle mesh")
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    return vertices, faces


def _checked(
    vertices: np.ndarray, faces: np.ndarray, fmt: MeshFormat, limits: MeshLimits
) -> LoadedMesh:
    # STL repeats each corner per triangle: its vertex count is three per face, unmerged
    check_counts(0 if fmt is MeshFormat.STL else len(vertices), len(faces), limits)
    if len(faces) == 0:
        raise InvalidMeshError("the file holds no triangles")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InvalidMeshError("a face refers to a vertex that does not exist")
    if not np.isfinite(vertices).all():
        raise InvalidMeshError("the mesh has NaN or infinite coordinates")
    if np.abs(vertices).max() > MAX_COORDINATE_MM:
        raise InvalidMeshError(f"the mesh has coordinates beyond ±{MAX_COORDINATE_MM:g} mm")
    return LoadedMesh(vertices=vertices, faces=faces, format=fmt)
