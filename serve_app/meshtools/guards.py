"""Checks on a PLY header or a GLB's JSON before a parser allocates what they claim."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from serve_app.errors import InvalidMeshError, MeshTooLargeError, UnsupportedMediaTypeError
from serve_app.meshtools.config import MeshLimits

_PLY_SIZES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1,
    "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4,
    "double": 8, "float64": 8,
}  # fmt: skip
_MAX_PLY_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    #: Bytes of one record in a binary body, the lists counted at their smallest.
    min_record_bytes: int


def check_ply(data: bytes, limits: MeshLimits) -> None:
    """Refuse a PLY whose header is malformed, claims more vertices or faces than the
    limits, or more records than its body can hold."""
    end = data.find(b"end_header", 0, _MAX_PLY_HEADER_BYTES)
    if end < 0:
        raise InvalidMeshError("the PLY header has no end_header line in its first 64 KiB")
    body_start = data.find(b"\n", end) + 1 or len(data)
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    encoding = ""
    elements: list[PlyElement] = []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            encoding = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(PlyElement(words[1], int(words[2]), 0))
        elif words[0] == "property" and elements:
            size = _ply_property_bytes(words)
            last = elements[-1]
            elements[-1] = PlyElement(last.name, last.count, last.min_record_bytes + size)
        else:
            raise InvalidMeshError(f"the PLY header has a line it cannot read: {line[:60]!r}")
    if encoding not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InvalidMeshError("the PLY header names no known format")
    counts = {e.name: e.count for e in elements}
    check_counts(counts.get("vertex", 0), counts.get("face", 0), limits)
    body = len(data) - body_start
    if encoding == "ascii":
        records = sum(e.count for e in elements)
        if records > data.count(b"\n", body_start) + 1:
            raise InvalidMeshError(
                f"the PLY header claims {records} records, but the file has fewer lines"
            )
    else:
        needed = sum(e.count * e.min_record_bytes for e in elements)
        if needed > body:
            raise InvalidMeshError(
                f"the PLY header claims {needed} bytes of records, but the body holds {body}"
            )


def _ply_property_bytes(words: list[str]) -> int:
    """One property's bytes in a binary record; a list counts its length field and, for
    faces, three indices (fewer makes no triangle)."""
    if len(words) >= 5 and words[1] == "list":
        count, item = _PLY_SIZES.get(words[2]), _PLY_SIZES.get(words[3])
        if count is None or item is None:
            raise InvalidMeshError(f"unknown PLY list type in {' '.join(words)[:60]!r}")
        return count + (3 * item if words[-1] in ("vertex_indices", "vertex_index") else 0)
    if len(words) == 3 and words[1] in _PLY_SIZES:
        return _PLY_SIZES[words[1]]
    raise InvalidMeshError(f"unknown PLY property {' '.join(words)[:60]!r}")


# -- GLB -------------------------------------------------------------------------------------

_GLB_HEADER = struct.Struct("<4sII")
_CHUNK = struct.Struct("<II")
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
#: Extensions that change how geometry is stored; trimesh reads none of them.
_UNSUPPORTED = ("KHR_draco_mesh_compression", "EXT_meshopt_compression", "KHR_mesh_quantization")


def check_glb(data: bytes, limits: MeshLimits) -> None:
    """Refuse a GLB whose container is inconsistent, whose accessors reach past their
    buffers, whose scene graph is not a forest or places more triangles than the limits."""
    if len(data) < _GLB_HEADER.size + _CHUNK.size:
        raise InvalidMeshError("the GLB is shorter than its header")
    _, version, length = _GLB_HEADER.unpack_from(data)
    if version != 2:
        raise UnsupportedMediaTypeError(f"glTF version {version} is not supported; send glTF 2")
    if length > len(data):
        raise InvalidMeshError(f"the GLB header claims {length} bytes, the file has {len(data)}")
    gltf, bin_length = _chunks(data, length)
    required = set(gltf.get("extensionsRequired") or ())
    for name in _UNSUPPORTED:
        if name in required:
            raise UnsupportedMediaTypeError(f"GLB with {name} is not supported; export it plain")
    for buffer in _list(gltf, "buffers"):
        if "uri" in buffer:
            raise InvalidMeshError("the GLB refers to an external buffer; embed it")
    views = _list(gltf, "bufferViews")
    for view in views:
        end = _int(view.get("byteOffset", 0)) + _int(view.get("byteLength", 0))
        if _int(view.get("buffer", 0)) != 0 or end > bin_length:
            raise InvalidMeshError("a GLB buffer view reaches past the binary chunk")
    accessors = _list(gltf, "accessors")
    for accessor in accessors:
        _check_accessor(accessor, views, limits)
    triangles = [_mesh_triangles(mesh, accessors) for mesh in _list(gltf, "meshes")]
    nodes = _list(gltf, "nodes")
    if len(nodes) > limits.max_gltf_nodes:
        raise MeshTooLargeError(
            f"the GLB has {len(nodes)} nodes; the limit is {limits.max_gltf_nodes}"
        )
    parents = [0] * len(nodes)
    for node in nodes:
        for child in node.get("children") or ():
            if not 0 <= _int(child) < len(nodes):
                raise InvalidMeshError("a GLB node has a child that does not exist")
            parents[child] += 1
    if any(p > 1 for p in parents):
        raise InvalidMeshError("a GLB node has two parents: the scene graph must be a tree")
    placed = 0
    for node in nodes:
        if "mesh" in node:
            index = _int(node["mesh"])
            if not 0 <= index < len(triangles):
                raise InvalidMeshError("a GLB node places a mesh that does not exist")
            placed += triangles[index]
    if placed > limits.max_faces:
        raise MeshTooLargeError(
            f"the GLB places {placed} triangles; the limit is {limits.max_faces}",
            triangles=placed,
            limit=limits.max_faces,
        )


def _chunks(data: bytes, length: int) -> tuple[dict[str, Any], int]:
    """The JSON document and the length of the BIN chunk (0 if none)."""
    offset = _GLB_HEADER.size
    json_length, kind = _CHUNK.unpack_from(data, offset)
    offset += _CHUNK.size
    if kind != _JSON_CHUNK or offset + json_length > length:
        raise InvalidMeshError("the GLB's first chunk is not a whole JSON chunk")
    try:
        gltf = json.loads(data[offset : offset + json_length])
    except (ValueError, RecursionError):
        raise InvalidMeshError("the GLB's JSON chunk is not valid JSON") from None
    if not isinstance(gltf, dict):
        raise InvalidMeshError("the GLB's JSON chunk is not an object")
    offset += (json_length + 3) & ~3
    bin_length = 0
    if offset + _CHUNK.size <= length:
        bin_length, kind = _CHUNK.unpack_from(data, offset)
        if kind != _BIN_CHUNK or offset + _CHUNK.size + bin_length > length:
            raise InvalidMeshError("the GLB's binary chunk is cut short")
    return gltf, bin_length


def _check_accessor(accessor: dict[str, Any], views: list[Any], limits: MeshLimits) -> None:
    count = _int(accessor.get("count", 0))
    if count > 3 * max(limits.max_faces, limits.max_vertices):
        raise MeshTooLargeError(f"a GLB accessor holds {count} elements; too many")
    if "bufferView" not in accessor:
        return
    view_index = _int(accessor["bufferView"])
    if not 0 <= view_index < len(views):
        raise InvalidMeshError("a GLB accessor refers to a buffer view that does not exist")
    view = views[view_index]
    component = _COMPONENT_BYTES.get(_int(accessor.get("componentType", 0)))
    components = _TYPE_COMPONENTS.get(str(accessor.get("type")))
    if component is None or components is None:
        raise InvalidMeshError("a GLB accessor has an unknown type")
    element = component * components
    stride = max(_int(view.get("byteStride", 0)), element)
    needed = _int(accessor.get("byteOffset", 0)) + (stride * (count - 1) + element if count else 0)
    if needed > _int(view.get("byteLength", 0)):
        raise InvalidMeshError("a GLB accessor reaches past its buffer view")


def _mesh_triangles(mesh: dict[str, Any], accessors: list[Any]) -> int:
    """Triangles of one glTF mesh: its primitives' indices (or positions) per mode."""
    total = 0
    for primitive in mesh.get("primitives") or ():
        mode = _int(primitive.get("mode", 4))
        if "indices" in primitive:
            source = primitive["indices"]
        else:
            source = (primitive.get("attributes") or {}).get("POSITION", -1)
        if not 0 <= _int(source) < len(accessors):
            raise InvalidMeshError("a GLB primitive refers to an accessor that does not exist")
        count = _int(accessors[source].get("count", 0))
        total += count // 3 if mode == 4 else max(count - 2, 0) if mode in (5, 6) else 0
    return total


def check_counts(vertices: int, faces: int, limits: MeshLimits) -> None:
    """Refuse more vertices or faces than the limits (413)."""
    if faces > limits.max_faces:
        raise MeshTooLargeError(
            f"the file claims {faces} faces; the limit is {limits.max_faces}",
            faces=faces,
            limit=limits.max_faces,
        )
    if vertices > limits.max_vertices:
        raise MeshTooLargeError(
            f"the file claims {vertices} vertices; the limit is {limits.max_vertices}",
            vertices=vertices,
            limit=limits.max_vertices,
        )


def _list(gltf: dict[str, Any], key: str) -> list[Any]:
    value = gltf.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidMeshError(f"the GLB's {key} is not a list of objects")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMeshError("the GLB's JSON has a negative or non-integer count or index")
    return value
