"""Texturing an uploaded mesh: its file read and coloured with its geometry kept, and the
``POST /api/texture-mesh`` checks, in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from serve_app.contracts.params import GenerationParams
from serve_app.meshtools.readers import MM_PER_METRE
from serve_app.pipeline.types import CutOut
from serve_app.work.given_mesh import read_given_mesh, texture_given_mesh
from tests.meshes import binary_stl
from tests.support import ellipse_cutout, encode, photo
from tests.unit.inprocess import InProcessService, app_config, in_process_service


def sphere() -> trimesh.Trimesh:
    """A 30 mm sphere away from the origin: its place and size must be kept."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=15.0)
    mesh.apply_translation([5.0, 40.0, -3.0])
    return mesh


def two_colour_cutout() -> CutOut:
    """An ellipse, red on its left half (the subject's +X is the photo's right), blue on
    its right half."""
    rgba = ellipse_cutout(200, 200)
    rgba[:, :100, :3] = (220, 30, 30)
    rgba[:, 100:, :3] = (30, 30, 220)
    return CutOut(rgba=rgba, mask=rgba[..., 3] > 127, source="alpha")


def test_a_binary_stl_is_read_with_its_vertices_merged_in_its_own_numbers() -> None:
    ball = sphere()
    mesh = read_given_mesh(binary_stl(ball.vertices, ball.faces))
    assert len(mesh.vertices) == len(ball.vertices) and len(mesh.faces) == len(ball.faces)
    assert np.allclose(mesh.vertices.min(axis=0), ball.bounds[0], atol=1e-4)
    assert np.allclose(mesh.vertices.max(axis=0), ball.bounds[1], atol=1e-4)


def test_a_glb_is_read_in_millimetres() -> None:
    ball = sphere()
    metres = ball.copy()
    metres.apply_scale(1 / MM_PER_METRE)
    mesh = read_given_mesh(metres.export(file_type="glb"))
    assert np.allclose(mesh.vertices.max(axis=0), ball.bounds[1], atol=1e-3)


def test_the_textured_mesh_keeps_the_geometry_and_takes_the_photo_s_colours() -> None:
    ball = sphere()
    mesh = read_given_mesh(binary_stl(ball.vertices, ball.faces))
    views = {"front": two_colour_cutout()}
    textured = texture_given_mesh(mesh, views, GenerationParams(quality=2))
    # the same faces in the same order at the same places (vertices split along UV seams)
    assert textured.faces.shape == mesh.faces.shape
    assert np.allclose(textured.vertices[textured.faces], mesh.vertices[mesh.faces], atol=1e-3)
    # A vertex on the subject's left (-X) is red in the texture, one on its right blue.
    h, w = textured.texture.shape[:2]

    def colour(i: int) -> np.ndarray:
        here = np.all(np.isclose(textured.vertices, mesh.vertices[i], atol=1e-3), axis=1)
        u, v = textured.uv[int(np.flatnonzero(here)[0])]
        return textured.texture[int((1 - v) * (h - 1)), int(u * (w - 1))].astype(int)

    front = mesh.vertices[:, 2] > -3.0
    left = int(np.flatnonzero(front & (mesh.vertices[:, 0] < 5.0 - 8))[0])
    right = int(np.flatnonzero(front & (mesh.vertices[:, 0] > 5.0 + 8))[0])
    assert colour(left)[0] > 150 and colour(left)[2] < 80
    assert colour(right)[2] > 150 and colour(right)[0] < 80


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path)) as service:
        yield service


def small(name: str) -> bytes:
    return encode(photo(name)[:96, :128])


def stl() -> bytes:
    ball = sphere()
    return binary_stl(ball.vertices, ball.faces)


def post(service: InProcessService, fields: list[tuple[str, Any]], params: Any = None) -> Any:
    files = [(name, (name, data, "application/octet-stream")) for name, data in fields]
    data = {} if params is None else {"params": json.dumps(params)}
    return service.http.post("/api/texture-mesh", files=files, data=data)


@pytest.mark.parametrize(
    ("fields", "params", "status", "named"),
    [
        ([("front", "chelsea")], None, 422, "mesh"),
        ([("mesh", b"solid nothing here at all"), ("front", "chelsea")], None, 400, "mesh"),
        ([("mesh", b"\x00" * 10), ("front", "chelsea")], None, 415, "mesh"),
        ([("mesh", "stl")], None, 422, "at least one photo"),
        ([("mesh", "stl"), ("side", "chelsea")], None, 422, "side"),
        ([("mesh", "stl"), ("left", b"not an image")], None, 415, "left"),
        ([("mesh", "stl"), ("front", "chelsea"), ("front", "coffee")], None, 422, "front"),
        ([("mesh", "stl"), ("front", "chelsea")], {"quality": 11}, 422, "quality"),
        ([("mesh", "stl"), ("front", "chelsea")], {"generator": "x"}, 422, "generator"),
    ],
)
def test_a_bad_texture_mesh_request_is_refused_naming_what_is_wrong(
    service: InProcessService,
    fields: list[tuple[str, Any]],
    params: Any,
    status: int,
    named: str,
) -> None:
    def content(value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        return stl() if value == "stl" else small(value)

    answer = post(service, [(name, content(v)) for name, v in fields], params)
    assert answer.status_code == status, answer.text
    assert named in json.dumps(answer.json()["error"])
    assert service.http.get("/api/jobs").json()["total"] == 0


def test_a_texture_mesh_job_is_queued_with_its_views(service: InProcessService) -> None:
    answer = post(service, [("mesh", stl()), ("left", small("coffee")), ("back", small("rocket"))])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["generator"] == "given_mesh"
    assert [v["view"] for v in body["views"]] == ["left", "back"]
    assert body["status"] in ("queued", "running", "failed")  # no workers in-process
