"""Materials: presets and custom colours reach every format; the canonical .npz stays compatible."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
import trimesh

from serve_app.contracts.meshtools import CustomMaterial
from serve_app.errors import ValidationFailedError
from serve_app.meshtools.materials import PRESETS, apply_material, resolve_material
from serve_app.pipeline.appearance import srgb_to_linear
from serve_app.pipeline.export import export_mesh
from serve_app.pipeline.types import TexturedMesh
from tests.gltf_validator import validate_glb
from tests.meshes import pipeline_mesh

RED = CustomMaterial(base_color="#C0392B", metallic=0.25, roughness=0.4)


def gltf_json(glb: bytes) -> dict:
    length = struct.unpack_from("<I", glb, 12)[0]
    return json.loads(glb[20 : 20 + length])


def mtl_terms(obj_zip: bytes) -> tuple[dict[str, list[str]], set[str]]:
    with zipfile.ZipFile(io.BytesIO(obj_zip)) as z:
        text = z.read("model.mtl").decode()
        names = set(z.namelist())
    terms = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, *values = line.split()
            terms[key] = values
    return terms, names


def test_the_presets_cover_the_common_finishes():
    assert {"matte_plastic", "glossy_plastic", "metal", "ceramic", "wood", "rubber"} <= set(PRESETS)
    assert PRESETS["metal"].metallic == 1.0
    assert PRESETS["rubber"].roughness > PRESETS["matte_plastic"].roughness
    assert PRESETS["ceramic"].roughness < PRESETS["glossy_plastic"].roughness
    assert all(p.base_color is None for p in PRESETS.values())  # presets keep the texture


def test_an_unknown_preset_is_422_and_lists_the_names():
    with pytest.raises(ValidationFailedError, match="matte_plastic") as caught:
        resolve_material("unobtainium")
    assert caught.value.status_code == 422


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_keeps_the_texture_and_sets_the_glb_factors(name):
    mesh = pipeline_mesh()
    out = apply_material(mesh, resolve_material(name))
    assert out.texture is mesh.texture and out.base_color is None
    glb = export_mesh(out, "glb")
    report = validate_glb(glb)
    assert report["numErrors"] == 0, report["messages"]
    (material,) = gltf_json(glb)["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert material["name"] == name
    assert pbr["metallicFactor"] == pytest.approx(PRESETS[name].metallic)
    assert pbr["roughnessFactor"] == pytest.approx(PRESETS[name].roughness)
    assert "baseColorTexture" in pbr
    assert pbr.get("baseColorFactor", [1, 1, 1, 1]) == pytest.approx([1, 1, 1, 1])
    assert mesh.material is None and mesh.metallic == 0.0  # the input is not changed


def test_a_custom_base_colour_replaces_the_texture_in_the_glb():
    out = apply_material(pipeline_mesh(), resolve_material(RED))
    assert out.base_color == (0xC0, 0x39, 0x2B)
    glb = export_mesh(out, "glb")
    report = validate_glb(glb)
    assert report["numErrors"] == 0, report["messages"]
    gltf = gltf_json(glb)
    (material,) = gltf["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert "baseColorTexture" not in pbr and not gltf.get("images")
    linear = srgb_to_linear((0xC0, 0x39, 0x2B))
    assert pbr["baseColorFactor"][:3] == pytest.approx(linear, abs=1 / 255)
    assert pbr["metallicFactor"] == pytest.approx(0.25)
    assert pbr["roughnessFactor"] == pytest.approx(0.4)
    assert report["info"]["totalVertexCount"] == len(out.vertices)


def test_obj_mtl_carries_the_matching_terms():
    mesh = pipeline_mesh()
    terms, names = mtl_terms(export_mesh(apply_material(mesh, resolve_material("metal")), "obj"))
    assert terms["newmtl"] == ["metal"]
    assert float(terms["Pm"][0]) == 1.0 and float(terms["Pr"][0]) == pytest.approx(0.3)
    assert [float(x) for x in terms["Kd"]] == [1.0, 1.0, 1.0]  # white under the texture
    assert float(terms["Ns"][0]) == pytest.approx(1000 * 0.7**2)
    assert terms["map_Kd"] == ["texture.png"] and "texture.png" in names

    terms, names = mtl_terms(export_mesh(apply_material(mesh, resolve_material(RED)), "obj"))
    kd = [float(x) for x in terms["Kd"]]
    assert kd == pytest.approx([0xC0 / 255, 0x39 / 255, 0x2B / 255], abs=1e-6)
    assert float(terms["Pm"][0]) == 0.25 and float(terms["Pr"][0]) == 0.4
    assert "map_Kd" not in terms and "texture.png" not in names


def test_ply_vertex_colours_take_the_base_colour_and_stl_is_unchanged():
    mesh = pipeline_mesh()
    red = apply_material(mesh, resolve_material(RED))
    ply = trimesh.load(io.BytesIO(export_mesh(red, "ply")), file_type="ply", process=False)
    colours = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert (colours == [0xC0, 0x39, 0x2B]).all()
    metal = apply_material(mesh, resolve_material("metal"))
    ply = trimesh.load(io.BytesIO(export_mesh(metal, "ply")), file_type="ply", process=False)
    assert np.asarray(ply.visual.vertex_colors)[:, :3].std() > 10  # still the photo's colours
    assert export_mesh(red, "stl") == export_mesh(mesh, "stl")


def test_materials_survive_the_canonical_npz():
    red = apply_material(pipeline_mesh(), resolve_material(RED))
    back = TexturedMesh.from_bytes(red.to_bytes())
    assert back.base_color == red.base_color and back.material == "custom"
    assert (back.metallic, back.roughness) == pytest.approx((0.25, 0.4))
    assert np.array_equal(back.texture, red.texture)


def test_an_npz_written_before_materials_still_loads():
    mesh = pipeline_mesh()
    buf = io.BytesIO()  # the layout every stored mesh has had so far
    np.savez(
        buf,
        vertices=mesh.vertices.astype(np.float32),
        faces=mesh.faces.astype(np.int64),
        uv=mesh.uv.astype(np.float32),
        texture=mesh.texture,
        pbr=np.array([0.8, 0.0], dtype=np.float32),
    )
    old = TexturedMesh.from_bytes(buf.getvalue())
    assert old.base_color is None and old.material is None
    assert (old.roughness, old.metallic) == pytest.approx((0.8, 0.0))
    current = TexturedMesh.from_bytes(mesh.to_bytes())
    assert export_mesh(old, "glb") == export_mesh(current, "glb")
