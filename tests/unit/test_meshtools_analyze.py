"""Printability analysis on meshes with known answers, in every format."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from serve_app.meshtools.analyze import analyze_file, analyze_mesh, is_closed
from serve_app.pipeline.export import export_mesh
from tests.meshes import (
    ascii_stl,
    binary_stl,
    cube,
    open_cube,
    pipeline_mesh,
    textured_cube,
    two_cubes,
)


def test_ten_millimetre_cube():
    a = analyze_file(binary_stl(*cube()))
    assert a.format == "stl"
    assert a.triangles == 12 and a.vertices == 8
    assert a.bounding_box_mm.model_dump() == pytest.approx({"x": 10.0, "y": 10.0, "z": 10.0})
    assert a.volume_mm3 == pytest.approx(1000.0)
    assert a.surface_area_mm2 == pytest.approx(600.0)
    assert a.watertight and a.winding_consistent
    assert (a.boundary_edges, a.non_manifold_edges, a.degenerate_faces) == (0, 0, 0)
    assert a.components == 1
    assert a.printable and a.issues == []


def test_cube_without_a_face_is_open_and_not_printable():
    a = analyze_file(binary_stl(*open_cube()))
    assert not a.watertight
    assert a.boundary_edges == 4
    assert a.volume_mm3 is None
    assert a.surface_area_mm2 == pytest.approx(500.0)
    assert not a.printable
    assert [i.code for i in a.issues] == ["open_surface"]


def test_two_disjoint_cubes_are_two_components():
    a = analyze_file(binary_stl(*two_cubes()))
    assert a.components == 2
    assert a.volume_mm3 == pytest.approx(2000.0)
    assert a.bounding_box_mm.x == pytest.approx(30.0)
    assert a.printable


def test_a_cube_wound_inwards_is_inverted():
    vertices, faces = cube()
    a = analyze_mesh(vertices, faces[:, ::-1], "stl")
    assert a.watertight and a.winding_consistent
    assert not a.printable
    assert [i.code for i in a.issues] == ["inverted"]


def test_a_cavity_wound_inwards_inside_a_cube_is_printable():
    outer_v, outer_f = cube()
    inner_v = (outer_v - 5.0) * 0.5 + 5.0  # a 5 mm cube in the middle
    vertices = np.vstack([outer_v, inner_v])
    faces = np.vstack([outer_f, outer_f[:, ::-1] + 8])
    a = analyze_mesh(vertices, faces, "stl")
    assert a.components == 2
    assert a.volume_mm3 == pytest.approx(1000.0 - 125.0)
    assert a.printable, a.issues


def test_one_flipped_face_is_inconsistent_winding():
    vertices, faces = cube()
    faces[0] = faces[0][::-1]
    a = analyze_mesh(vertices, faces, "stl")
    assert a.watertight and not a.winding_consistent
    assert not a.printable
    assert "inconsistent_winding" in [i.code for i in a.issues]


def test_a_third_face_on_an_edge_is_non_manifold():
    vertices, faces = cube()
    vertices = np.vstack([vertices, [[-5.0, -5.0, 5.0]]])
    faces = np.vstack([faces, [[0, 1, 8]]])
    a = analyze_mesh(vertices, faces, "stl")
    assert a.non_manifold_edges == 1
    assert not a.watertight and not a.printable
    assert "non_manifold_edges" in [i.code for i in a.issues]


def test_degenerate_faces_are_counted():
    vertices, faces = cube()
    faces = np.vstack([faces, [[0, 0, 1]], [[0, 1, 1]]])
    a = analyze_mesh(vertices, faces, "stl")
    assert a.degenerate_faces == 2
    assert a.watertight  # faces that repeat a corner make no edges


@pytest.mark.parametrize("fmt", ["binary stl", "ascii stl", "glb", "ply", "obj"])
def test_the_same_cube_in_every_format_gives_the_same_answer(fmt):
    mesh = textured_cube()
    data = {
        "binary stl": lambda: binary_stl(*cube()),
        "ascii stl": lambda: ascii_stl(*cube()),
        "glb": lambda: export_mesh(mesh, "glb"),  # metres in the file, mm in the answer
        "ply": lambda: export_mesh(mesh, "ply"),
        "obj": lambda: zipfile.ZipFile(io.BytesIO(export_mesh(mesh, "obj"))).read("model.obj"),
    }[fmt]()
    a = analyze_file(data)
    assert a.volume_mm3 == pytest.approx(1000.0, rel=1e-5)
    assert a.surface_area_mm2 == pytest.approx(600.0, rel=1e-5)
    assert a.bounding_box_mm.x == pytest.approx(10.0, rel=1e-5)
    assert a.printable


def test_a_model_from_the_pipeline_is_printable_and_matches_its_stl():
    mesh = pipeline_mesh()
    a = analyze_mesh(mesh.vertices, mesh.faces, "canonical")
    assert a.printable, a.issues
    assert a.components == 1 and a.degenerate_faces == 0
    longest = max(a.bounding_box_mm.x, a.bounding_box_mm.y, a.bounding_box_mm.z)
    assert longest == pytest.approx(100.0, rel=1e-3)  # the default size
    assert 0 < a.volume_mm3 < a.bounding_box_mm.x * a.bounding_box_mm.y * a.bounding_box_mm.z
    from_stl = analyze_file(export_mesh(mesh, "stl"))
    assert from_stl.volume_mm3 == pytest.approx(a.volume_mm3, rel=1e-5)
    assert from_stl.surface_area_mm2 == pytest.approx(a.surface_area_mm2, rel=1e-5)
    assert from_stl.vertices == a.vertices and from_stl.triangles == a.triangles
    assert is_closed(mesh.vertices, mesh.faces)
    assert not is_closed(*open_cube())
