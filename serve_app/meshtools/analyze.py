"""Printability analysis of a triangle mesh: size, volume, area, topology and its issues.

``printable`` means: closed (every edge shared by exactly two faces), consistently wound,
and one or more solid components of positive volume — a closed shell wound inwards
counts when it lies inside another (a cavity). Each reason a mesh is not printable is an
issue with a stable code: ``open_surface``, ``non_manifold_edges``,
``inconsistent_winding``, ``inverted``, ``zero_volume``.
"""

from __future__ import annotations

import numpy as np

from serve_app.contracts.meshtools import BoundingBox, Issue, MeshAnalysis
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.readers import read_mesh

#: Vertices closer than this (mm) are one vertex, as a slicer merges them.
MERGE_GRID_MM = 1e-6
#: Shells wound inwards beyond this many are not tested for being cavities.
MAX_CAVITY_TESTS = 64


def analyze_file(data: bytes, limits: MeshLimits | None = None) -> MeshAnalysis:
    """Read a mesh file (see :func:`serve_app.meshtools.readers.read_mesh`) and analyse it."""
    mesh = read_mesh(data, limits)
    return analyze_mesh(mesh.vertices, mesh.faces, str(mesh.format))


def analyze_mesh(vertices: np.ndarray, faces: np.ndarray, fmt: str) -> MeshAnalysis:
    """Analyse a triangle mesh.

    vertices : (n, 3) float, millimetres, finite
    faces    : (m, 3) int, indices into ``vertices``, m ≥ 1
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    corners = vertices[np.asarray(faces, dtype=np.int64)]  # (m, 3, 3)
    points, faces = _merged(corners)
    tri = points[faces]
    centre = points.mean(axis=0)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    doubled_area = np.linalg.norm(cross, axis=1)
    extent = np.ptp(points, axis=0)
    diagonal = float(np.linalg.norm(extent))
    degenerate = (doubled_area <= 2e-12 * diagonal**2) | _repeats(faces)

    proper = faces[~_repeats(faces)]  # faces with a repeated corner make no edges
    boundary, non_manifold, consistent = edge_topology(proper, len(points))
    labels = _face_components(proper, len(points))
    count = int(labels.max()) + 1 if len(labels) else 0
    watertight = len(proper) > 0 and boundary == 0 and non_manifold == 0

    issues: list[Issue] = []
    if boundary:
        message = f"{boundary} boundary edges: the surface has holes and encloses no volume"
        issues.append(Issue(code="open_surface", message=message))
    if non_manifold:
        message = f"{non_manifold} edges are shared by more than two faces"
        issues.append(Issue(code="non_manifold_edges", message=message))
    if not consistent:
        message = "neighbouring faces are wound in opposite directions: some normals point in"
        issues.append(Issue(code="inconsistent_winding", message=message))
    volume = None
    if watertight and consistent:
        shells = _signed_volumes(points - centre, proper, labels, count)
        volume = abs(float(shells.sum()))
        issues.extend(_shell_issues(points - centre, proper, labels, shells, diagonal))
    return MeshAnalysis(
        format=fmt,
        triangles=len(faces),
        vertices=len(points),
        bounding_box_mm=BoundingBox(x=float(extent[0]), y=float(extent[1]), z=float(extent[2])),
        volume_mm3=volume,
        surface_area_mm2=float(doubled_area.sum() / 2),
        watertight=watertight,
        winding_consistent=consistent,
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        components=count,
        degenerate_faces=int(degenerate.sum()),
        printable=watertight and consistent and not issues,
        issues=issues,
    )


def is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the surface is closed once coincident vertices are merged (what a slicer
    sees): every edge shared by exactly two faces.

    vertices : (n, 3) float, millimetres; faces : (m, 3) int
    """
    if len(faces) == 0:
        return False
    points, merged = _merged(np.asarray(vertices, dtype=np.float64)[np.asarray(faces)])
    proper = merged[~_repeats(merged)]
    boundary, non_manifold, _ = edge_topology(proper, len(points))
    return len(proper) > 0 and boundary == 0 and non_manifold == 0


