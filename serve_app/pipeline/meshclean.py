"""Clean-up of a neural generator's raw surface: floaters, degenerate faces, face budget.

Marching cubes over a learnt occupancy field leaves small disconnected pieces ("floaters"),
zero-area and duplicate faces, and far more triangles than a model needs. Two backends do the
same three steps, in memory:

- ``pymeshlab``: MeshLab's filters (the ones hy3dgen's post-processors apply, without their
  temporary files);
- ``fast-simplification``: trimesh for the clean-up, Fast-Quadric-Mesh-Simplification for
  the reduction (no pymeshlab needed).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Backend = Literal["pymeshlab", "fast-simplification"]

#: A connected piece with fewer than this share of all faces is a floater.
FLOATER_FACE_RATIO = 0.005


def clean_mesh(
    vertices: np.ndarray, faces: np.ndarray, face_count: int, backend: Backend = "pymeshlab"
) -> tuple[np.ndarray, np.ndarray]:
    """Remove floaters, degenerate and duplicate faces, then reduce to ``face_count`` faces.

    vertices : (n, 3) float; faces : (m, 3) int → vertices (n', 3) float32, faces (m', 3) int64
    """
    if backend == "pymeshlab":
        v, f = _pymeshlab(vertices, faces, face_count)
    elif backend == "fast-simplification":
        v, f = _fast_simplification(vertices, faces, face_count)
    else:
        raise ValueError(f"unknown mesh clean-up backend {backend!r}")
    return np.ascontiguousarray(v, dtype=np.float32), np.ascontiguousarray(f, dtype=np.int64)


def _pymeshlab(
    vertices: np.ndarray, faces: np.ndarray, face_count: int
) -> tuple[np.ndarray, np.ndarray]:
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(
        pymeshlab.Mesh(
            vertex_matrix=np.asarray(vertices, dtype=np.float64),
            face_matrix=np.asarray(faces, dtype=np.int32),
        )
    )
    ms.meshing_remove_duplicate_vertices()
    ms.meshing_remove_duplicate_faces()
    ms.meshing_remove_null_faces()
    ms.compute_selection_by_small_disconnected_components_per_face(nbfaceratio=FLOATER_FACE_RATIO)
    ms.compute_selection_transfer_face_to_vertex(inclusive=False)
    ms.meshing_remove_selected_vertices_and_faces()
    ms.meshing_remove_unreferenced_vertices()
    if ms.current_mesh().face_number() > face_count:
        ms.meshing_decimation_quadric_edge_collapse(
            targetfacenum=face_count,
            qualitythr=1.0,
            preserveboundary=True,
            boundaryweight=3,
            preservenormal=True,
            preservetopology=True,
            autoclean=True,
        )
    mesh = ms.current_mesh()
    return mesh.vertex_matrix(), mesh.face_matrix()


def _fast_simplification(
    vertices: np.ndarray, faces: np.ndarray, face_count: int
) -> tuple[np.ndarray, np.ndarray]:
    import fast_simplification
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)  # merges vertices
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    labels = trimesh.graph.connected_component_labels(
        mesh.face_adjacency, node_count=len(mesh.faces)
    )
    sizes = np.bincount(labels)
    mesh.update_faces(sizes[labels] >= FLOATER_FACE_RATIO * len(mesh.faces))
    mesh.remove_unreferenced_vertices()
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if len(f) > face_count:
        v, f = fast_simplification.simplify(v, f.astype(np.int32), target_count=face_count)
    return v, f
