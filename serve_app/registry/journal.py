"""JobJournal: every job's latest state in SQLite, so a restarted registry comes back with it.

One row per job, upserted on every change that matters (a new job, a claimed run, a retry,
an end), with the record as JSON plus the columns retention queries on. WAL mode with
``synchronous=NORMAL``: a commit survives a crash of the process that made it (the registry
actor being killed), and costs a fraction of a millisecond on a local disk.

The journal is written by one process (the registry actor); other processes may read it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from serve_app.contracts.jobs import ACTIVE_STATUSES, JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, StoredImage, UploadInfo
from serve_app.contracts.stages import RunPlan, Stage
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantInfo
from serve_app.registry.jobs import JobRecord

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    upload_sha256 TEXT NOT NULL,
    artifact_key TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status_time ON jobs (status, updated_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: Fields with their own codec; every other JSON-safe field of JobRecord is kept as is.
_SPECIAL = {"status", "stage", "upload", "request", "result", "plan", "text", "image", "variants"}
#: The variant ids of each journaled job (its ``variants`` object's keys), for retention.
_VARIANTS = "SELECT jobs.job_id, v.key FROM jobs, json_each(jobs.data, '$.variants') AS v"

#: ``status NOT IN (?, ?)``: a job without an active run, the statuses bound as parameters.
_ENDED = f"status NOT IN ({', '.join('?' for _ in ACTIVE_STATUSES)})"
_ACTIVE_PARAMS = tuple(str(s) for s in sorted(ACTIVE_STATUSES))


def encode_record(record: JobRecord) -> str:
    """``record`` as one JSON document (fields that are not JSON-safe are left out)."""
    data: dict[str, Any] = {
        "status": str(record.status),
        "stage": str(record.stage) if record.stage else None,
        "upload": dataclasses.asdict(record.upload) if record.upload else None,
        "request": _encode_request(record.request),
        "result": dataclasses.asdict(record.result) if record.result else None,
        "plan": str(record.plan),
        "text": record.text.model_dump(mode="json") if record.text else None,
        "image": _encode_image(record.image),
        "variants": {k: dataclasses.asdict(v) for k, v in record.variants.items()},
    }
    for f in dataclasses.fields(record):
        if f.name in _SPECIAL:
            continue
        value = getattr(record, f.name)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        data[f.name] = value
    return json.dumps(data, separators=(",", ":"))


def decode_record(text: str) -> JobRecord:
    """The record ``encode_record`` wrote; unknown or mistyped fields keep their defaults."""
    data = json.loads(text)
    upload = data.get("upload")
    record = JobRecord(job_id=str(data["job_id"]), upload=UploadInfo(**upload) if upload else None)
    record.status = JobStatus(data["status"])
    record.stage = Stage(data["stage"]) if data.get("stage") else None
    record.request = _decode_request(data.get("request"))
    record.plan = RunPlan(data.get("plan") or RunPlan.MODEL)
    record.text = TextToImageParams.model_validate(data["text"]) if data.get("text") else None
    record.image = _decode_image(data.get("image"))
    result = data.get("result")
    if result:
        result["formats"] = tuple(result.get("formats", ()))
        record.result = RunResult(**result)
    record.variants = _decode_variants(data.get("variants"))
    for f in dataclasses.fields(record):
        if f.name in _SPECIAL or f.name == "job_id" or f.name not in data:
            continue
        value, default = data[f.name], getattr(record, f.name)
        if default is None or value is None or isinstance(value, type(default)):
            setattr(record, f.name, value)
        elif isinstance(default, float) and isinstance(value, int):
            setattr(record, f.name, float(value))
    return record


def _decode_variants(data: Any) -> dict[str, VariantInfo]:
    """A record's variants; an entry that cannot be read is left out (logged)."""
    variants: dict[str, VariantInfo] = {}
    for key, value in (data or {}).items() if isinstance(data, dict) else ():
        try:
            variants[str(key)] = VariantInfo(**value)
        except TypeError as exc:
            logger.warning("skipping an unreadable variant %s: %s", key, exc)
    return variants


