"""3MF and USDZ of a real photo's model, read back by lib3mf, ElementTree and USD's validators."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from xml.etree import ElementTree

import lib3mf
import numpy as np
import pytest
import trimesh
from PIL import Image

from serve_app.pipeline.appearance import srgb_to_linear
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.export import export_mesh
from serve_app.pipeline.runner import Pipeline
from serve_app.pipeline.types import TexturedMesh
from tests.formats import (
    base_materials,
    colour_group_sizes,
    lib3mf_model,
    only_mesh,
    open_usdz,
    usd_errors,
)
from tests.meshes import cube
from tests.support import models_dir, photo_bytes

CORE = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"
MATERIAL = "{http://schemas.microsoft.com/3dmanufacturing/material/2015/02}"
RED = (0xC0, 0x39, 0x2B)


@pytest.fixture(scope="module")
def astronaut() -> TexturedMesh:
    pipeline = Pipeline.from_config(PipelineConfig(models_dir=models_dir()))
    return pipeline.run(photo_bytes("astronaut")).mesh


@pytest.fixture(scope="module")
def painted(astronaut) -> TexturedMesh:
    """The model with a plain colour in place of its texture, as apply-material makes it."""
    texture = np.array([[RED]], dtype=np.uint8)
    return dataclasses.replace(astronaut, texture=texture, base_color=RED, material="custom")


def distinct_positions(vertices: np.ndarray) -> np.ndarray:
    """The model's positions once each, in the order they first appear (the copies of a
    vertex split along a UV seam are one position, as 3MF welds them): (k, 3) float64."""
    _, first = np.unique(np.asarray(vertices, dtype=np.float32), axis=0, return_index=True)
    return np.asarray(vertices, dtype=np.float64)[np.sort(first)]


def test_3mf_reads_back_in_lib3mf_in_millimetres_z_up_with_its_colours(astronaut, tmp_path):
    model = lib3mf_model(export_mesh(astronaut, "3mf"), tmp_path)
    assert model.GetUnit() == lib3mf.ModelUnit.MilliMeter
    mesh = only_mesh(model)
    assert mesh.IsValid()
    canonical = distinct_positions(astronaut.vertices)
    assert mesh.GetVertexCount() == len(canonical)
    assert mesh.GetTriangleCount() == len(astronaut.faces)
    points = np.array([v.Coordinates[:] for v in mesh.GetVertices()])
    # Y up (canonical) → Z up (the build plate), standing on it; millimetres unchanged.
    extents = np.ptp(canonical, axis=0)
    np.testing.assert_allclose(np.ptp(points, axis=0), extents[[0, 2, 1]], atol=1e-3)
    assert points[:, 2].min() == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(points[:, 0], canonical[:, 0], atol=1e-3)
    # The base material is the texture's mean colour; each vertex carries its own colour.
    ((name, colour),) = base_materials(model)
    mean = astronaut.texture.reshape(-1, 3).mean(axis=0)
    assert name == "base"
    np.testing.assert_allclose(colour, mean, atol=1)
    assert colour_group_sizes(model) == [len(astronaut.vertices)]


def test_3mf_of_a_plain_colour_is_that_colour_and_no_colour_group(painted, tmp_path):
    model = lib3mf_model(export_mesh(painted, "3mf"), tmp_path)
    assert base_materials(model) == [("custom", RED)]
    assert colour_group_sizes(model) == []
    assert only_mesh(model).GetTriangleCount() == len(painted.faces)


def test_3mf_welds_a_seam_and_drops_degenerate_triangles_keeping_corner_colours(tmp_path):
    """A cube whose first corner is stored twice (a texture seam), one triangle using the
    copy, and a degenerate triangle: 3MF gets 8 vertices, 12 triangles, a closed solid."""
    vertices, faces = cube()
    seam = np.vstack([vertices, vertices[:1]])  # vertex 8 is a copy of vertex 0
    faces = faces.copy()
    faces[0, 0] = 8
    faces = np.vstack([faces, [[0, 8, 1]]])  # 0 and 8 are one point: no triangle
    uv = np.zeros((9, 2), np.float32)
    uv[8] = (1.0, 1.0)  # the copy samples the texture's other corner
    texture = np.zeros((2, 2, 3), np.uint8)
    texture[0, 1] = (255, 0, 0)  # top right: what uv (1, 1) reads
    mesh = TexturedMesh(seam.astype(np.float32), faces, uv, texture)
    model = lib3mf_model(export_mesh(mesh, "3mf"), tmp_path)
    printed = only_mesh(model)
    assert (printed.GetVertexCount(), printed.GetTriangleCount()) == (8, 12)
    points = np.array([v.Coordinates[:] for v in printed.GetVertices()])
    triangles = np.array([t.Indices[:] for t in printed.GetTriangleIndices()])
    tm = trimesh.Trimesh(points, triangles, process=False)
    assert tm.is_watertight and tm.volume == pytest.approx(1000.0)
    # The corner that used the copy keeps the copy's colour (index 9 = vertex 8, 1-based).
    assert list(printed.GetTriangleProperties(0).PropertyIDs) == [9, 2, 4]


def test_3mf_package_parts_read_with_the_standard_library(astronaut):
    """An OPC package any zip and XML reader opens: content types, the start part's
    relationship, and a model whose triangles enclose a positive volume (wound outwards)."""
    with zipfile.ZipFile(io.BytesIO(export_mesh(astronaut, "3mf"))) as z:
        assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= set(z.namelist())
        rels = ElementTree.fromstring(z.read("_rels/.rels"))
        targets = [r.get("Target") for r in rels]
        root = ElementTree.fromstring(z.read("3D/3dmodel.model"))
    assert targets == ["/3D/3dmodel.model"]
    assert root.tag == f"{CORE}model" and root.get("unit") == "millimeter"
    vertices = np.array([[float(v.get(a)) for a in "xyz"] for v in root.iter(f"{CORE}vertex")])
    faces = np.array(
        [[int(t.get(f"v{i}")) for i in (1, 2, 3)] for t in root.iter(f"{CORE}triangle")]
    )
    tm = trimesh.Trimesh(vertices, faces, process=False)
    tm.merge_vertices()
    assert tm.is_watertight and tm.volume > 0
    colours = [c.get("color") for c in root.iter(f"{MATERIAL}color")]
    assert len(vertices) == len(distinct_positions(astronaut.vertices))
    # a colour per canonical vertex: the copies of a position split along a UV seam each
    assert len(colours) == len(astronaut.vertices) and all(len(c) == 7 for c in colours)
    (item,) = root.iter(f"{CORE}item")
    assert item.get("objectid") == "3"


def test_usd_validators_find_errors_in_a_stage_without_metadata(tmp_path):
    """The checker is live: a bare stage fails on its missing default prim, unit and up axis."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateNew(str(tmp_path / "bare.usda"))
    UsdGeom.Mesh.Define(stage, "/Mesh")
    names = {e.split(":")[0] for e in usd_errors(stage)}
    assert {"MissingDefaultPrim", "MissingMetersPerUnitMetadata", "MissingUpAxisMetadata"} <= names