def _merged(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positions on a 1 nm grid, and the faces re-indexed onto them.

    corners : (m, 3, 3) float64 → points (k, 3) float64, faces (m, 3) int64
    """
    flat = corners.reshape(-1, 3)
    firsts, groups = group_rows(np.round(flat / MERGE_GRID_MM).astype(np.int64))
    return flat[firsts], groups.reshape(-1, 3)


def group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal rows of ``keys`` as groups, numbered in the rows' sorted order.

    keys : (n, 3) int64 → firsts (k,) int64, a row of each group; groups (n,) int64, the
    group of each row
    """
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
    ordered = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    groups = np.empty(len(order), dtype=np.int64)
    groups[order] = np.cumsum(starts) - 1
    return order[starts], groups


def _repeats(faces: np.ndarray) -> np.ndarray:
    """(m,) bool: the face names a vertex twice."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    return (a == b) | (b == c) | (a == c)


def edge_topology(faces: np.ndarray, n: int) -> tuple[int, int, bool]:
    """Boundary edges, non-manifold edges, and whether every edge of two faces is
    traversed in opposite directions by them.

    faces : (m, 3) int64 into ``n`` vertices, no face naming a vertex twice
    """
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    lo, hi = directed.min(axis=1), directed.max(axis=1)
    undirected, inverse, counts = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    del undirected
    per_edge = counts[inverse]
    pairs = directed[per_edge == 2]
    _, twice = np.unique(pairs[:, 0] * n + pairs[:, 1], return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum()), bool((twice == 1).all())


def _face_components(faces: np.ndarray, n: int) -> np.ndarray:
    """(m,) int64: the connected piece of each face (faces sharing a vertex are joined)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = faces[:, [0, 1, 2]].ravel()
    cols = faces[:, [1, 2, 0]].ravel()
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, vertex_labels = connected_components(graph, directed=False)
    used, labels = np.unique(vertex_labels[faces[:, 0]], return_inverse=True)
    del used
    return labels.astype(np.int64)


def _signed_volumes(
    points: np.ndarray, faces: np.ndarray, labels: np.ndarray, count: int
) -> np.ndarray:
    """(count,) float64: each closed piece's signed volume, positive when wound outwards."""
    a, b, c = (points[faces[:, i]] for i in range(3))
    per_face = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(labels, weights=per_face, minlength=count)


def _shell_issues(
    points: np.ndarray, faces: np.ndarray, labels: np.ndarray, shells: np.ndarray, diagonal: float
) -> list[Issue]:
    """Pieces without volume, and pieces wound inwards that are not cavities of another."""
    issues: list[Issue] = []
    flat = np.abs(shells) <= 1e-9 * max(diagonal, 1e-9) ** 3
    if flat.any():
        message = f"{int(flat.sum())} closed pieces enclose no volume"
        issues.append(Issue(code="zero_volume", message=message))
    inward = np.flatnonzero((shells < 0) & ~flat)
    if not len(inward):
        return issues
    if len(inward) > MAX_CAVITY_TESTS:
        stray = len(inward)
    else:
        stray = sum(not _is_cavity(points, faces, labels, int(piece)) for piece in inward)
    if stray:
        message = f"{stray} closed pieces are wound inwards and are no cavity of another"
        issues.append(Issue(code="inverted", message=message))
    return issues


def _is_cavity(points: np.ndarray, faces: np.ndarray, labels: np.ndarray, piece: int) -> bool:
    """Whether a vertex of ``piece`` lies inside the other pieces (winding number ≈ 1)."""
    own = labels == piece
    probe = points[faces[own][0, 0]]
    others = faces[~own]
    if not len(others):
        return False
    a, b, c = (points[others[:, i]] - probe for i in range(3))
    la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
    det = np.einsum("ij,ij->i", a, np.cross(b, c))
    den = (
        la * lb * lc
        + np.einsum("ij,ij->i", a, b) * lc
        + np.einsum("ij,ij->i", a, c) * lb
        + np.einsum("ij,ij->i", b, c) * la
    )
    winding = float(np.arctan2(det, den).sum() * 2 / (4 * np.pi))
    return winding > 0.5
