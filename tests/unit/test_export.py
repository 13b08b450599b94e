"""Export: real photos through the whole pipeline into GLB, OBJ, STL and PLY files."""

import io
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image

from serve_app.contracts.params import Dimensions, GenerationParams
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.export import export_mesh
from serve_app.pipeline.runner import Pipeline
from serve_app.pipeline.scale import DEFAULT_LONGEST_MM
from serve_app.pipeline.types import TexturedMesh
from tests.gltf_validator import validate_glb
from tests.support import ellipse_cutout, encode, models_dir, photo_bytes


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_config(PipelineConfig(models_dir=models_dir()))


@pytest.fixture(scope="module")
def astronaut(pipeline) -> TexturedMesh:
    return pipeline.run(photo_bytes("astronaut")).mesh


def merged(tm: trimesh.Trimesh) -> trimesh.Trimesh:
    tm = trimesh.Trimesh(tm.vertices, tm.faces, process=False)
    tm.merge_vertices()
    return tm


def assert_solid(tm: trimesh.Trimesh) -> None:
    m = merged(tm)
    assert m.is_watertight
    assert m.is_winding_consistent
    assert m.volume > 0


def test_glb_is_valid_textured_and_watertight(astronaut):
    data = export_mesh(astronaut, "glb")
    report = validate_glb(data)
    assert report["numErrors"] == 0, report["messages"]
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    (tm,) = scene.geometry.values()
    assert tm.visual.uv.shape == (len(tm.vertices), 2)
    material = tm.visual.material
    texture = np.asarray(material.baseColorTexture.convert("RGB"))
    assert texture.shape[0] >= 256 and texture.std() > 10  # a real picture, not a flat colour
    assert material.metallicFactor == 0
    assert 0.3 <= material.roughnessFactor <= 1.0
    assert_solid(tm)
    # glTF is in metres: the default 100 mm longest side is 0.1 m
    assert tm.extents.max() == pytest.approx(DEFAULT_LONGEST_MM / 1000, rel=0.01)


def test_back_shows_the_photo_not_black(astronaut):
    glb = trimesh.load(io.BytesIO(export_mesh(astronaut, "glb")), file_type="glb")
    (tm,) = glb.geometry.values()
    colours = tm.visual.to_color().vertex_colors[:, :3].astype(float)
    back = tm.vertex_normals[:, 2] < -0.5
    front = tm.vertex_normals[:, 2] > 0.5
    assert back.sum() > 100 and front.sum() > 100
    # the back mirrors the front: same colours, no more black than the photo itself has
    assert colours[back].mean() == pytest.approx(colours[front].mean(), rel=0.15)
    dark = colours.sum(axis=1) < 15
    assert dark[back].mean() <= dark[front].mean() + 0.03


def test_obj_zip_has_obj_mtl_and_png(astronaut):
    with zipfile.ZipFile(io.BytesIO(export_mesh(astronaut, "obj"))) as z:
        names = set(z.namelist())
        assert {"model.obj", "model.mtl"} <= names
        pngs = [n for n in names if n.endswith(".png")]
        assert len(pngs) == 1
        assert Image.open(io.BytesIO(z.read(pngs[0]))).size[0] >= 256
        assert pngs[0] in z.read("model.mtl").decode()
        tm = trimesh.load(
            io.BytesIO(z.read("model.obj")),
            file_type="obj",
            resolver=trimesh.resolvers.ZipResolver(z),
            process=False,
        )
    assert tm.visual.uv is not None
    assert_solid(tm)


def test_stl_is_binary_and_watertight(astronaut):
    data = export_mesh(astronaut, "stl")
    n = int.from_bytes(data[80:84], "little")
    assert len(data) == 84 + 50 * n == 84 + 50 * len(astronaut.faces)
    assert_solid(trimesh.load(io.BytesIO(data), file_type="stl"))


def test_ply_carries_photo_colours(astronaut):
    tm = trimesh.load(io.BytesIO(export_mesh(astronaut, "ply")), file_type="ply", process=False)
    colours = tm.visual.vertex_colors[:, :3]
    assert len(np.unique(colours, axis=0)) > 100
    assert colours.mean() > 40
    assert_solid(tm)


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        (Dimensions(width=50), {0: 50}),
        (Dimensions(height=120), {1: 120}),
        (Dimensions(width=80, height=60, depth=20), {0: 80, 1: 60, 2: 20}),
    ],
)
def test_bounding_box_matches_requested_dimensions(pipeline, dims, expected):
    image = encode(ellipse_cutout())
    result = pipeline.run(image, GenerationParams(dimensions=dims), "stl")
    extents = trimesh.load(io.BytesIO(result.data), file_type="stl").extents
    for axis, size in expected.items():
        assert extents[axis] == pytest.approx(size, rel=0.01)
    if len(expected) == 1:  # the other axes keep the model's aspect ratio
        ((axis, size),) = expected.items()
        natural = pipeline.run(image, GenerationParams(), "stl").mesh.vertices
        natural_extents = natural.max(axis=0) - natural.min(axis=0)
        ratio = size / natural_extents[axis]
        assert extents == pytest.approx(natural_extents * ratio, rel=0.01)


def test_canonical_mesh_round_trips_through_bytes(astronaut):
    again = TexturedMesh.from_bytes(astronaut.to_bytes())
    assert np.array_equal(again.faces, astronaut.faces)
    assert np.array_equal(again.texture, astronaut.texture)
    assert export_mesh(again, "stl") == export_mesh(astronaut, "stl")
