"""Webhook subscriptions and deliveries, kept in the registry's journal (SQLite).

A subscription says: when this job's run (or this batch) ends, POST its final status to
``url``. When it ends, the subscription becomes a delivery in one transaction, so a
registry that stops at any moment either still holds the subscription (and finds the
end again when it restarts) or holds the pending delivery (and sends it): at least once.
Every attempt is recorded with the delivery, which is what ``GET .../deliveries`` shows.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, target_id)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_target ON webhook_deliveries (kind, target_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_state ON webhook_deliveries (state);
"""


class TargetKind(StrEnum):
    """What a webhook reports the end of."""

    JOB = "job"
    BATCH = "batch"


class DeliveryState(StrEnum):
    """``pending`` until a 2xx (``delivered``) or until it is given up (``failed``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class BatchMember:
    """One entry of a batch: its job (None: refused, no job) and why it was refused."""

    index: int
    job_id: str | None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Subscription:
    """POST the end of ``target_id`` (a job's run ``run``, or a batch) to ``url``, signed
    with the secret of ``key_id`` (the service's without keys)."""

    kind: TargetKind
    target_id: str
    url: str
    key_id: str | None = None
    run: int = 0
    members: tuple[BatchMember, ...] = ()
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Attempt:
    """One try: when, the receiver's status (None: no answer) or what went wrong."""

    at: float
    status_code: int | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class Delivery:
    """A final status to POST: ``body`` (JSON bytes, signed as sent) and its attempts."""

    delivery_id: str
    kind: TargetKind
    target_id: str
    run: int
    event: str
    url: str
    key_id: str | None
    body: bytes
    created_at: float
    give_up_at: float
    state: DeliveryState = DeliveryState.PENDING
    next_try_at: float | None = None
    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def of(
        cls, subscription: Subscription, event: str, body: bytes, now: float, retry_for_s: float
    ) -> Delivery:
        return cls(
            delivery_id=uuid.uuid4().hex,
            kind=subscription.kind,
            target_id=subscription.target_id,
            run=subscription.run,
            event=event,
            url=subscription.url,
            key_id=subscription.key_id,
            body=body,
            created_at=now,
            give_up_at=now + retry_for_s,
            next_try_at=now,
        )

    def after(self, attempt: Attempt, next_try_at: float | None, final: bool = False) -> Delivery:
        """This delivery with ``attempt`` recorded: delivered on a 2xx, else retried at
        ``next_try_at`` unless that is past its time (or ``final``), then failed."""
        attempts = (*self.attempts, attempt)
        code = attempt.status_code
        if code is not None and 200 <= code < 300:
            return replace(self, attempts=attempts, state=DeliveryState.DELIVERED, next_try_at=None)
        if final or next_try_at is None or next_try_at > self.give_up_at:
            return replace(self, attempts=attempts, state=DeliveryState.FAILED, next_try_at=None)
        return replace(self, attempts=attempts, next_try_at=next_try_at)


def _encode_subscription(s: Subscription) -> str:
    data = asdict(s)
    return json.dumps(data, separators=(",", ":"))


def _decode_subscription(text: str) -> Subscription:
    data = json.loads(text)
    members = tuple(BatchMember(**m) for m in data.pop("members", ()))
    return Subscription(**{**data, "kind": TargetKind(data["kind"]), "members": members})


def _encode_delivery(d: Delivery) -> str:
    data = asdict(d)
    data["body"] = d.body.decode("utf-8")
    return json.dumps(data, separators=(",", ":"))


def _decode_delivery(text: str) -> Delivery:
    data = json.loads(text)
    return Delivery(
        **{
            **data,
            "kind": TargetKind(data["kind"]),
            "state": DeliveryState(data["state"]),
            "body": data["body"].encode("utf-8"),
            "attempts": tuple(Attempt(**a) for a in data.get("attempts", ())),
        }
    )


class DeliveryStore:
    """Subscriptions and deliveries in the tables of the journal file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def subscribe(self, subscription: Subscription) -> None:
        """Keep ``subscription`` (it replaces one of the same target)."""
        self._db.execute(
            "INSERT INTO webhook_subscriptions (kind, target_id, data) VALUES (?, ?, ?)"
            " ON CONFLICT (kind, target_id) DO UPDATE SET data=excluded.data",
            (str(subscription.kind), subscription.target_id, _encode_subscription(subscription)),
        )

    def subscriptions(self) -> list[Subscription]:
        rows = self._db.execute("SELECT data FROM webhook_subscriptions ORDER BY rowid")
        return [_decode_subscription(row[0]) for row in rows.fetchall()]

    def fire(self, subscription: Subscription, delivery: Delivery) -> None:
        """The subscription's target ended: its delivery replaces it, in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "DELETE FROM webhook_subscriptions WHERE kind = ? AND target_id = ?",
                (str(subscription.kind), subscription.target_id),
            )
            self._put(delivery)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def save(self, delivery: Delivery) -> None:
        self._put(delivery)

    def pending(self) -> list[Delivery]:
        rows = self._db.execute(
            "SELECT data FROM webhook_deliveries WHERE state = ? ORDER BY rowid",
            (str(DeliveryState.PENDING),),
        )
        return [_decode_delivery(row[0]) for row in rows.fetchall()]

    def of_target(self, kind: TargetKind, target_id: str) -> list[Delivery]:
        """The target's deliveries, oldest first."""
        rows = self._db.execute(
            "SELECT data FROM webhook_deliveries WHERE kind = ? AND target_id = ? ORDER BY rowid",
            (str(kind), target_id),
        )
        return [_decode_delivery(row[0]) for row in rows.fetchall()]

    def forget(self, kind: TargetKind, target_ids: list[str]) -> None:
        """Drop the subscriptions and finished deliveries of targets that are gone."""
        rows = [(str(kind), t) for t in target_ids]
        self._db.executemany(
            "DELETE FROM webhook_subscriptions WHERE kind = ? AND target_id = ?", rows
        )
        self._db.executemany(
            "DELETE FROM webhook_deliveries"
            " WHERE kind = ? AND target_id = ? AND state != 'pending'",
            rows,
        )

    def _put(self, delivery: Delivery) -> None:
        self._db.execute(
            "INSERT INTO webhook_deliveries (delivery_id, kind, target_id, state, data)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET"
            " state=excluded.state, data=excluded.data",
            (
                delivery.delivery_id,
                str(delivery.kind),
                delivery.target_id,
                str(delivery.state),
                _encode_delivery(delivery),
            ),
        )
