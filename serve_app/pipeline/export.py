"""Export of the canonical textured mesh to GLB, OBJ (zipped with MTL and PNG), STL and PLY."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

from serve_app.errors import InvalidInputError
from serve_app.pipeline.types import OUTPUT_FORMATS, OutputFormat, TexturedMesh

MEDIA_TYPES: dict[OutputFormat, str] = {
    "glb": "model/gltf-binary",
    "obj": "application/zip",
    "stl": "model/stl",
    "ply": "application/ply",
}
FILE_NAMES: dict[OutputFormat, str] = {
    "glb": "model.glb",
    "obj": "model_obj.zip",
    "stl": "model.stl",
    "ply": "model.ply",
}
#: glTF's unit is the metre; the canonical mesh (and OBJ, STL, PLY) are in millimetres.
GLB_UNITS_PER_MM = 0.001


def export_mesh(mesh: TexturedMesh, fmt: OutputFormat) -> bytes:
    """Encode ``mesh`` as ``fmt``. GLB is in metres (glTF's unit), the others in millimetres."""
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


def _textured(mesh: TexturedMesh, scale: float, image: Image.Image) -> trimesh.Trimesh:
    material = PBRMaterial(
        name="base",
        baseColorTexture=image,
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=float(mesh.metallic),
        roughnessFactor=float(mesh.roughness),
        doubleSided=False,
    )
    return trimesh.Trimesh(
        vertices=mesh.vertices.astype(np.float64) * scale,
        faces=mesh.faces,
        visual=TextureVisuals(uv=mesh.uv, material=material),
        process=False,
    )


def _glb(mesh: TexturedMesh) -> bytes:
    tm = _textured(mesh, GLB_UNITS_PER_MM, _jpeg(mesh.texture))
    return _as_bytes(tm.export(file_type="glb"))


def _obj(mesh: TexturedMesh) -> bytes:
    tm = _textured(mesh, 1.0, Image.fromarray(mesh.texture))
    text, files = trimesh.exchange.obj.export_obj(
        tm, include_normals=True, include_texture=True, return_texture=True, mtl_name="model.mtl"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.obj", text)
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _stl(mesh: TexturedMesh) -> bytes:
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    return _as_bytes(tm.export(file_type="stl"))


def vertex_colours(mesh: TexturedMesh) -> np.ndarray:
    """Base colour sampled at each vertex's UV: (n, 4) uint8 RGBA."""
    h, w = mesh.texture.shape[:2]
    cols = np.clip(np.rint(mesh.uv[:, 0] * (w - 1)), 0, w - 1).astype(np.int64)
    rows = np.clip(np.rint((1.0 - mesh.uv[:, 1]) * (h - 1)), 0, h - 1).astype(np.int64)
    rgb = mesh.texture[rows, cols]
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)


def _ply(mesh: TexturedMesh) -> bytes:
    tm = trimesh.Trimesh(
        vertices=mesh.vertices, faces=mesh.faces, vertex_colors=vertex_colours(mesh), process=False
    )
    return _as_bytes(tm.export(file_type="ply"))


_EXPORTERS = {"glb": _glb, "obj": _obj, "stl": _stl, "ply": _ply}
