"""USDZ export of the canonical mesh: millimetres, Y up, the texture as a UsdPreviewSurface."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from serve_app.pipeline.appearance import material_name, srgb_to_linear
from serve_app.pipeline.types import TexturedMesh

#: USD's stage unit: one unit is a millimetre, as in the canonical mesh.
METERS_PER_UNIT = 0.001
ROOT, MESH, MATERIALS = "/Model", "/Model/Mesh", "/Model/Materials"
LAYER_NAME, TEXTURE_NAME = "model.usdc", "texture.png"


def _prim_name(name: str) -> str:
    """A valid USD prim name made of ``name`` (letters, digits, underscores)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"m_{cleaned}"


def write_stage(mesh: TexturedMesh, folder: Path) -> Path:
    """The USD layer of ``mesh`` (and its texture beside it) written in ``folder``."""
    from pxr import Kind, Sdf, Usd, UsdGeom, UsdShade, Vt

    layer = folder / LAYER_NAME
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, METERS_PER_UNIT)
    root = UsdGeom.Xform.Define(stage, ROOT)
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)

    geom = UsdGeom.Mesh.Define(stage, MESH)
    points = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
    geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)))
    geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.ravel()))
    geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    geom.CreateDoubleSidedAttr(False)
    lo, hi = (points.min(axis=0), points.max(axis=0)) if len(points) else (np.zeros(3),) * 2
    geom.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([lo, hi]).astype(np.float32)))

    material = UsdShade.Material.Define(stage, f"{MATERIALS}/{_prim_name(material_name(mesh))}")
    surface = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("PreviewSurface"))
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(mesh.roughness))
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(mesh.metallic))
    diffuse = surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
    if mesh.base_color is not None:
        diffuse.Set(srgb_to_linear(mesh.base_color))
    else:
        uv = np.ascontiguousarray(mesh.uv, dtype=np.float32)
        st = UsdGeom.PrimvarsAPI(geom.GetPrim()).CreatePrimvar(
            "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
        )
        st.Set(Vt.Vec2fArray.FromNumpy(uv))
        Image.fromarray(mesh.texture).save(folder / TEXTURE_NAME, format="PNG")
        reader = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("StReader"))
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        texture = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("BaseColor"))
        texture.CreateIdAttr("UsdUVTexture")
        texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(TEXTURE_NAME))
        texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        rgb = texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        diffuse.ConnectToSource(rgb)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()
    return layer


def export_usdz(mesh: TexturedMesh) -> bytes:
    """``mesh`` as a USDZ package (what AR Quick Look opens): a USD layer in millimetres,
    Y up, with a UsdPreviewSurface reading the texture (or the plain base colour)."""
    from pxr import UsdUtils

    with tempfile.TemporaryDirectory(prefix="orfeas-usdz-") as tmp:
        folder = Path(tmp)
        layer = write_stage(mesh, folder)
        package = folder / "model.usdz"
        if not UsdUtils.CreateNewUsdzPackage(str(layer), str(package)):
            raise RuntimeError("USD could not write the USDZ package")
        return package.read_bytes()
