"""Texture synthesis behind one interface: views of the subject + a mesh → a textured mesh.

The built-in texturer is the ``Baker`` (``pipeline.texturer: bake``): a UV atlas, each view's
colours where its camera sees the surface, a fill for what no view sees. The camera
convention of the views is in ``views``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from serve_app.contracts.params import GenerationParams
from serve_app.pipeline.config import TextureSettings
from serve_app.pipeline.texture.baker import TEXTURE_SIDE, Baker
from serve_app.pipeline.texture.views import ViewName
from serve_app.pipeline.types import (
    CancelToken,
    CutOut,
    Mesh,
    ProgressCallback,
    TexturedMesh,
)

__all__ = [
    "TEXTURE_SIDE",
    "Baker",
    "Texturer",
    "ViewName",
    "load_texturer",
]


class Texturer(Protocol):
    """Colours a mesh from photos of its subject.

    ``views`` is one cut-out (the front) or cut-outs by view name (``ViewName``: front,
    left, back, right, top, bottom; orthographic, aligned by silhouette). The mesh is in
    the generator's frame (+Y up, +Z toward the front camera). The result keeps the mesh's
    positions and faces in order (vertices may be split along UV seams), with UVs and a
    base-colour texture whose side follows ``params.quality``. Reports progress in the
    ``texture_synthesis`` stage and raises ``JobCancelledError`` soon after ``cancel``.
    ``version`` enters the cache key with the generator's.
    """

    name: str
    version: str

    def texture(
        self,
        views: CutOut | Mapping[str, CutOut],
        mesh: Mesh,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> TexturedMesh: ...


def load_texturer(name: str = "bake", settings: TextureSettings | None = None) -> Texturer:
    """The texturer ``name`` (``pipeline.texturer``) with ``pipeline.texture``'s settings."""
    settings = settings or TextureSettings()
    if name == "bake":
        return Baker(back=settings.back)
    raise ValueError(f"unknown texturer {name!r}; known: bake")
