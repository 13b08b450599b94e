"""Decimation: the face target is met, a closed model stays closed, UVs and texture survive."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serve_app.errors import ValidationFailedError
from serve_app.meshtools.analyze import analyze_mesh
from serve_app.meshtools.optimize import optimize
from serve_app.pipeline.types import TexturedMesh
from tests.meshes import open_cube, pipeline_mesh


def planar_uv_map(mesh: TexturedMesh) -> np.ndarray:
    """The affine map (x, y, 1) → (u, v) of the pipeline's planar texture projection,
    fitted on the vertices whose UVs were not clipped at the image's edge: (3, 2)."""
    inside = ((mesh.uv > 1e-4) & (mesh.uv < 1 - 1e-4)).all(axis=1)
    xy1 = np.column_stack([mesh.vertices[inside, :2], np.ones(inside.sum())]).astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(xy1, mesh.uv[inside].astype(np.float64), rcond=None)
    return coefficients


@pytest.mark.parametrize("target", [5000, 1000, 100])
def test_decimation_meets_the_target_and_keeps_the_model_closed(target):
    mesh = pipeline_mesh()
    assert len(mesh.faces) > 5000
    before = analyze_mesh(mesh.vertices, mesh.faces, "canonical")
    out = optimize(mesh, target)
    assert target * 0.95 <= len(out.faces) <= target
    after = analyze_mesh(out.vertices, out.faces, "canonical")
    assert after.watertight and after.winding_consistent and after.printable, after.issues
    assert after.components == 1
    assert after.volume_mm3 == pytest.approx(before.volume_mm3, rel=0.1)
    for axis in "xyz":
        assert getattr(after.bounding_box_mm, axis) == pytest.approx(
            getattr(before.bounding_box_mm, axis), rel=0.1
        )


def planar_textured(mesh: TexturedMesh) -> TexturedMesh:
    """The model with UVs projected along Z onto its X/Y box (one UV per position, as the
    pipeline's planar texture had), so where each UV should be is known."""
    xy = mesh.vertices[:, :2].astype(np.float64)
    uv = (xy - xy.min(axis=0)) / (xy.max(axis=0) - xy.min(axis=0))
    return dataclasses.replace(mesh, uv=uv.astype(np.float32))


def texture_at(mesh: TexturedMesh, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The texture's colour (nearest texel) at surface points of given faces: (k, 3)."""
    import trimesh

    corners = mesh.vertices[mesh.faces[faces]].astype(np.float64)
    bary = trimesh.triangles.points_to_barycentric(corners, points)
    uv = np.einsum("kj,kjd->kd", bary, mesh.uv[mesh.faces[faces]].astype(np.float64))
    return uv_colours(mesh, uv)


def uv_colours(mesh: TexturedMesh, uv: np.ndarray) -> np.ndarray:
    h, w = mesh.texture.shape[:2]
    cols = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    rows = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return mesh.texture[rows, cols].astype(np.float64)


@pytest.mark.parametrize("target", [2000, 200])
def test_uvs_follow_the_texture_projection_and_the_texture_is_kept(target):
    mesh = planar_textured(pipeline_mesh())
    projection = planar_uv_map(mesh)
    out = optimize(mesh, target)
    assert out.uv.shape == (len(out.vertices), 2) and out.uv.dtype == np.float32
    assert np.array_equal(out.texture, mesh.texture)
    assert (out.roughness, out.metallic) == (mesh.roughness, mesh.metallic)
    # every kept vertex samples the texture where the projection puts it
    xy1 = np.column_stack([out.vertices[:, :2], np.ones(len(out.vertices))])
    expected = np.clip(xy1 @ projection, 0.0, 1.0)
    error = np.abs(out.uv - expected).max(axis=1)
    assert np.median(error) < 5e-3 and error.max() < 0.03  # texels of a 400-px texture


def test_a_baked_model_keeps_its_colours_across_its_uv_seams():
    import trimesh
    from scipy.spatial import cKDTree

    mesh = pipeline_mesh()  # its vertices are split along the atlas's seams
    out = optimize(mesh, 2000)
    assert analyze_mesh(out.vertices, out.faces, "canonical").watertight
    # the colour at each face's centre is the colour of the old surface nearest to it
    centres = out.vertices[out.faces].astype(np.float64).mean(axis=1)
    old = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    points, faces = trimesh.sample.sample_surface(old, 200_000, seed=5)
    _, nearest = cKDTree(points).query(centres)
    expected = texture_at(mesh, faces[nearest], points[nearest])
    corner_uv = out.uv[out.faces].astype(np.float64).mean(axis=1)
    error = np.abs(uv_colours(out, corner_uv) - expected).max(axis=1)
    assert np.median(error) < 12 and (error < 40).mean() > 0.9


def test_a_model_under_the_target_is_unchanged():
    mesh = pipeline_mesh()
    out = optimize(mesh, len(mesh.faces) + 10, repair=False)
    assert np.array_equal(out.faces, mesh.faces)
    assert np.array_equal(out.vertices, mesh.vertices)


def test_repair_closes_a_hole():
    vertices, faces = open_cube()
    mesh = TexturedMesh(
        vertices=vertices.astype(np.float32),
        faces=faces,
        uv=(vertices[:, :2] / 10).astype(np.float32),
        texture=np.full((4, 4, 3), 128, np.uint8),
    )
    out = optimize(mesh, 100, repair=True)
    a = analyze_mesh(out.vertices, out.faces, "stl")
    assert a.watertight and a.printable
    assert a.volume_mm3 == pytest.approx(1000.0)
    kept = optimize(mesh, 100, repair=False)
    assert not analyze_mesh(kept.vertices, kept.faces, "stl").watertight


def test_repair_turns_an_inside_out_model_outwards():
    mesh = pipeline_mesh()
    inverted = TexturedMesh(
        vertices=mesh.vertices, faces=mesh.faces[:, ::-1].copy(), uv=mesh.uv, texture=mesh.texture
    )
    assert not analyze_mesh(inverted.vertices, inverted.faces, "x").printable
    out = optimize(inverted, 1000)
    assert analyze_mesh(out.vertices, out.faces, "x").printable


@pytest.mark.parametrize("target", [0, 99, 1_000_001])
def test_face_targets_out_of_range_are_422(target):
    with pytest.raises(ValidationFailedError) as caught:
        optimize(pipeline_mesh(), target)
    assert caught.value.status_code == 422
