"""Meshes with known answers for the mesh-tool tests: cubes, and a model from the real pipeline."""

from __future__ import annotations

import struct
from functools import cache

import numpy as np

from serve_app.pipeline.types import TexturedMesh

#: A 10 mm cube's corners (mm) and its 12 triangles, wound outwards.
CUBE_VERTICES = np.array(
    [[x, y, z] for x in (0.0, 10.0) for y in (0.0, 10.0) for z in (0.0, 10.0)], dtype=np.float64
)
CUBE_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # x = 0
        [4, 6, 7], [4, 7, 5],  # x = 10
        [0, 4, 5], [0, 5, 1],  # y = 0
        [2, 3, 7], [2, 7, 6],  # y = 10
        [0, 2, 6], [0, 6, 4],  # z = 0
        [1, 5, 7], [1, 7, 3],  # z = 10
    ],
    dtype=np.int64,
)  # fmt: skip


def cube(offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """The 10 mm cube, moved by ``offset``: vertices (8, 3) float64, faces (12, 3) int64."""
    return CUBE_VERTICES + np.asarray(offset), CUBE_FACES.copy()


def open_cube() -> tuple[np.ndarray, np.ndarray]:
    """The cube without its top (z = 10) face: two triangles gone, a square hole."""
    return CUBE_VERTICES.copy(), CUBE_FACES[:10].copy()


def two_cubes() -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint cubes, 20 mm apart along X."""
    v1, f1 = cube()
    v2, f2 = cube((20.0, 0.0, 0.0))
    return np.vstack([v1, v2]), np.vstack([f1, f2 + len(v1)])


def binary_stl(vertices: np.ndarray, faces: np.ndarray, header: bytes = b"cube") -> bytes:
    """A binary STL written here (not by the code under test): header, count, records."""
    tri = vertices[faces].astype("<f4")
    with np.errstate(all="ignore"):  # hostile files carry NaN, infinities, huge values
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).astype(np.float64)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    out = [header.ljust(80, b" ")[:80], struct.pack("<I", len(faces))]
    for n, t in zip(normals.astype("<f4"), tri, strict=True):
        out.append(n.tobytes() + t.tobytes() + b"\0\0")
    return b"".join(out)


def ascii_stl(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    lines = ["solid cube"]
    for face in faces:
        lines += ["  facet normal 0 0 0", "    outer loop"]
        lines += [f"      vertex {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices[face]]
        lines += ["    endloop", "  endfacet"]
    lines.append("endsolid cube")
    return ("\n".join(lines) + "\n").encode()


def textured_cube() -> TexturedMesh:
    """The cube as a canonical mesh: UVs from X and Y, a two-colour texture."""
    vertices, faces = cube()
    texture = np.zeros((8, 8, 3), np.uint8)
    texture[:, :4] = (200, 40, 40)
    texture[:, 4:] = (40, 40, 200)
    return TexturedMesh(
        vertices=vertices.astype(np.float32),
        faces=faces,
        uv=(vertices[:, :2] / 10.0).astype(np.float32),
        texture=texture,
    )


@cache
def pipeline_mesh(photo: str = "coffee", quality: int = 3) -> TexturedMesh:
    """A job's canonical mesh: the real pipeline (background removal, the inflate
    generator, texturing) on a scikit-image photo; built once per test process."""
    from serve_app.contracts.params import GenerationParams
    from serve_app.pipeline.config import PipelineConfig
    from serve_app.pipeline.runner import Pipeline
    from tests.support import models_dir, photo_bytes

    pipeline = Pipeline.from_config(PipelineConfig(models_dir=models_dir(), device="cpu"))
    result = pipeline.run(photo_bytes(photo), GenerationParams(quality=quality), "stl")
    return result.mesh
