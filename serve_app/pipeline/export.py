"""Export of the canonical textured mesh to GLB, OBJ (zipped with MTL and PNG), STL, PLY,
3MF (:mod:`serve_app.pipeline.threemf`) and USDZ (:mod:`serve_app.pipeline.usdz`)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

from serve_app.contracts.params import OUTPUT_FORMATS, OutputFormat
from serve_app.errors import InvalidInputError
from serve_app.pipeline.appearance import material_name, srgb_to_linear, vertex_colours
from serve_app.pipeline.threemf import export_3mf
from serve_app.pipeline.types import TexturedMesh

MEDIA_TYPES: dict[OutputFormat, str] = {
    "glb": "model/gltf-binary",
    "obj": "application/zip",
    "stl": "model/stl",
    "ply": "application/ply",
    "3mf": "model/3mf",
    "usdz": "model/vnd.usdz+zip",
}
FILE_NAMES: dict[OutputFormat, str] = {
    "glb": "model.glb",
    "obj": "model_obj.zip",
    "stl": "model.stl",
    "ply": "model.ply",
    "3mf": "model.3mf",
    "usdz": "model.usdz",
}
#: glTF's unit is the metre; the canonical mesh (and OBJ, STL, PLY, 3MF, USDZ) are in
#: millimetres.
GLB_UNITS_PER_MM = 0.001


def export_mesh(mesh: TexturedMesh, fmt: OutputFormat) -> bytes:
    """Encode ``mesh`` as ``fmt``. GLB is in metres (glTF's unit), the others in millimetres
    (3MF with Z up, as printers have it; the others Y up)."""
    if fmt not in OUTPUT_FORMATS:
        raise InvalidInputError(f"unknown format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return _EXPORTERS[fmt](mesh)


def _as_bytes(exported: object) -> bytes:
    """trimesh's ``export`` is typed loosely; binary formats return bytes."""
    if not isinstance(exported, bytes):
        raise TypeError(f"expected bytes from trimesh, got {type(exported).__name__}")
    return exported


def _jpeg(texture: np.ndarray) -> Image.Image:
    """The texture as a JPEG-backed PIL image (trimesh embeds JPEGs without re-encoding)."""
    buf = io.BytesIO()
    Image.fromarray(texture).save(buf, format="JPEG", quality=90)
    buf.seek(0)
    image = Image.open(buf)
    image.load()
    return image


def _material(mesh: TexturedMesh, image: Image.Image | None) -> PBRMaterial:
    """glTF's metallic-roughness material: the texture, or a plain ``base_color`` factor."""
    if mesh.base_color is not None:
        factor = [*srgb_to_linear(mesh.base_color), 1.0]
        image = None
    else:
        factor = [1.0, 1.0, 1.0, 1.0]
    return PBRMaterial(
        name=material_name(mesh),
        baseColorTexture=image,
        baseColorFactor=factor,
        metallicFactor=float(mesh.metallic),
        roughnessFactor=float(mesh.roughness),
        doubleSided=False,
    )


def _textured(mesh: TexturedMesh, scale: float, image: Image.Image | None) -> trimesh.Trimesh:
    material = _material(mesh, image)
    uv = mesh.uv if material.baseColorTexture is not None else None
    return trimesh.Trimesh(
        vertices=mesh.vertices.astype(np.float64) * scale,
        faces=mesh.faces,
        visual=TextureVisuals(uv=uv, material=material),
        process=False,
    )


def _glb(mesh: TexturedMesh) -> bytes:
    image = _jpeg(mesh.texture) if mesh.base_color is None else None
    tm = _textured(mesh, GLB_UNITS_PER_MM, image)
    return _as_bytes(tm.export(file_type="glb"))


#: Names inside the OBJ zip.
OBJ_NAME, MTL_NAME, TEXTURE_NAME = "model.obj", "model.mtl", "texture.png"


def _obj(mesh: TexturedMesh) -> bytes:
    """The OBJ, its MTL (:func:`mtl_text`) and, unless a plain colour replaced it, the
    texture as a PNG, zipped."""
    material = PBRMaterial(name=material_name(mesh))
    tm = trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        visual=TextureVisuals(uv=mesh.uv, material=material),
        process=False,
    )
    text = trimesh.exchange.obj.export_obj(
        tm,
        include_normals=True,
        include_texture=True,
        write_texture=False,
        mtl_name=MTL_NAME,
        header=None,
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(OBJ_NAME, text)
        z.writestr(MTL_NAME, mtl_text(mesh))
        if mesh.base_color is None:
            png = io.BytesIO()
            Image.fromarray(mesh.texture).save(png, format="PNG")
            z.writestr(TEXTURE_NAME, png.getvalue())
    return buf.getvalue()


def mtl_text(mesh: TexturedMesh) -> str:
    """The MTL of ``mesh``: classic terms as Blender's importer reads them, and the PBR
    extension's ``Pr``/``Pm``.

    ``Kd`` is the base colour (white under a texture, ``map_Kd``), ``Ks`` the reflectance
    at normal incidence (0.04 for a dielectric, the base colour for a metal), ``Ns``
    ``1000 (1 − roughness)²`` and ``Ka`` the metallic factor (Blender reads roughness and
    metallic back from these two when ``Pr``/``Pm`` are absent).
    """
    r, g, b = (c / 255.0 for c in mesh.base_color) if mesh.base_color else (1.0, 1.0, 1.0)
    m = float(mesh.metallic)
    rough = float(mesh.roughness)
    ks = [0.04 * (1 - m) + c * m for c in (r, g, b)]
    lines = [
        "# ORFEAS Serve",
        f"newmtl {material_name(mesh)}",
        f"Ka {m:.6f} {m:.6f} {m:.6f}",
        f"Kd {r:.6f} {g:.6f} {b:.6f}",
        f"Ks {ks[0]:.6f} {ks[1]:.6f} {ks[2]:.6f}",
        f"Ns {1000.0 * (1.0 - rough) ** 2:.6f}",
        "d 1.000000",
        "illum 2",
        f"Pr {rough:.6f}",
        f"Pm {m:.6f}",
    ]
    if mesh.base_color is None:
        lines.append(f"map_Kd {TEXTURE_NAME}")
    return "\n".join(lines) + "\n"


def _stl(mesh: TexturedMesh) -> bytes:
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    return _as_bytes(tm.export(file_type="stl"))


def _ply(mesh: TexturedMesh) -> bytes:
    tm = trimesh.Trimesh(
        vertices=mesh.vertices, faces=mesh.faces, vertex_colors=vertex_colours(mesh), process=False
    )
    return _as_bytes(tm.export(file_type="ply"))


def _usdz(mesh: TexturedMesh) -> bytes:
    from serve_app.pipeline.usdz import export_usdz  # USD (pxr) only when converting

    return export_usdz(mesh)


_EXPORTERS = {"glb": _glb, "obj": _obj, "stl": _stl, "ply": _ply, "3mf": export_3mf, "usdz": _usdz}
