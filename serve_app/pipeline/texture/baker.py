"""The texture baker: a UV atlas, each view's colours where its camera sees the surface
(weighted by how squarely the surface faces it), and a fill for what no view sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.pipeline.config import BAKE_RECIPE
from serve_app.pipeline.texture.atlas import Atlas, PendingAtlas, Texels, rasterize, start_unwrapper
from serve_app.pipeline.texture.inpainting import (
    diffuse_over_faces,
    dilate_charts,
    inpaint_border,
    merged_faces,
    nearest_chart_texel,
    vertex_colours,
)
from serve_app.pipeline.texture.views import (
    Alignment,
    ViewName,
    align,
    as_views,
    camera_frame,
    mirrored,
    silhouette_box,
)
from serve_app.pipeline.texture.visibility import DepthMap, depth_map, ray_caster
from serve_app.pipeline.types import (
    CancelToken,
    CutOut,
    Mesh,
    ProgressCallback,
    TexturedMesh,
)

#: The base-colour texture's side per quality level.
TEXTURE_SIDE = {
    1: 256,
    2: 384,
    3: 512,
    4: 768,
    5: 1024,
    6: 1024,
    7: 1536,
    8: 2048,
    9: 2048,
    10: 2048,
}
ROUGHNESS = 0.8
#: A view's weight at a surface point is cos(θ)^FACING_POWER, θ between the surface's normal
#: and the direction to the camera. A view foreshortens the surface by cos(θ), so its photo is
#: that much blurrier there; the fourth power lets the squarest view decide along a patch's
#: border where two views see it (with the square, a view at 60° beside one facing squarely
#: had a fifth of the say; now a seventeenth).
FACING_POWER = 4.0
#: A view is used wherever the surface faces its camera at all (cos(θ) > MIN_FACING): even at
#: 87–90°, up to the silhouette, the photo's colour there (the rim's, from just inside it) is
#: truer than the colour diffused from the neighbours, which crosses into the next patch.
#: (At a cut-off of 0.05 a tenth of what a lone front camera sees of a ring was filled,
#: and a sixth of that was wrong; read from the photo, a twentieth.)
MIN_FACING = 0.0
#: The weight of the mesh diffusion in every texel: it decides only where no view sees the
#: surface, so it is below any view's weight but a view's that grazes it at under 1°.
PRIOR_WEIGHT = 1e-7
#: Photo pixels this far (per 512 px of the subject's size) inside the silhouette are the
#: subject's own colour; the rim, which blends with the removed background, takes theirs.
RIM_PIXELS_PER_512 = 1.5


@dataclass
class PreparedView:
    """One view's photo, ready to sample: colours, the subject's pixels, alignment, depth map.

    rgb : (h, w, 3) float32, the rim's colours pulled in from inside; solid : (h, w) bool
    """

    name: ViewName
    rgb: np.ndarray
    solid: np.ndarray
    alignment: Alignment
    depth: DepthMap

    def sample(
        self, points: np.ndarray, normals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where this view sees the surface points, its colour there and its weight.

        points, normals : (k, 3) float32 → index (j,) int64 of the points the camera sees
        (facing it, nothing in between, on the subject), colour (j, 3) float32, weight (j,)
        float32
        """
        frame = self.depth.frame.astype(np.float32)
        cos = normals @ frame[0]
        facing = np.flatnonzero(cos > MIN_FACING)
        cos = cos[facing]
        p = points[facing]
        u, v = p @ frame[1], p @ frame[2]
        seen = self.depth.visible(u, v, p @ frame[0], cos)
        col, row = self.alignment.to_pixels(u, v)
        h, w = self.solid.shape
        seen &= (col >= 0) & (col < w) & (row >= 0) & (row < h)
        ci = np.minimum(col.astype(np.int64), w - 1)
        ri = np.minimum(row.astype(np.int64), h - 1)
        seen &= self.solid[np.maximum(ri, 0), np.maximum(ci, 0)]
        seen = np.flatnonzero(seen)
        colour = interpolate(self.rgb, col[seen] - 0.5, row[seen] - 0.5)
        return facing[seen], colour, cos[seen] ** FACING_POWER


#: OpenCV's remap takes maps of fewer than 32767 columns: samples go in rows of this many.
REMAP_ROW = 4096


