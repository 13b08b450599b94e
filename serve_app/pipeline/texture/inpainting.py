"""Colour for what no view sees: diffusion over the mesh's faces, OpenCV inpainting at the
border of what is seen, and dilation of the charts into the atlas's empty space."""

from __future__ import annotations

import numpy as np

#: Unseen texels within this many texels (per 1024 of texture side) of a seen one are
#: inpainted from their neighbours in the atlas; farther ones take the mesh diffusion.
BAND_TEXELS_PER_1024 = 4
INPAINT_RADIUS = 3
#: A tiny pull toward the mean colour: the diffusion of a part of the mesh that no view sees
#: at all (a separate component) is that mean, and the system is never singular.
PULL_TO_MEAN = 1e-6


def merged_faces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """The faces re-indexed onto distinct vertex positions (coincident vertices are one),
    and the number of distinct positions.

    vertices : (n, 3) float; faces : (m, 3) int → (m, 3) int64, int
    """
    _, inverse = np.unique(np.asarray(vertices, dtype=np.float64), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse[np.asarray(faces, dtype=np.int64)], int(inverse.max()) + 1


def diffuse_over_faces(
    faces: np.ndarray, colour: np.ndarray, known: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Each unknown face's colour: the harmonic interpolation, over faces sharing an edge,
    of the known faces' colours (each known face keeps its own).

    faces : (m, 3) int64 on merged vertices; colour : (m, 3) float32 (read where known);
    known : (m,) bool; fallback : (3,) float, the colour where nothing is known
    → (m, 3) float32
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu
    from trimesh.graph import face_adjacency

    m = len(faces)
    out = np.empty((m, 3), dtype=np.float32)
    if not known.any():
        out[:] = fallback
        return out
    out[known] = colour[known]
    unknown = ~known
    if not unknown.any():
        return out
    pairs = face_adjacency(faces=faces)
    ends = (np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]])
    a = sp.coo_matrix((np.ones(2 * len(pairs)), ends), shape=(m, m)).tocsr()
    degree = np.asarray(a.sum(axis=1)).ravel()
    idx_u = np.flatnonzero(unknown)
    idx_k = np.flatnonzero(known)
    a_uu = a[idx_u][:, idx_u]
    a_uk = a[idx_u][:, idx_k]
    mean = colour[known].mean(axis=0)
    system = (sp.diags(degree[idx_u] + PULL_TO_MEAN) - a_uu).tocsc()
    rhs = a_uk @ colour[idx_k].astype(np.float64) + PULL_TO_MEAN * mean[None, :]
    out[idx_u] = splu(system).solve(np.asarray(rhs, dtype=np.float64))
    return out


def vertex_colours(faces: np.ndarray, count: int, face_colour: np.ndarray) -> np.ndarray:
    """Per merged vertex, the mean colour of the faces around it.

    faces : (m, 3) int64 on merged vertices; face_colour : (m, 3) → (count, 3) float32
    """
    total = np.zeros((count, 3), dtype=np.float64)
    for c in range(3):
        total[:, c] = np.bincount(
            faces.reshape(-1), weights=np.repeat(face_colour[:, c], 3), minlength=count
        )
    n = np.bincount(faces.reshape(-1), minlength=count).astype(np.float64)
    return (total / np.maximum(n, 1.0)[:, None]).astype(np.float32)


def inpaint_border(image: np.ndarray, seen: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Inpaint (OpenCV, Telea) the covered texels that no view sees near the seen ones,
    from their neighbours in the atlas.

    image : (s, s, 3) uint8, every texel already coloured; seen, covered : (s, s) bool
    → (s, s, 3) uint8
    """
    import cv2

    side = image.shape[0]
    band = max(2, round(BAND_TEXELS_PER_1024 * side / 1024))
    unseen = covered & ~seen
    if not unseen.any() or not seen.any():
        return image
    far = cv2.distanceTransform((~seen).astype(np.uint8), cv2.DIST_L2, 3)
    mask = (unseen & (far <= band)).astype(np.uint8)
    if not mask.any():
        return image
    return cv2.inpaint(image, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)


def nearest_chart_texel(covered: np.ndarray) -> np.ndarray:
    """Per texel, the flat index (row · side + column) of the nearest covered texel (OpenCV's
    distance transform with a label per covered texel; a covered texel is its own nearest).

    covered : (s, s) bool → (s, s) int64
    """
    import cv2

    if not covered.any():
        return np.arange(covered.size, dtype=np.int64).reshape(covered.shape)
    _, labels = cv2.distanceTransformWithLabels(
        (~covered).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_3, labelType=cv2.DIST_LABEL_PIXEL
    )
    # labels number the covered texels 1, 2, … in row-major order
    where = np.flatnonzero(covered.reshape(-1))
    return where[labels.reshape(covered.shape) - 1]


def dilate_charts(image: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Give every texel outside the charts the colour of its nearest chart texel, so that
    filtering and mipmaps across a chart's border read the chart's own colours.

    image : (s, s, 3) uint8; nearest : (s, s) int64, from :func:`nearest_chart_texel`
    → (s, s, 3) uint8
    """
    return np.ascontiguousarray(image.reshape(-1, image.shape[2])[nearest])
