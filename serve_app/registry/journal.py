"""JobJournal: every job's latest state in SQLite, so a restarted registry comes back with it.

One row per job, upserted on every change that matters (a new job, a claimed run, a retry,
an end), with the record as JSON plus the columns retention queries on. WAL mode with
``synchronous=NORMAL``: a commit survives a crash of the process that made it (the registry
actor being killed), and costs a fraction of a millisecond on a local disk.

The journal is written by one process (the registry actor); other processes may read it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

from serve_app.contracts.jobs import ACTIVE_STATUSES
from serve_app.registry.jobs import JobRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")

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

#: The variant ids of each journaled job (its ``variants`` object's keys), for retention.
_VARIANTS = "SELECT jobs.job_id, v.key FROM jobs, json_each(jobs.data, '$.variants') AS v"

#: ``status NOT IN (?, ?)``: a job without an active run, the statuses bound as parameters.
_ENDED = f"status NOT IN ({', '.join('?' for _ in ACTIVE_STATUSES)})"
_ACTIVE_PARAMS = tuple(str(s) for s in sorted(ACTIVE_STATUSES))


#: A record as one JSON document and back: the dataclass's own fields, nested as they are.
_RECORD = TypeAdapter(JobRecord)


def encode_record(record: JobRecord) -> str:
    """``record`` as one JSON document."""
    return _RECORD.dump_json(record).decode()


def decode_record(text: str) -> JobRecord:
    """The record ``encode_record`` wrote; unknown fields are ignored, missing ones take
    their defaults, and a document that does not fit the record raises ``ValueError``."""
    return _RECORD.validate_json(text)


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
                " ".join(r.upload.hashes()) if r.upload else "",
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
        """(job_id, upload hashes, artifact key) of jobs without an active run, oldest first;
        the hashes are the photo's then its views', separated by spaces."""
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
                refs.update(row[0].split())
                refs.update(r for r in row[1:] if r)
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
                uploads.update(sha.split())  # the photo's hash, then its views'
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


class Remembered(Generic[T]):
    """A backend an ingress replica hands the registry, its names journaled under ``key``
    so that a restarted registry finds it again (``find`` makes it from the names)."""

    def __init__(
        self, ledger: Ledger, key: str, find: Callable[[dict[str, str]], T | None]
    ) -> None:
        self.held: T | None = None
        self._ledger = ledger
        self._key = key
        self._find = find

    def attach(self, backend: T, names: dict[str, str] | None) -> None:
        """Use ``backend`` from now on (and after a restart, if it has ``names``)."""
        self.held = backend
        if names is not None:
            self._ledger.set_meta(self._key, names)

    def get(self) -> T | None:
        """The attached backend, or the one the journal names (after a restart)."""
        if self.held is None:
            names: dict[str, str] | None = self._ledger.get_meta(self._key)
            if names:
                self.held = self._find(names)
        return self.held
