"""Reading mesh files by content: every format in, and hostile files refused before they cost."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from serve_app.errors import (
    InvalidMeshError,
    MeshTooLargeError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.readers import read_mesh
from serve_app.meshtools.sniff import MeshFormat
from serve_app.pipeline.export import export_mesh
from tests.meshes import (
    CUBE_FACES,
    CUBE_VERTICES,
    ascii_stl,
    binary_stl,
    cube,
    pipeline_mesh,
    textured_cube,
)
from tests.support import encode, photo, photo_bytes

OBJ_CUBE = (
    "# a cube, with texture coordinates and normals as exporters write them\n"
    + "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
    + "vt 0 0\nvn 0 0 1\n"
    + "".join(f"f {a + 1}/1/1 {b + 1}/1/1 {c + 1}/1/1\n" for a, b, c in CUBE_FACES)
).encode()


def ply_cube(binary: bool) -> bytes:
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment a cube",
        f"element vertex {len(CUBE_VERTICES)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(CUBE_FACES)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    head = ("\n".join(header) + "\n").encode()
    if binary:
        body = CUBE_VERTICES.astype("<f4").tobytes() + b"".join(
            struct.pack("<B3i", 3, *face) for face in CUBE_FACES
        )
    else:
        body = "".join(f"{x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES).encode()
        body += "".join(f"3 {a} {b} {c}\n" for a, b, c in CUBE_FACES).encode()
    return head + body


def assert_is_cube(mesh, fmt: MeshFormat) -> None:
    assert mesh.format is fmt
    assert len(mesh.faces) == 12
    assert mesh.vertices[mesh.faces].min() == pytest.approx(0.0, abs=1e-4)
    assert np.ptp(mesh.vertices[mesh.faces].reshape(-1, 3), axis=0) == pytest.approx(
        [10.0, 10.0, 10.0], abs=1e-4
    )


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("binary stl", binary_stl(*cube()), MeshFormat.STL),
        ("binary stl whose header says solid", binary_stl(*cube(), b"solid x"), MeshFormat.STL),
        ("ascii stl", ascii_stl(*cube()), MeshFormat.STL),
        ("obj", OBJ_CUBE, MeshFormat.OBJ),
        ("ascii ply", ply_cube(binary=False), MeshFormat.PLY),
        ("binary ply", ply_cube(binary=True), MeshFormat.PLY),
        ("glb in metres", export_mesh(textured_cube(), "glb"), MeshFormat.GLB),
    ],
)
def test_every_format_is_read_by_content_in_millimetres(name, data, fmt):
    assert_is_cube(read_mesh(data), fmt)


@pytest.mark.parametrize("fmt", ["glb", "stl", "ply", "obj"])
def test_the_services_own_exports_read_back_with_every_triangle(fmt):
    mesh = pipeline_mesh()
    data = export_mesh(mesh, fmt)
    if fmt == "obj":
        data = zipfile.ZipFile(io.BytesIO(data)).read("model.obj")
    loaded = read_mesh(data)
    assert loaded.format == fmt
    assert len(loaded.faces) == len(mesh.faces)
    assert np.ptp(loaded.vertices, axis=0) == pytest.approx(np.ptp(mesh.vertices, axis=0), rel=1e-5)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        with pytest.raises((InvalidMeshError, MeshTooLargeError)):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("claimed", [1_000_000_000, 2**32 - 1, 13, 5])
def test_stl_header_claiming_other_than_its_bytes_hold_is_refused_before_allocating(claimed):
    data = bytearray(binary_stl(*cube()))
    data[80:84] = struct.pack("<I", claimed)
    peak = peak_bytes(lambda: read_mesh(bytes(data)))
    assert peak < 1_000_000
    with pytest.raises(InvalidMeshError, match=f"claims {claimed} triangles.*hold 12"):
        read_mesh(bytes(data))


def test_stl_claiming_more_triangles_than_the_limit_is_413_before_parsing():
    with pytest.raises(MeshTooLargeError, match="limit is 10"):
        read_mesh(binary_stl(*cube()), MeshLimits(max_faces=10))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_are_refused(bad):
    vertices = CUBE_VERTICES.copy()
    vertices[3, 1] = bad
    with pytest.raises(InvalidMeshError, match="NaN or infinite"):
        read_mesh(binary_stl(vertices, CUBE_FACES))
    with pytest.raises(InvalidMeshError, match="NaN or infinite"):
        read_mesh(ascii_stl(vertices, CUBE_FACES))
    with pytest.raises(InvalidMeshError, match="NaN or infinite"):
        read_mesh(OBJ_CUBE.replace(b"v 0 10 10\n", f"v 0 {bad} 10\n".encode()))


def test_absurdly_far_coordinates_are_refused():
    vertices = CUBE_VERTICES * 1e10
    with pytest.raises(InvalidMeshError, match="beyond"):
        read_mesh(binary_stl(vertices, CUBE_FACES))


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (photo_bytes("coffee"), "PNG"),
        (encode(photo("astronaut"), "JPEG"), "JPEG"),
        (b"hello, I am not a mesh\n", "text"),
        (b"<html><body>not a mesh</body></html>", "text"),
        (json.dumps({"job_id": "x"}).encode(), "text"),
        (export_mesh(textured_cube(), "obj"), "ZIP"),
        (np.random.default_rng(7).bytes(1000), "not a mesh"),
        (b"\x00\x01\x02", "not a mesh"),
    ],
)
def test_non_mesh_bytes_are_unsupported_media(data, what):
    with pytest.raises(UnsupportedMediaTypeError, match=what):
        read_mesh(data)
    assert UnsupportedMediaTypeError.status_code == 415


def test_empty_and_faceless_files_are_invalid():
    with pytest.raises(InvalidMeshError, match="empty"):
        read_mesh(b"")
    with pytest.raises(InvalidMeshError, match="no triangles"):
        read_mesh(b"v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(InvalidMeshError, match="no triangles"):
        read_mesh(binary_stl(CUBE_VERTICES, CUBE_FACES[:0]))


def test_a_file_over_the_size_limit_is_413():
    with pytest.raises(PayloadTooLargeError):
        read_mesh(binary_stl(*cube()), MeshLimits(max_upload_bytes=500))


def test_obj_faces_out_of_range_or_malformed_are_invalid():
    with pytest.raises(InvalidMeshError, match="refers to vertex 99"):
        read_mesh(OBJ_CUBE + b"f 1 2 99\n")
    with pytest.raises(InvalidMeshError, match="not an index"):
        read_mesh(OBJ_CUBE + b"f 1 2 x\n")
    with pytest.raises(InvalidMeshError, match="fewer than three"):
        read_mesh(OBJ_CUBE + b"f 1 2\n")


def test_ascii_stl_facet_without_three_vertices_is_invalid():
    data = ascii_stl(*cube()).replace(b"endloop", b"vertex 1 2 3\nendloop", 1)
    with pytest.raises(InvalidMeshError, match="exactly three"):
        read_mesh(data)


def test_ply_header_claiming_a_billion_vertices_is_refused_before_allocating():
    data = ply_cube(binary=True).replace(b"element vertex 8", b"element vertex 1000000000")
    assert peak_bytes(lambda: read_mesh(data)) < 1_000_000
    with pytest.raises(MeshTooLargeError, match="1000000000 vertices"):
        read_mesh(data)


def test_ply_header_claiming_more_records_than_the_body_holds_is_invalid():
    data = ply_cube(binary=True).replace(b"element vertex 8", b"element vertex 5000")
    with pytest.raises(InvalidMeshError, match="body holds"):
        read_mesh(data)
    data = ply_cube(binary=False).replace(b"element face 12", b"element face 5000")
    with pytest.raises(InvalidMeshError, match="fewer lines"):
        read_mesh(data)
    with pytest.raises(InvalidMeshError, match="end_header"):
        read_mesh(b"ply\nformat ascii 1.0\n" + b"comment x\n" * 10)


def glb_with(edit) -> bytes:
    """The textured cube's GLB with its JSON chunk edited by ``edit(gltf)``."""
    data = export_mesh(textured_cube(), "glb")
    length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20 : 20 + length])
    edit(gltf)
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + length :]
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_glb_accessor_claiming_a_trillion_elements_is_413():
    def edit(gltf):
        gltf["accessors"][0]["count"] = 10**12

    with pytest.raises(MeshTooLargeError):
        read_mesh(glb_with(edit))


def test_glb_accessor_past_its_buffer_is_invalid():
    def edit(gltf):
        gltf["bufferViews"][0]["byteLength"] = 10**9

    with pytest.raises(InvalidMeshError, match="past the binary chunk"):
        read_mesh(glb_with(edit))


def test_glb_scene_graph_that_places_one_mesh_many_times_is_bounded():
    def edit(gltf):
        nodes = gltf["nodes"]
        nodes.extend({"mesh": 0} for _ in range(5000))

    with pytest.raises(MeshTooLargeError, match="places 60012 triangles"):
        read_mesh(glb_with(edit), MeshLimits(max_faces=50_000))

    def shared(gltf):
        gltf["nodes"] = [{"children": [2]}, {"children": [2]}, {"mesh": 0}]

    with pytest.raises(InvalidMeshError, match="two parents"):
        read_mesh(glb_with(shared))


def test_glb_with_draco_compression_is_unsupported():
    def edit(gltf):
        gltf["extensionsRequired"] = ["KHR_draco_mesh_compression"]

    with pytest.raises(UnsupportedMediaTypeError, match="draco"):
        read_mesh(glb_with(edit))
