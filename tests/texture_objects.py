"""Objects of known colour for the texture baker: meshes whose every face has a colour, their
photos from the six views (ray cast by Embree, anti-aliased), and the colour error of a
baked texture at random surface points (CIEDE2000)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import trimesh

from serve_app.pipeline.texture.views import ViewName, camera_frame
from serve_app.pipeline.types import CutOut, Mesh, TexturedMesh

#: The colour the photos have where the subject is not (the removed background).
BACKGROUND = (0, 255, 0)
#: Saturated and mid colours, none black, none near the background.
PALETTE = np.array(
    [
        (210, 50, 45), (40, 80, 200), (240, 200, 40), (150, 60, 170), (240, 130, 30),
        (30, 160, 170), (230, 230, 225), (120, 70, 40), (200, 90, 150), (90, 110, 130),
        (170, 200, 230), (110, 40, 70),
    ],
    dtype=np.uint8,
)  # fmt: skip
SIDE_VIEWS = (ViewName.FRONT, ViewName.RIGHT, ViewName.BACK, ViewName.LEFT)
ALL_VIEWS = (*SIDE_VIEWS, ViewName.TOP, ViewName.BOTTOM)


@dataclass
class ColouredMesh:
    """A mesh and the sRGB colour of each face: vertices (n, 3) float64, faces (m, 3)
    int64, colours (m, 3) uint8."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray

    @property
    def mesh(self) -> Mesh:
        return Mesh(self.vertices.astype(np.float32), self.faces.astype(np.int64))

    @property
    def trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def _patches(keys: np.ndarray) -> np.ndarray:
    """A palette colour per face from integer patch keys (m, k): neighbours differ."""
    mixed = keys @ np.array([1, 5, 7, 11][: keys.shape[1]], dtype=np.int64)
    return PALETTE[mixed % len(PALETTE)]


def box(subdivisions: int = 3) -> ColouredMesh:
    """A 1 × 1.4 × 0.8 box, each side a 4 × 4 checker of two colours of its own."""
    tm = trimesh.creation.box(extents=(1.0, 1.4, 0.8))
    v, f = tm.vertices, tm.faces
    for _ in range(subdivisions):
        v, f = trimesh.remesh.subdivide(v, f)
    centre = v[f].mean(axis=1)
    normal = trimesh.Trimesh(v, f, process=False).face_normals
    side = np.argmax(np.abs(normal), axis=1) * 2 + (
        normal[np.arange(len(f)), np.argmax(np.abs(normal), axis=1)] > 0
    )
    cells = np.floor((centre / (1.0, 1.4, 0.8) + 0.5) * 4).astype(np.int64)
    checker = cells.sum(axis=1) % 2
    colours = PALETTE[(2 * side + checker) % len(PALETTE)]
    return ColouredMesh("box", v, f, colours)


def sphere(subdivisions: int = 4) -> ColouredMesh:
    """A unit icosphere in patches of 45° of longitude by 45° of latitude."""
    tm = trimesh.creation.icosphere(subdivisions=subdivisions)
    c = tm.triangles_center
    lon = np.floor((np.arctan2(c[:, 0], c[:, 2]) + np.pi) / (np.pi / 4)).astype(np.int64)
    lat = np.floor(
        (np.arcsin(np.clip(c[:, 1] / np.linalg.norm(c, axis=1), -1, 1)) + np.pi / 2) / (np.pi / 4)
    ).astype(np.int64)
    return ColouredMesh("sphere", tm.vertices, tm.faces, _patches(np.column_stack([lon, lat])))


def torus(major_sections: int = 64, minor_sections: int = 32) -> ColouredMesh:
    """A torus (radii 1 and 0.35) lying in the XY plane, in patches of 45° around it and
    90° around its tube."""
    tm = trimesh.creation.torus(
        major_radius=1.0,
        minor_radius=0.35,
        major_sections=major_sections,
        minor_sections=minor_sections,
    )
    # a rotation: the ring in XY, so the front camera sees through its hole
    v = tm.vertices[:, [0, 2, 1]] * (1, 1, -1)
    f = tm.faces
    c = v[f].mean(axis=1)
    around = np.floor((np.arctan2(c[:, 1], c[:, 0]) + np.pi) / (np.pi / 4)).astype(np.int64)
    ring = c[:, :2] / np.maximum(np.linalg.norm(c[:, :2], axis=1, keepdims=True), 1e-9)
    radial = np.einsum("ij,ij->i", c[:, :2] - ring, ring)
    tube = np.floor((np.arctan2(c[:, 2], radial) + np.pi) / (np.pi / 2)).astype(np.int64)
    return ColouredMesh("torus", v, f, _patches(np.column_stack([around, tube])))


@cache
def generated(quality: int = 3) -> ColouredMesh:
    """The inflate generator's solid of an ellipse, in a 3D checker of 6 × 6 × 2 cells."""
    from serve_app.contracts.params import GenerationParams
    from serve_app.pipeline.generators.inflate import InflateGenerator
    from serve_app.pipeline.types import CancelToken, no_progress
    from tests.support import ellipse_cutout

    rgba = ellipse_cutout(300, 240)
    cutout = CutOut(rgba=rgba, mask=rgba[..., 3] > 127)
    mesh = InflateGenerator("cpu").generate(
        cutout, GenerationParams(quality=quality), no_progress, CancelToken()
    )
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    c = v[f].mean(axis=1)
    lo, hi = v.min(axis=0), v.max(axis=0)
    cells = np.floor((c - lo) / (hi - lo + 1e-9) * (6, 6, 2)).astype(np.int64)
    return ColouredMesh("generated", v, f, _patches(cells))


