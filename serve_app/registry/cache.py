"""Content-addressed generation cache: one canonical mesh per input, formats derived once.

The cache key is a hash of everything that decides the mesh: the image bytes, the
generation parameters, the background model and the shape generator's name and version.
A stored canonical mesh under that key *is* the cache entry; any output format is
derived from it on first request and kept next to it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from serve_app.contracts.params import GenerationParams, OutputFormat
from serve_app.storage import ArtifactStore

#: Bumped when the canonical mesh layout or the key recipe changes (2: resolved generator
#: parameters in ``params``, a ``meta`` entry in the mesh).
CACHE_SCHEMA = 2


def cache_key(
    upload_sha256: str,
    params: GenerationParams,
    background_model: str,
    generator: str,
    generator_version: str,
) -> str:
    """The sha256 hex key of one generation's canonical mesh."""
    recipe = {
        "schema": CACHE_SCHEMA,
        "image": upload_sha256,
        "params": params.model_dump(mode="json"),
        "background": background_model,
        "generator": generator,
        "generator_version": generator_version,
    }
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def cached_mesh_meta(store: ArtifactStore, key: str) -> dict[str, object] | None:
    """The ``meta`` of the stored canonical mesh ``key`` (its use time refreshed), or None
    when there is no such mesh. Reads only that entry of the ``.npz``."""
    import numpy as np

    from serve_app.pipeline.types import read_meta

    if not store.touch_mesh(key):
        return None
    try:
        with np.load(store.mesh_path(key), allow_pickle=False) as archive:
            return dict(read_meta(archive))
    except (OSError, ValueError):
        return None


def derive_format(store: ArtifactStore, key: str, fmt: OutputFormat) -> Path:
    """The file of ``fmt`` for the canonical mesh ``key``, exporting it on first use.

    Raises ArtifactNotFoundError if the canonical mesh is gone.
    """
    path = store.export_path(key, fmt)
    if path.is_file():
        return path
    from serve_app.pipeline.export import export_mesh  # trimesh; only when converting
    from serve_app.pipeline.types import TexturedMesh

    mesh = TexturedMesh.from_bytes(store.read_mesh(key))
    return store.put_export(key, fmt, export_mesh(mesh, fmt))