def test_usdz_passes_usd_validators_with_its_texture_as_a_preview_surface(astronaut, tmp_path):
    from pxr import UsdGeom, UsdShade

    data = export_mesh(astronaut, "usdz")
    stage = open_usdz(data, tmp_path)
    assert usd_errors(stage) == []
    assert UsdGeom.GetStageMetersPerUnit(stage) == pytest.approx(0.001)
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    mesh = UsdGeom.Mesh(stage.GetDefaultPrim().GetChild("Mesh"))
    np.testing.assert_allclose(np.array(mesh.GetPointsAttr().Get()), astronaut.vertices, atol=1e-4)
    indices = np.array(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
    np.testing.assert_array_equal(indices, astronaut.faces)
    st = UsdGeom.PrimvarsAPI(mesh.GetPrim()).GetPrimvar("st")
    np.testing.assert_allclose(np.array(st.Get()), astronaut.uv, atol=1e-6)

    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
    assert surface.GetInput("roughness").Get() == pytest.approx(astronaut.roughness)
    (source,), _ = surface.GetInput("diffuseColor").GetConnectedSources()
    texture = UsdShade.Shader(source.source.GetPrim())
    assert texture.GetIdAttr().Get() == "UsdUVTexture"
    assert texture.GetInput("sourceColorSpace").Get() == "sRGB"
    file = texture.GetInput("file").Get().path
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        first, *rest = z.namelist()
        assert first.endswith(".usdc") and file in rest  # the layer first, then its texture
        image = np.asarray(Image.open(io.BytesIO(z.read(file))).convert("RGB"))
    np.testing.assert_array_equal(image, astronaut.texture)


def test_usdz_of_a_plain_colour_sets_the_linear_diffuse_colour(painted, tmp_path):
    from pxr import UsdGeom, UsdShade

    stage = open_usdz(export_mesh(painted, "usdz"), tmp_path)
    assert usd_errors(stage) == []
    mesh = stage.GetDefaultPrim().GetChild("Mesh")
    assert not UsdGeom.PrimvarsAPI(mesh).HasPrimvar("st")
    material, _ = UsdShade.MaterialBindingAPI(mesh).ComputeBoundMaterial()
    assert material.GetPrim().GetName() == "custom"
    surface = material.ComputeSurfaceSource()[0]
    np.testing.assert_allclose(
        surface.GetInput("diffuseColor").Get(), srgb_to_linear(RED), rtol=1e-6
    )