OBJECTS = {"box": box, "sphere": sphere, "torus": torus, "generated": generated}


def photograph(
    obj: ColouredMesh, view: ViewName, size: int = 256, fill: float = 0.8, supersample: int = 2
) -> CutOut:
    """The object from ``view`` (orthographic, the camera convention), unlit, its
    silhouette's longest side ``fill`` of the picture, centred, anti-aliased: an RGBA cut-out
    with the removed background's colour where alpha is 0."""
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    frame = camera_frame(view)
    v = obj.vertices
    u, w = v @ frame[1], v @ frame[2]
    extent = max(np.ptp(u), np.ptp(w))
    scale = fill * size / extent  # pixels per mesh unit
    n = size * supersample
    px = (np.arange(n) + 0.5) / supersample
    cu = (u.max() + u.min()) / 2 + (px - size / 2) / scale
    cv = (w.max() + w.min()) / 2 - (px - size / 2) / scale
    uu, vv = np.meshgrid(cu, cv)
    start = float((v @ frame[0]).max()) + 1.0
    origins = uu.reshape(-1, 1) * frame[1] + vv.reshape(-1, 1) * frame[2] + start * frame[0]
    hit = RayMeshIntersector(obj.trimesh).intersects_first(
        origins, np.ascontiguousarray(np.broadcast_to(-frame[0], origins.shape))
    )
    rgb = np.zeros((n * n, 3), dtype=np.float64)
    ok = hit >= 0
    rgb[ok] = obj.colours[hit[ok]]
    rgb = rgb.reshape(size, supersample, size, supersample, 3).sum(axis=(1, 3))
    coverage = ok.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    colour = rgb / np.maximum(coverage, 1)[..., None]
    colour[coverage == 0] = BACKGROUND
    alpha = np.rint(255 * coverage / supersample**2).astype(np.uint8)
    rgba = np.dstack([np.rint(colour).astype(np.uint8), alpha])
    return CutOut(rgba=rgba, mask=alpha > 127, source="alpha")


def photographs(
    obj: ColouredMesh, views: tuple[ViewName, ...], size: int = 256
) -> dict[str, CutOut]:
    return {str(view): photograph(obj, view, size) for view in views}


@dataclass
class Score:
    """Of random surface points: the share within ΔE2000 < 10 over the whole surface and
    over what the views see (each share of area), and the mean ΔE."""

    within: float
    within_seen: float
    mean_delta_e: float


def sample_texture(textured: TexturedMesh, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The baked colour (bilinear, as a GPU samples) at surface points of given faces:
    (k, 3) float64 sRGB 0..255."""
    corners = textured.vertices[textured.faces[faces]].astype(np.float64)
    bary = trimesh.triangles.points_to_barycentric(corners, points)
    uv = np.einsum("kj,kjd->kd", bary, textured.uv[textured.faces[faces]].astype(np.float64))
    h, w = textured.texture.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2), np.minimum(y.astype(int), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = textured.texture.astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x0 + 1] * fx
    bottom = t[y0 + 1, x0] * (1 - fx) + t[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def seen_by(
    obj: ColouredMesh, views: tuple[ViewName, ...], points: np.ndarray, faces: np.ndarray
) -> np.ndarray:
    """Which surface points some view's camera sees (facing it, nothing in between)."""
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    tm = obj.trimesh
    caster = RayMeshIntersector(tm)
    normals = tm.face_normals[faces]
    seen = np.zeros(len(points), dtype=bool)
    scale = float(np.ptp(obj.vertices, axis=0).max())
    for view in views:
        toward = camera_frame(view)[0]
        facing = normals @ toward > 0
        origins = points + normals * 1e-4 * scale
        blocked = caster.intersects_any(origins, np.broadcast_to(toward, origins.shape).copy())
        seen |= facing & ~blocked
    return seen


def score(
    obj: ColouredMesh, textured: TexturedMesh, views: tuple[ViewName, ...], count: int = 20_000
) -> Score:
    """CIEDE2000 between the baked and the known colour at ``count`` random surface points."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    points, faces = trimesh.sample.sample_surface(obj.trimesh, count, seed=7)
    got = sample_texture(textured, faces, points)
    want = obj.colours[faces].astype(np.float64)
    de = deltaE_ciede2000(rgb2lab(want[None] / 255.0)[0], rgb2lab(got[None] / 255.0)[0])
    seen = seen_by(obj, views, points, faces)
    good = de < 10
    return Score(
        within=float(good.mean()),
        within_seen=float(good[seen].mean()) if seen.any() else 0.0,
        mean_delta_e=float(de.mean()),
    )


def bad_texels(texture: np.ndarray) -> int:
    """Texels black, or of the removed background's colour (within ΔE2000 10)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    flat = texture.reshape(-1, 3)
    black = flat.max(axis=1) < 16
    lab = rgb2lab(flat[None].astype(np.float64) / 255.0)[0]
    bg = rgb2lab(np.array([[BACKGROUND]], dtype=np.float64) / 255.0)[0, 0]
    background = deltaE_ciede2000(lab, np.broadcast_to(bg, lab.shape)) < 10
    return int((black | background).sum())