def _encode_request(request: RunRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {
        "params": request.params.model_dump(mode="json"),
        "format": request.format,
        "generator": request.generator,
    }


def _decode_request(data: dict[str, Any] | None) -> RunRequest | None:
    if not data:
        return None
    return RunRequest(
        params=GenerationParams.model_validate(data["params"]),
        format=data["format"],
        generator=data["generator"],
    )


def _encode_image(image: StoredImage | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        "key": image.key,
        "upload": dataclasses.asdict(image.upload),
        "params": image.params.model_dump(mode="json"),
        "model_version": image.model_version,
        "cached": image.cached,
        "seconds": image.seconds,
    }


def _decode_image(data: dict[str, Any] | None) -> StoredImage | None:
    if not data:
        return None
    return StoredImage(
        key=str(data["key"]),
        upload=UploadInfo(**data["upload"]),
        params=TextToImageParams.model_validate(data["params"]),
        model_version=str(data["model_version"]),
        cached=bool(data["cached"]),
        seconds=float(data["seconds"]),
    )


class JobJournal:
    """The SQLite file at ``path`` (created with its directory if missing)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self.writes = 0
        self.write_seconds = 0.0

    def close(self) -> None:
        self._db.close()

    # -- jobs ----------------------------------------------------------------------------

    def save(self, *records: JobRecord) -> None:
        """Upsert ``records`` in one transaction."""
        if not records:
            return
        start = time.perf_counter()
        rows = [
            (
                r.job_id,
                str(r.status),
                r.updated_at,
                r.upload.sha256 if r.upload else "",
                r.result.artifact_key if r.result else None,
                encode_record(r),
            )
            for r in records
        ]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO jobs (job_id, status, updated_at, upload_sha256, artifact_key, data)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET"
                " status=excluded.status, updated_at=excluded.updated_at,"
                " upload_sha256=excluded.upload_sha256, artifact_key=excluded.artifact_key,"
                " data=excluded.data",
                rows,
            )
        self.writes += 1
        self.write_seconds += time.perf_counter() - start

    def load(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._decode(row[0]) if row else None

    def load_all(self) -> list[JobRecord]:
        """Every journaled job, oldest first (unreadable rows are skipped).

        An upsert keeps a row's rowid, so rowid order is the order jobs were created in.
        """
        rows = self._db.execute("SELECT data FROM jobs ORDER BY rowid").fetchall()
        return [r for r in (self._decode(row[0]) for row in rows) if r is not None]

    def delete(self, job_ids: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM jobs WHERE job_id = ?", [(j,) for j in job_ids])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    # -- what retention asks -------------------------------------------------------------

    def ended_before(self, cutoff: float) -> list[str]:
        """Ids of jobs without an active run, unchanged since ``cutoff``, oldest first."""
        rows = self._db.execute(
            f"SELECT job_id FROM jobs WHERE {_ENDED} AND updated_at < ? ORDER BY updated_at",
            (*_ACTIVE_PARAMS, cutoff),
        ).fetchall()
        return [row[0] for row in rows]

    def ended_oldest_first(self) -> Iterator[tuple[str, str, str | None]]:
        """(job_id, upload sha256, artifact key) of jobs without an active run, oldest first."""
        yield from self._db.execute(
            f"SELECT job_id, upload_sha256, artifact_key FROM jobs WHERE {_ENDED}"
            " ORDER BY updated_at",
            _ACTIVE_PARAMS,
        ).fetchall()

    def refs_of(self, job_ids: Iterable[str]) -> set[str]:
        """The upload hashes and mesh keys (their models' and their variants') the given
        jobs refer to."""
        refs: set[str] = set()
        for job_id in job_ids:
            row = self._db.execute(
                "SELECT upload_sha256, artifact_key FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row:
                refs.update(r for r in row if r)
            refs.update(self.variant_keys(job_id))
        return refs

    def variant_keys(self, job_id: str) -> list[str]:
        """The ids (store keys) of a journaled job's variants."""
        rows = self._db.execute(f"{_VARIANTS} WHERE jobs.job_id = ?", (job_id,)).fetchall()
        return [row[1] for row in rows]

    def job_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT job_id FROM jobs")}

    def references(self) -> tuple[set[str], set[str]]:
        """(upload hashes, mesh keys) that some journaled job still refers to; the mesh
        keys are the jobs' models and their variants."""
        uploads: set[str] = set()
        keys: set[str] = set()
        for sha, key in self._db.execute("SELECT upload_sha256, artifact_key FROM jobs"):
            if sha:
                uploads.add(sha)
            if key:
                keys.add(key)
        keys.update(row[1] for row in self._db.execute(_VARIANTS))
        return uploads, keys

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _decode(self, text: str) -> JobRecord | None:
        try:
            return decode_record(text)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping an unreadable journal row: %s", exc)
            return None


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class Ledger:
    """The journal as the registry's parts use it: a failed write or read is logged, not
    raised (the service keeps serving; the log says which jobs are at risk), and a
    redeploy may move it to another file.
    """

    def __init__(self, path: Path) -> None:
        self.journal = JobJournal(path)

    @property
    def path(self) -> Path:
        return self.journal.path

    def save(self, *records: JobRecord) -> None:
        try:
            self.journal.save(*records)
        except sqlite3.Error:
            logger.exception("could not journal jobs %s", [r.job_id for r in records])

    def load(self, job_id: str) -> JobRecord | None:
        try:
            return self.journal.load(job_id)
        except sqlite3.Error:
            logger.exception("could not read job %s from the journal", job_id)
            return None

    def get_meta(self, key: str) -> Any:
        try:
            return self.journal.get_meta(key)
        except sqlite3.Error:
            logger.exception("could not read %s from the journal", key)
            return None

    def set_meta(self, key: str, value: Any) -> None:
        try:
            if self.journal.get_meta(key) != value:
                self.journal.set_meta(key, value)
        except sqlite3.Error:
            logger.exception("could not journal %s", key)

    def move_to(self, path: Path) -> list[JobRecord]:
        """Switch to the journal at ``path``; return the jobs it holds (none if unchanged)."""
        if path == self.journal.path:
            return []
        self.journal.close()
        self.journal = JobJournal(path)
        return self.journal.load_all()
