"""Retention: expire old ended jobs (a TTL and a disk budget) and remove the files they leave.

A job is expired when it has no active run and has not changed for ``ttl_s``, or, while
the artifacts exceed ``max_bytes``, when it is among the oldest ended jobs. Files are
content-addressed and may be shared by jobs, so a file goes only when no journaled job
refers to it any more and it is older than ``grace_s`` (a file in flight, written before
its job records it, is young). A job's files are its upload, its model's canonical mesh
and its variants' meshes, with the formats and previews derived from each. Files that no
job refers to and that are older than the TTL (left by a failed request, or a variant of a
run that was replaced) go too. Queued or running jobs are never expired, and the
files they refer to are never removed. A batch's manifest goes once none of its jobs is left,
and a text-to-image cache index (``images/``) once the upload it points to is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.config_policies import RetentionConfig
from serve_app.registry.journal import JobJournal
from serve_app.registry.table import JobTable
from serve_app.storage import ArtifactStore

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StoredFile:
    """One artifact file: ``ref`` is the upload hash or the mesh key it belongs to."""

    path: Path
    kind: str  # "upload", "mesh", "export" or "preview"
    ref: str
    size_bytes: int
    mtime: float


@dataclass
class StoreScan:
    """Every artifact file and job directory under a store's root."""

    files: list[StoredFile] = field(default_factory=list)
    job_dirs: dict[str, float] = field(default_factory=dict)  # job id → mtime
    #: batch manifest → (its mtime, its job ids)
    batches: dict[Path, tuple[float, frozenset[str]]] = field(default_factory=dict)
    #: text-to-image cache index → (its mtime, the upload hash it points to; None: unreadable)
    image_indexes: dict[Path, tuple[float, str | None]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def bytes_by_ref(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for f in self.files:
            sizes[f.ref] = sizes.get(f.ref, 0) + f.size_bytes
        return sizes


@dataclass(frozen=True)
class Sweep:
    """What one collection removed."""

    jobs: int
    files: int
    bytes: int


async def collect(
    table: JobTable, journal: JobJournal, store: ArtifactStore, config: RetentionConfig
) -> tuple[list[str], Sweep]:
    """Expire old ended jobs (TTL, disk budget) and remove the files only they used.

    Runs on the registry's event loop; the file walk and the deletions go to threads.
    Returns the ids of the jobs forgotten (from ``table`` and the journal) and the sweep.
    """
    scan = await asyncio.to_thread(scan_store, store)
    now = time.time()
    expired = []
    for job_id in plan_expiry(journal, config, scan, now):
        record = table.find(job_id)
        if record is None or not record.status.active:
            expired.append(job_id)
    expired_refs = journal.refs_of(expired)
    for job_id in expired:
        table.remove(job_id)
    journal.delete(expired)
    uploads, keys = journal.references()
    for record in table:  # in memory, maybe newer than the journal
        if record.upload is not None:
            uploads.update(record.upload.hashes())
        if record.result:
            keys.add(record.result.artifact_key)
        keys.update(record.variants)
    remaining = (journal.job_ids() | {r.job_id for r in table}, uploads, keys)
    result = await asyncio.to_thread(
        sweep, store.root, scan, expired, expired_refs, remaining, config, now
    )
    return expired, result


def scan_store(store: ArtifactStore) -> StoreScan:
    """Walk the store's uploads, meshes, exports, previews and job directories (in a worker
    thread). An export or a preview belongs to the mesh key its name starts with."""
    scan = StoreScan()
    kinds = (
        ("upload", "uploads"),
        ("mesh", "meshes"),
        ("export", "exports"),
        ("preview", "previews"),
    )
    for kind, folder in kinds:
        for dirpath, _, names in os.walk(store.root / folder):
            for name in names:
                match = _HEX64.match(name)
                if match is None:  # a temporary file being written, or a stranger
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                scan.files.append(StoredFile(path, kind, match.group(0), st.st_size, st.st_mtime))
    jobs = store.root / "jobs"
    if jobs.is_dir():
        for entry in os.scandir(jobs):
            if _JOB_ID.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                scan.job_dirs[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    batches = store.root / "batches"
    if batches.is_dir():
        for entry in os.scandir(batches):
            if _JOB_ID.fullmatch(entry.name.removesuffix(".json")) and entry.is_file():
                scan.batches[Path(entry.path)] = (entry.stat().st_mtime, _batch_jobs(entry.path))
    for dirpath, _, names in os.walk(store.root / "images"):
        for name in names:
            if _HEX64.fullmatch(name.removesuffix(".json")) and name.endswith(".json"):
                path = Path(dirpath) / name
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                scan.image_indexes[path] = (mtime, _indexed_upload(path))
    return scan


def _indexed_upload(path: Path) -> str | None:
    """The upload hash a text-to-image cache index points to (None if it cannot be read)."""
    try:
        sha = json.loads(path.read_bytes())["sha256"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return sha if isinstance(sha, str) and _HEX64.fullmatch(sha) else None


def _batch_jobs(path: str) -> frozenset[str]:
    """The job ids a batch manifest lists (none if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            manifest = json.load(f)
        return frozenset(e["job_id"] for e in manifest.get("jobs", ()) if e.get("job_id"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return frozenset()


def plan_expiry(
    journal: JobJournal, config: RetentionConfig, scan: StoreScan, now: float
) -> list[str]:
    """Ids of the ended jobs to forget now: past the TTL, then the oldest while over budget."""
    expired: list[str] = journal.ended_before(now - config.ttl_s) if config.ttl_s else []
    if config.max_bytes is None or scan.total_bytes <= config.max_bytes:
        return expired
    chosen = set(expired)
    sizes = scan.bytes_by_ref()
    excess = scan.total_bytes - config.max_bytes
    freed = 0
    for job_id, shas, key in journal.ended_oldest_first():
        if freed >= excess:
            break
        if job_id in chosen:
            continue
        chosen.add(job_id)
        expired.append(job_id)
        # An estimate: the job's own files, counted once (shared ones may stay).
        for ref in (*shas.split(), key, *journal.variant_keys(job_id)):
            if ref and ref in sizes:
                freed += sizes.pop(ref)
    return expired


def sweep(
    root: Path,
    scan: StoreScan,
    expired: list[str],
    expired_refs: set[str],
    remaining: tuple[set[str], set[str], set[str]],
    config: RetentionConfig,
    now: float,
) -> Sweep:
    """Remove the expired jobs' directories and the files no remaining job refers to.

    ``remaining`` is (job ids, upload hashes, mesh keys) of the jobs left in the journal
    once the expired ones are gone; ``expired_refs`` the hashes and keys the expired ones
    referred to. A file younger than ``grace_s`` stays whatever refers to it; a file
    that nothing ever referred to goes once it is older than the TTL.
    """
    job_ids, uploads, keys = remaining
    orphan_age = config.ttl_s
    files = removed_bytes = 0
    for f in scan.files:
        age = now - f.mtime
        if f.ref in (uploads if f.kind == "upload" else keys) or age < config.grace_s:
            continue
        if f.ref not in expired_refs and (orphan_age is None or age < orphan_age):
            continue
        try:
            f.path.unlink()
        except FileNotFoundError:
            continue
        files += 1
        removed_bytes += f.size_bytes
    gone = set(expired)
    if orphan_age is not None:
        gone |= {
            job_id
            for job_id, mtime in scan.job_dirs.items()
            if job_id not in job_ids and now - mtime >= max(orphan_age, config.grace_s)
        }
    jobs = 0
    for job_id in gone - job_ids:
        path = root / "jobs" / job_id
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            jobs += 1
    for path, (mtime, members) in scan.batches.items():
        if now - mtime >= config.grace_s and not members & job_ids:  # its jobs are all gone
            path.unlink(missing_ok=True)
            files += 1
    for path, (mtime, sha) in scan.image_indexes.items():
        if now - mtime < config.grace_s:  # being written beside its upload
            continue
        if sha is None or not (root / "uploads" / sha[:2] / sha).is_file():
            path.unlink(missing_ok=True)
            files += 1
    return Sweep(jobs=jobs, files=files, bytes=removed_bytes)
