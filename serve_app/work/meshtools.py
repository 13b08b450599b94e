"""The mesh tools' heavy work, as the MeshTools deployment does it: variants and previews,
read from and written to the ArtifactStore.

Both are content-addressed, so doing one twice is harmless: a variant whose mesh is stored
already (an earlier request, a registry that restarted meanwhile) is reported from its
stored ``meta``, a preview already rendered is left as it is. Within one process, identical
orders wait for each other (a lock per content address), so they are made once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serve_app.contracts.meshtools import Material
from serve_app.contracts.variants import VariantBuilt, VariantOrder
from serve_app.errors import MeshTooLargeError, ValidationFailedError
from serve_app.meshtools.analyze import is_closed
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.variants import PreviewOrder, VariantOperation
from serve_app.pipeline.types import TexturedMesh
from serve_app.storage import ArtifactStore


class KeyedLocks:
    """One lock per key, held only while some thread uses it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


_LOCKS = KeyedLocks()


def make_variant(store: ArtifactStore, order: VariantOrder, limits: MeshLimits) -> VariantBuilt:
    """Make and store the variant ``order`` names (or report the one stored already).

    Raises ArtifactNotFoundError (404) when the base mesh is gone, MeshTooLargeError (413)
    for a base mesh over ``limits``, ValidationFailedError (422) for parameters the
    operation refuses (a face target the model cannot reach and stay closed, say).
    """
    with _LOCKS.hold(order.variant_id):
        built = _stored(store, order.variant_id)
        if built is not None:
            return built
        mesh = TexturedMesh.from_bytes(store.read_mesh(order.base_key))
        if len(mesh.faces) > limits.max_faces or len(mesh.vertices) > limits.max_vertices:
            raise MeshTooLargeError(
                f"the model has {len(mesh.faces)} faces; the mesh tools take at most "
                f"{limits.max_faces}",
                max_faces=limits.max_faces,
            )
        variant = _apply(mesh, order)
        watertight = is_closed(variant.vertices, variant.faces)
        variant.meta.update(
            {
                "variant_of": order.job_id,
                "operation": order.operation,
                "faces": len(variant.faces),
                "watertight": watertight,
            }
        )
        store.put_mesh(order.variant_id, variant.to_bytes())
        return VariantBuilt(faces=len(variant.faces), watertight=watertight)


def _optimize(mesh: TexturedMesh, params: Mapping[str, Any]) -> TexturedMesh:
    from serve_app.meshtools.optimize import optimize  # pymeshlab; only when optimising

    return optimize(mesh, int(params["target_faces"]), bool(params["repair"]))


def _apply_material(mesh: TexturedMesh, params: Mapping[str, Any]) -> TexturedMesh:
    from serve_app.meshtools.materials import apply_material

    return apply_material(mesh, Material.model_validate(params))


#: How each operation makes a variant of a mesh from the order's parameters.
OPERATIONS: dict[VariantOperation, Callable[[TexturedMesh, Mapping[str, Any]], TexturedMesh]] = {
    VariantOperation.OPTIMIZE: _optimize,
    VariantOperation.MATERIAL: _apply_material,
}


def _apply(mesh: TexturedMesh, order: VariantOrder) -> TexturedMesh:
    try:
        operation = VariantOperation(order.operation)
    except ValueError:
        raise ValidationFailedError(f"unknown variant operation {order.operation!r}") from None
    return OPERATIONS[operation](mesh, order.params)


def _stored(store: ArtifactStore, variant_id: str) -> VariantBuilt | None:
    meta = store.mesh_meta(variant_id)
    faces = meta.get("faces") if meta else None
    if meta is None or not isinstance(faces, int):
        return None
    watertight = meta.get("watertight")
    return VariantBuilt(
        faces=faces, watertight=watertight if isinstance(watertight, bool) else None
    )


def render_to_store(store: ArtifactStore, order: PreviewOrder) -> Path:
    """The PNG of ``order`` in the store, rendered now unless it is there already.

    Raises ArtifactNotFoundError (404) when the mesh is gone, ValidationFailedError (422)
    for a view out of range, ModelUnavailableError (503) without OpenGL.
    """
    view = order.view()
    path = store.preview_path(order.mesh_key, view)
    with _LOCKS.hold(f"{order.mesh_key}.{view}"):
        if path.is_file():
            return path
        from serve_app.meshtools.preview import render_preview

        mesh = TexturedMesh.from_bytes(store.read_mesh(order.mesh_key))
        png = render_preview(
            mesh,
            order.width,
            order.height,
            order.azimuth_deg,
            order.elevation_deg,
            order.background,
        )
        return store.put_preview(order.mesh_key, view, png)
