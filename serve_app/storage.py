"""ArtifactStore: uploads, canonical meshes and derived formats under one root directory.

Layout (every name is a validated job id or a hex digest, never a client's filename)::

    uploads/<sha256[:2]>/<sha256>        image bytes (photos and their views), content-addressed
    jobs/<job_id>/upload.json            which upload (and views) a job refers to
    meshes/<key[:2]>/<key>.npz           canonical meshes, by generation cache key
    exports/<key[:2]>/<key>.<format>     formats derived from a canonical mesh, made once
    previews/<key[:2]>/<key>.<view>.png  a canonical mesh rendered from one view (32 hex)
    images/<key[:2]>/<key>.json          a generated image (an upload), by text-to-image key
    batches/<batch_id>.json              a batch of jobs: its owner and its jobs

A variant of a job's model is a canonical mesh like any other, under its variant id.

Writes go to a temporary file in the same directory and are renamed into place, so a
reader sees a whole file or none; concurrent writers of the same content are harmless.
A write that finds the file system full removes its temporary file and raises
``StorageFullError`` (507 ``storage_full``, retryable); ``check_room`` refuses new work
while the free space is below the configured floor, before the disk is full.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serve_app.contracts.jobs import check_job_id
from serve_app.contracts.params import OUTPUT_FORMATS, OutputFormat
from serve_app.contracts.runs import MeshUpload, UploadInfo, ViewUpload
from serve_app.contracts.views import ViewName, in_view_order
from serve_app.errors import ArtifactNotFoundError, StorageFullError

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_VIEW_RE = re.compile(r"^[0-9a-f]{32}$")
#: What a write that found no room fails with.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(value: str) -> str:
    if not _DIGEST_RE.fullmatch(value):
        raise ValueError(f"not a sha256 hex digest: {value!r}")
    return value


def _format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format: {fmt!r}")
    return fmt


class ArtifactStore:
    """Content-addressed files under ``root`` (a local directory or a shared mount)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- uploads -----------------------------------------------------------------------

    def put_upload(
        self,
        job_id: str,
        data: bytes,
        media_type: str,
        owner: str | None = None,
        views: Mapping[ViewName, tuple[bytes, str]] | None = None,
        view: ViewName = ViewName.FRONT,
        mesh: tuple[bytes, str] | None = None,
    ) -> UploadInfo:
        """Store ``data`` by its hash and record it as ``job_id``'s upload (and its owner,
        the API key id that uploaded it, if any). ``data`` is the photo from ``view``;
        ``views`` are photos from other views (bytes and media type by view name), and
        ``mesh`` a mesh file to texture (bytes and format), stored the same way and
        recorded with it.
        """
        check_job_id(job_id)
        stored = []
        for other in in_view_order(list(views or {})):
            view_data, view_type = (views or {})[other]
            sha = self._put_upload_bytes(view_data)
            stored.append(ViewUpload(other, sha, len(view_data), view_type))
        info = UploadInfo(
            sha256=self._put_upload_bytes(data),
            size_bytes=len(data),
            media_type=media_type,
            views=tuple(stored),
            view=view,
            mesh=MeshUpload(self._put_upload_bytes(mesh[0]), len(mesh[0]), mesh[1])
            if mesh
            else None,
        )
        self._write_manifest(job_id, info, owner)
        return info

    def _put_upload_bytes(self, data: bytes) -> str:
        sha = sha256_hex(data)
        path = self._upload_path(sha)
        if path.is_file():
            _touch(path)  # in use again: retention's grace period starts anew
        else:
            _write_atomic(path, data)
        return sha

    def _write_manifest(self, job_id: str, info: UploadInfo, owner: str | None) -> None:
        manifest = {
            "sha256": info.sha256,
            "size_bytes": info.size_bytes,
            "media_type": info.media_type,
            "owner": owner,
        }
        if info.view != ViewName.FRONT:
            manifest["view"] = str(info.view)
        if info.mesh is not None:
            manifest["mesh"] = {
                "sha256": info.mesh.sha256,
                "size_bytes": info.mesh.size_bytes,
                "format": info.mesh.format,
            }
        if info.views:
            manifest["views"] = [
                {
                    "view": str(v.view),
                    "sha256": v.sha256,
                    "size_bytes": v.size_bytes,
                    "media_type": v.media_type,
                }
                for v in info.views
            ]
        _write_atomic(self._job_dir(job_id) / "upload.json", json.dumps(manifest).encode())

    def job_upload(self, job_id: str) -> UploadInfo | None:
        """The upload recorded for ``job_id`` (with its views), or None if there is none."""
        manifest = self._manifest(job_id)
        if manifest is None:
            return None
        views = tuple(
            ViewUpload(
                view=ViewName(v["view"]),
                sha256=_digest(v["sha256"]),
                size_bytes=int(v["size_bytes"]),
                media_type=str(v["media_type"]),
            )
            for v in manifest.get("views", ())
        )
        mesh = manifest.get("mesh")
        return UploadInfo(
            sha256=_digest(manifest["sha256"]),
            size_bytes=int(manifest["size_bytes"]),
            media_type=str(manifest["media_type"]),
            views=views,
            view=ViewName(manifest.get("view", "front")),
            mesh=MeshUpload(_digest(mesh["sha256"]), int(mesh["size_bytes"]), str(mesh["format"]))
            if mesh
            else None,
        )

    def job_owner(self, job_id: str) -> str | None:
        """The API key id that uploaded ``job_id``'s image (None: no key, or no upload)."""
        manifest = self._manifest(job_id)
        owner = manifest.get("owner") if manifest else None
        return str(owner) if owner else None

    def _manifest(self, job_id: str) -> dict[str, Any] | None:
        return _read_json(self._job_dir(check_job_id(job_id)) / "upload.json")

    def upload_file(self, sha256: str) -> Path:
        """The stored file of upload ``sha256``; ArtifactNotFoundError if it is gone."""
        path = self._upload_path(sha256)
        if not path.is_file():
            raise ArtifactNotFoundError("the job's image is no longer stored")
        return path

    def read_upload(self, sha256: str) -> bytes:
        return _read_stored(self._upload_path(sha256), "the uploaded image")

    # -- canonical meshes and their derived formats --------------------------------------

    def mesh_path(self, key: str) -> Path:
        key = _digest(key)
        return self.root / "meshes" / key[:2] / f"{key}.npz"

    def has_mesh(self, key: str) -> bool:
        return self.mesh_path(key).is_file()

    def touch_mesh(self, key: str) -> bool:
        """Mark a cached mesh as just used (retention keeps young files); False if gone."""
        return _touch(self.mesh_path(key))

    def put_mesh(self, key: str, data: bytes) -> Path:
        path = self.mesh_path(key)
        _write_atomic(path, data)
        return path

    def read_mesh(self, key: str) -> bytes:
        return _read_stored(self.mesh_path(key), "the job's model")

    def export_path(self, key: str, fmt: str) -> Path:
        key = _digest(key)
        return self.root / "exports" / key[:2] / f"{key}.{_format(fmt)}"

    def put_export(self, key: str, fmt: str, data: bytes) -> Path:
        path = self.export_path(key, fmt)
        _write_atomic(path, data)
        return path

    def derive_format(self, key: str, fmt: OutputFormat) -> Path:
        """The file of ``fmt`` for the canonical mesh ``key``, exporting it on first use.

        Raises ArtifactNotFoundError if the canonical mesh is gone.
        """
        path = self.export_path(key, fmt)
        if path.is_file():
            return path
        from serve_app.pipeline.export import export_mesh  # trimesh; only when converting
        from serve_app.pipeline.types import TexturedMesh

        mesh = TexturedMesh.from_bytes(self.read_mesh(key))
        return self.put_export(key, fmt, export_mesh(mesh, fmt))

    def mesh_meta(self, key: str) -> dict[str, object] | None:
        """The ``meta`` of the stored canonical mesh ``key`` (its use time refreshed), or None
        when there is no such mesh. Reads only that entry of the ``.npz``."""
        import numpy as np

        from serve_app.pipeline.types import read_meta

        if not self.touch_mesh(key):
            return None
        try:
            with np.load(self.mesh_path(key), allow_pickle=False) as archive:
                return dict(read_meta(archive))
        except (OSError, ValueError):
            return None

    # -- previews ------------------------------------------------------------------------

    def preview_path(self, key: str, view: str) -> Path:
        """The PNG of mesh ``key`` rendered from ``view`` (a 32-hex digest of the view)."""
        key = _digest(key)
        if not _VIEW_RE.fullmatch(view):
            raise ValueError(f"not a preview view digest: {view!r}")
        return self.root / "previews" / key[:2] / f"{key}.{view}.png"

    def put_preview(self, key: str, view: str, png: bytes) -> Path:
        path = self.preview_path(key, view)
        _write_atomic(path, png)
        return path

    # -- batches -------------------------------------------------------------------------

    def put_batch(self, batch_id: str, manifest: dict[str, Any]) -> None:
        """Record a batch (written once, when it is made)."""
        path = self._batch_path(batch_id)
        _write_atomic(path, json.dumps(manifest, separators=(",", ":")).encode())

    def read_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch's manifest, or None if there is no such batch."""
        return _read_json(self._batch_path(batch_id))

    def _batch_path(self, batch_id: str) -> Path:
        return self.root / "batches" / f"{check_job_id(batch_id)}.json"

    # -- generated images (text to image) ----------------------------------------------

    def put_generated_image(
        self, job_id: str, key: str, png: bytes, owner: str | None = None
    ) -> UploadInfo:
        """Store a generated PNG as ``job_id``'s upload (made for ``owner``, the job's API
        key id, if any) and index it under its text-to-image cache ``key``."""
        info = self.put_upload(job_id, png, "image/png", owner)
        entry = {"sha256": info.sha256, "size_bytes": info.size_bytes, "media_type": "image/png"}
        _write_atomic(self._image_index(key), json.dumps(entry).encode())
        return info

    def generated_image(self, key: str) -> UploadInfo | None:
        """The image generated under cache ``key``, or None (never made, or its bytes expired)."""
        entry = _read_json(self._image_index(key))
        if entry is None:
            return None
        info = UploadInfo(
            sha256=_digest(entry["sha256"]),
            size_bytes=int(entry["size_bytes"]),
            media_type=str(entry["media_type"]),
        )
        return info if self._upload_path(info.sha256).is_file() else None

    def adopt_generated_image(
        self, job_id: str, key: str, owner: str | None = None
    ) -> UploadInfo | None:
        """Record the image generated under cache ``key`` as ``job_id``'s upload, as if it
        had been uploaded again (its use time refreshed); None if there is no such image."""
        info = self.generated_image(key)
        if info is None or not _touch(self._upload_path(info.sha256)):
            return None
        self._write_manifest(job_id, info, owner)
        return info

    # -- health --------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise OSError unless a file can be created under the root."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
            pass

    def free_bytes(self) -> int:
        """Free space on the root's file system, for an unprivileged writer."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def check_room(self, min_free_bytes: int) -> None:
        """Raise StorageFullError (507) while the free space is below ``min_free_bytes``
        (``storage.min_free_bytes``: new work leaves that much free)."""
        free = self.free_bytes()
        if free < min_free_bytes:
            raise storage_full(
                f"the artifact store is nearly full ({free} bytes free, keeps "
                f"{min_free_bytes}); new uploads and jobs wait until space is freed",
                free_bytes=free,
                min_free_bytes=min_free_bytes,
            )

    def _upload_path(self, sha256: str) -> Path:
        sha256 = _digest(sha256)
        return self.root / "uploads" / sha256[:2] / sha256

    def _image_index(self, key: str) -> Path:
        key = _digest(key)
        return self.root / "images" / key[:2] / f"{key}.json"

    def _job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id


def _read_stored(path: Path, what: str) -> bytes:
    """The bytes of a stored file; ArtifactNotFoundError (``what`` is no longer stored) if
    it is gone."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactNotFoundError(f"{what} is no longer stored") from None


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object stored at ``path``, or None if there is no such file."""
    try:
        entry: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return entry


def _touch(path: Path) -> bool:
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def storage_full(message: str, **details: object) -> StorageFullError:
    """The error of a store with no room: retryable once space is freed."""
    return StorageFullError(message, retryable=True, **details)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all; StorageFullError when there is no room."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        _raise_if_full(exc)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            _raise_if_full(exc)
        raise


def _raise_if_full(exc: OSError) -> None:
    if exc.errno in NO_ROOM:
        raise storage_full("the artifact store is full: the file could not be written") from exc