def interpolate(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` at continuous pixel centres (x, y), bicubic, edges clamped (OpenCV's remap).

    Bicubic, not bilinear: the renderer filters the texture bilinearly again, and a photo read
    bilinearly as well blurs every edge twice. Most of the colour errors lie within a pixel
    and a half of a border between two colours in the photo; bicubic, sharper there, makes
    a seventh fewer of them. Its slight overshoot at an edge is clipped to 0–255 in the
    texture, and the rim has been pulled in from inside, so no background mixes in.

    image : (h, w, c) float32; x, y : (k,) float32 → (k, c) float32
    """
    import cv2

    h, w, c = image.shape
    k = len(x)
    rows = max(1, -(-k // REMAP_ROW))
    mx = np.zeros(rows * REMAP_ROW, dtype=np.float32)
    my = np.zeros(rows * REMAP_ROW, dtype=np.float32)
    mx[:k] = np.clip(x, 0.0, w - 1.0)
    my[:k] = np.clip(y, 0.0, h - 1.0)
    out = cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        mx.reshape(rows, REMAP_ROW),
        my.reshape(rows, REMAP_ROW),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(-1, c)[:k]


def subject_colours(cutout: CutOut) -> np.ndarray:
    """The photo's colours with every pixel of the silhouette's rim (and outside it) taking
    the colour of the nearest pixel clear of the rim, which the removed background has not
    blended into: (h, w, 3) float32."""
    import cv2
    from scipy import ndimage

    row0, row1, col0, col1 = silhouette_box(cutout.mask)
    size = max(row1 - row0, col1 - col0)
    rim = max(1, round(RIM_PIXELS_PER_512 * size / 512))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
    solid = cv2.erode(cutout.mask.astype(np.uint8), kernel).astype(bool)
    if not solid.any():
        solid = cutout.mask
    _, (ri, ci) = ndimage.distance_transform_edt(~solid, return_indices=True)
    return cutout.rgba[..., :3][ri, ci].astype(np.float32)


class Baker:
    """Bakes the views into a texture over a UV atlas of the mesh (``pipeline.texturer:
    bake``). ``back="mirror"``: a lone front view is also used, mirrored, as the back."""

    name = "bake"

    def __init__(self, back: str = "fill") -> None:
        if back not in ("fill", "mirror"):
            raise ValueError(f"back must be 'fill' or 'mirror', not {back!r}")
        self.back = back
        #: What the cache key carries of the texture: the baker's recipe and its back.
        self.version = f"bake-{BAKE_RECIPE}-{back}"
        #: xatlas's child process starts with the baker, not in its first bake.
        self.ready = start_unwrapper()

    def texture(
        self,
        views: CutOut | Mapping[str, CutOut],
        mesh: Mesh,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> TexturedMesh:
        """The mesh with a baked base-colour texture; its vertices are split along the
        atlas's seams (positions, faces and their order are the mesh's)."""
        on_progress(Stage.TEXTURE_SYNTHESIS, 0.0)
        photos = as_views(views)
        if self.back == "mirror" and set(photos) == {ViewName.FRONT}:
            photos[ViewName.BACK] = mirrored(photos[ViewName.FRONT])
        vertices = np.asarray(mesh.vertices, dtype=np.float32)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        for cutout in photos.values():  # a view without a subject is refused before xatlas starts
            silhouette_box(cutout.mask)
        # the views are prepared while xatlas works in its child process
        pending = PendingAtlas(vertices, faces, TEXTURE_SIDE[params.quality])
        prepared = prepare(photos, vertices, faces)
        atlas = pending.result(cancel)
        cancel.raise_if_cancelled()
        on_progress(Stage.TEXTURE_SYNTHESIS, 0.35)
        texels = rasterize(atlas)
        cancel.raise_if_cancelled()
        on_progress(Stage.TEXTURE_SYNTHESIS, 0.5)
        texture = bake(vertices, faces, atlas, texels, photos, prepared, on_progress, cancel)
        on_progress(Stage.TEXTURE_SYNTHESIS, 1.0)
        return TexturedMesh(
            vertices=atlas.vertices,
            faces=atlas.faces,
            uv=atlas.uv,
            texture=texture,
            roughness=ROUGHNESS,
            metallic=0.0,
        )


def prepare(
    views: Mapping[ViewName, CutOut], vertices: np.ndarray, faces: np.ndarray
) -> list[PreparedView]:
    """Each view's alignment and depth map over the mesh."""
    caster = ray_caster(vertices, faces)
    prepared = []
    for name, cutout in views.items():
        frame = camera_frame(name)
        prepared.append(
            PreparedView(
                name=name,
                rgb=subject_colours(cutout),
                solid=cutout.mask,
                alignment=align(name, vertices, cutout.mask),
                depth=depth_map(caster, vertices, frame),
            )
        )
    return prepared


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals of the faces (counter-clockwise outwards): (m, 3) float32."""
    corners = vertices[faces].astype(np.float64)
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    return n.astype(np.float32)


def bake(
    vertices: np.ndarray,
    faces: np.ndarray,
    atlas: Atlas,
    texels: Texels,
    views: Mapping[ViewName, CutOut],
    prepared: list[PreparedView],
    on_progress: ProgressCallback,
    cancel: CancelToken,
) -> np.ndarray:
    """The texture: (side, side, 3) uint8.

    Each texel's surface point is looked at from every view that sees it; the colours are
    averaged with weights cos(θ)^FACING_POWER. Where no view sees the surface, the colour
    diffuses from the seen faces over the mesh, and the border between the two is inpainted
    in the atlas; the charts are then dilated into the empty space between them.
    """
    side = atlas.side
    corners = vertices[faces][texels.face]  # (k, 3, 3)
    points = np.einsum("kj,kjd->kd", texels.bary, corners).astype(np.float32)
    normals = face_normals(vertices, faces)[texels.face]
    total = np.zeros((len(points), 3), dtype=np.float32)
    weight = np.zeros(len(points), dtype=np.float32)
    for i, view in enumerate(prepared):
        index, colour, w = view.sample(points, normals)
        total[index] += colour * w[:, None]
        weight[index] += w
        cancel.raise_if_cancelled()
        on_progress(Stage.TEXTURE_SYNTHESIS, 0.5 + 0.3 * (i + 1) / len(prepared))
    fill = unseen_colours(vertices, faces, texels, total, weight, views)
    colour = (total + PRIOR_WEIGHT * fill) / (weight + PRIOR_WEIGHT)[:, None]
    cancel.raise_if_cancelled()
    on_progress(Stage.TEXTURE_SYNTHESIS, 0.9)
    image = np.zeros((side, side, 3), dtype=np.uint8)
    image[texels.rows, texels.cols] = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    covered = np.zeros((side, side), dtype=bool)
    covered[texels.rows, texels.cols] = True
    seen = np.zeros((side, side), dtype=bool)
    seen[texels.rows, texels.cols] = weight > 0
    nearest = nearest_chart_texel(covered)
    image = dilate_charts(image, nearest)
    image = inpaint_border(image, seen, covered)
    return dilate_charts(image, nearest)


def unseen_colours(
    vertices: np.ndarray,
    faces: np.ndarray,
    texels: Texels,
    total: np.ndarray,
    weight: np.ndarray,
    views: Mapping[ViewName, CutOut],
) -> np.ndarray:
    """Per texel, the colour diffused over the mesh from the faces the views see:
    (k, 3) float32."""
    m = len(faces)
    face_weight = np.bincount(texels.face, weights=weight, minlength=m)
    face_colour = np.zeros((m, 3), dtype=np.float32)
    for c in range(3):
        face_colour[:, c] = np.bincount(texels.face, weights=total[:, c], minlength=m)
    known = face_weight > 0
    face_colour[known] /= face_weight[known, None].astype(np.float32)
    merged, count = merged_faces(vertices, faces)
    subject = np.concatenate([cut.rgba[..., :3][cut.mask] for cut in views.values()])
    fallback = subject.mean(axis=0) if len(subject) else np.full(3, 128.0)
    filled = diffuse_over_faces(merged, face_colour, known, fallback)
    per_vertex = vertex_colours(merged, count, filled)
    corners = per_vertex[merged][texels.face]  # (k, 3, 3)
    return np.einsum("kj,kjd->kd", texels.bary, corners).astype(np.float32)
