"""3MF export of the canonical mesh: millimetres, Z up on the build plate, its base colour."""

from __future__ import annotations

import io
import zipfile
from xml.sax.saxutils import escape

import numpy as np

from serve_app.pipeline.appearance import material_name, vertex_colours
from serve_app.pipeline.types import TexturedMesh

CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
MATERIAL_NS = "http://schemas.microsoft.com/3dmanufacturing/material/2015/02"
MODEL_PATH = "3D/3dmodel.model"
MODEL_REL_TYPE = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
MODEL_CONTENT_TYPE = "application/vnd.ms-package.3dmanufacturing-3dmodel+xml"

#: Resource ids inside the model part.
BASE_MATERIALS_ID, COLOUR_GROUP_ID, OBJECT_ID = 1, 2, 3

_CONTENT_TYPES = f"""<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
 <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
 <Default Extension="model" ContentType="{MODEL_CONTENT_TYPE}"/>
</Types>
"""
_RELS = f"""<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
 <Relationship Target="/{MODEL_PATH}" Id="rel0" Type="{MODEL_REL_TYPE}"/>
</Relationships>
"""


def z_up(vertices: np.ndarray) -> np.ndarray:
    """Y-up millimetres (the canonical frame) turned +90° about X into 3MF's Z-up frame and
    lifted so the model stands on the build plate (lowest point at z = 0).

    vertices : (n, 3) float → (n, 3) float64
    """
    v = np.asarray(vertices, dtype=np.float64)
    out = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
    if len(out):
        out[:, 2] -= out[:, 2].min()
    return out


def welded(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3MF's mesh rules: one vertex per position (a seam's copies welded, so each edge is
    shared by its two triangles) and three distinct vertices per triangle.

    vertices : (n, 3) float → (k, 3) float32, the distinct positions
    faces    : (m, 3) int → (m', 3) int64 into them, degenerate triangles dropped
    kept     : (m',) int64, which of ``faces`` remain (their colours stay per corner)
    """
    distinct, first, inverse = np.unique(
        np.asarray(vertices, dtype=np.float32), axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)  # the positions in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    points = distinct[order]
    merged = rank[inverse.reshape(-1)][np.asarray(faces, dtype=np.int64)]
    a, b, c = merged[:, 0], merged[:, 1], merged[:, 2]
    kept = np.flatnonzero((a != b) & (b != c) & (a != c))
    return points, merged[kept], kept


def base_colour(mesh: TexturedMesh) -> tuple[int, int, int]:
    """The model's one colour: the applied plain colour, else the texture's mean (sRGB)."""
    if mesh.base_color is not None:
        return mesh.base_color
    mean = mesh.texture.reshape(-1, 3).astype(np.float64).mean(axis=0)
    r, g, b = (int(round(c)) for c in mean)
    return (r, g, b)


def _hex(rgb: np.ndarray | tuple[int, int, int]) -> str:
    r, g, b = (int(c) for c in rgb)
    return f"#{r:02X}{g:02X}{b:02X}"


def _model_xml(mesh: TexturedMesh) -> str:
    """The model part. A textured mesh also carries its texture sampled at each vertex as a
    colour group (the materials extension), which slicers that paint colours read."""
    textured = mesh.base_color is None
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<model unit="millimeter" xml:lang="en-US" xmlns="{CORE_NS}" xmlns:m="{MATERIAL_NS}">\n',
        ' <metadata name="Application">ORFEAS Serve</metadata>\n',
        " <resources>\n",
        f'  <basematerials id="{BASE_MATERIALS_ID}">'
        f'<base name="{escape(material_name(mesh))}" displaycolor="{_hex(base_colour(mesh))}"/>'
        "</basematerials>\n",
    ]
    if textured:
        colours = vertex_colours(mesh)[:, :3]
        parts.append(f'  <m:colorgroup id="{COLOUR_GROUP_ID}">')
        parts.extend(f'<m:color color="{_hex(c)}"/>' for c in colours)
        parts.append("</m:colorgroup>\n")
    parts.append(
        f'  <object id="{OBJECT_ID}" type="model" pid="{BASE_MATERIALS_ID}" pindex="0">'
        "<mesh>\n   <vertices>"
    )
    points, faces, kept = welded(mesh.vertices, mesh.faces)
    parts.extend(
        f'<vertex x="{x:.4f}" y="{y:.4f}" z="{z:.4f}"/>' for x, y, z in z_up(points).tolist()
    )
    parts.append("</vertices>\n   <triangles>")
    if textured:
        group = f'pid="{COLOUR_GROUP_ID}"'
        corners = np.asarray(mesh.faces, dtype=np.int64)[kept]  # the colour of each corner
        parts.extend(
            f'<triangle v1="{a}" v2="{b}" v3="{c}" {group} p1="{p}" p2="{q}" p3="{r}"/>'
            for (a, b, c), (p, q, r) in zip(faces.tolist(), corners.tolist(), strict=True)
        )
    else:
        parts.extend(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces.tolist())
    parts.append("</triangles>\n  </mesh></object>\n </resources>\n")
    parts.append(f' <build><item objectid="{OBJECT_ID}"/></build>\n</model>\n')
    return "".join(parts)


def export_3mf(mesh: TexturedMesh) -> bytes:
    """``mesh`` as a 3MF package: millimetres, Z up, standing on the build plate; a base
    material of :func:`base_colour` and, under a texture, per-vertex colours."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr(MODEL_PATH, _model_xml(mesh))
    return buf.getvalue()
