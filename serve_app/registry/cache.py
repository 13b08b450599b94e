"""Content-addressed generation cache: the key of one generation's canonical mesh.

The cache key is a hash of everything that decides the mesh: the image bytes (and the
other views' photos, by view), the generation parameters, the background model and the
shape generator's name and version.
A stored canonical mesh under that key *is* the cache entry; any output format is
derived from it on first request and kept next to it (``ArtifactStore.derive_format``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from serve_app.contracts.params import GenerationParams

#: Bumped when the canonical mesh layout or the key recipe changes (2: resolved generator
#: parameters in ``params``, a ``meta`` entry in the mesh).
CACHE_SCHEMA = 2


def cache_key(
    upload_sha256: str,
    params: GenerationParams,
    background_model: str,
    generator: str,
    generator_version: str,
    views: Mapping[str, str] | None = None,
    mesh: str | None = None,
    texture: str | None = None,
) -> str:
    """The sha256 hex key of one generation's canonical mesh; ``views`` are the hashes of
    the other views' photos by view name, ``mesh`` the hash of a mesh file to texture,
    ``texture`` how it is textured (``PipelineConfig.texture_version``; the service always
    says it)."""
    recipe: dict[str, object] = {
        "schema": CACHE_SCHEMA,
        "image": upload_sha256,
        "params": params.model_dump(mode="json"),
        "background": background_model,
        "generator": generator,
        "generator_version": generator_version,
    }
    if texture:
        recipe["texture"] = texture
    if views:
        recipe["views"] = dict(views)
    if mesh:
        recipe["mesh"] = mesh
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
