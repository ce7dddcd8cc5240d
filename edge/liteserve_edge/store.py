"""Durable device-side state in one SQLite file: the offline escalation queue and the outcome of every escalation
(edge-vs-cloud agreement records, rejections). Survives process restarts; safe for several processes on one file."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = str | int

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY,            -- JSON text of the key, so that 7 and "7" stay different keys
    x TEXT NOT NULL,                 -- JSON list of the instance's features
    edge_class INTEGER NOT NULL,
    edge_confidence REAL NOT NULL,
    edge_model TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS outcomes (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,            -- 'refined' (the cloud answered) or 'rejected' (a 4xx; never retried)
    via TEXT NOT NULL,               -- 'online' (answered in predict) or 'replay' (answered by flush)
    edge_model TEXT NOT NULL,
    edge_class INTEGER NOT NULL,
    edge_confidence REAL NOT NULL,
    cloud_model TEXT NOT NULL,
    cloud_class INTEGER,
    cloud_confidence REAL,
    error TEXT,
    x TEXT,                          -- kept for rejected instances only, so that they can be queued again
    recorded_at REAL NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outcomes_recorded ON outcomes (recorded_at);
"""


@dataclass(frozen=True)
class Pending:
    """One queued escalation."""

    key: Key
    x: list[float]
    edge_class: int
    edge_confidence: float
    edge_model: str
    enqueued_at: float
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Outcome:
    """What became of one escalation: the cloud's answer next to the edge's, or the rejection."""

    key: Key
    status: str
    via: str
    edge_model: str
    edge_class: int
    edge_confidence: float
    cloud_model: str
    cloud_class: int | None
    cloud_confidence: float | None
    error: str | None
    recorded_at: float

    @property
    def agree(self) -> bool | None:
        """Whether edge and cloud chose the same class (None when the cloud did not answer)."""
        return None if self.cloud_class is None else self.cloud_class == self.edge_class

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready keyed record (the cloud's answer is the edge model's free label)."""
        return {
            "key": self.key,
            "status": self.status,
            "via": self.via,
            "edge_model": self.edge_model,
            "edge_class_id": self.edge_class,
            "edge_confidence": self.edge_confidence,
            "cloud_model": self.cloud_model,
            "cloud_class_id": self.cloud_class,
            "cloud_confidence": self.cloud_confidence,
            "agree": self.agree,
            "error": self.error,
            "recorded_at": self.recorded_at,
        }


def encode_key(key: Key) -> str:
    """The stored form of a key."""
    return json.dumps(key)


def decode_key(text: str) -> Key:
    """The key back from its stored form."""
    return json.loads(text)


class Store:
    """The SQLite file. Every write is one transaction, so a crash leaves either the old or the new state."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write lock up front).
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable on power loss, which devices do suffer
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---------------------------------------------------------------- queue
    def enqueue(self, items: Iterable[tuple[Key, Sequence[float], int, float]], edge_model: str) -> int:
        """Queue (key, x, edge class, edge confidence) items; a key already queued keeps its first entry.

        Returns how many were newly queued.
        """
        now = time.time()
        rows = [
            (encode_key(k), json.dumps([float(v) for v in x]), int(c), float(p), edge_model, now)
            for k, x, c, p in items
        ]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO pending (key, x, edge_class, edge_confidence, edge_model, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def pending(self, limit: int | None = None) -> list[Pending]:
        """Queued escalations, oldest first."""
        sql = "SELECT key, x, edge_class, edge_confidence, edge_model, enqueued_at, attempts, last_error FROM pending "
        sql += "ORDER BY enqueued_at, rowid" + (" LIMIT ?" if limit is not None else "")
        cur = self._db.execute(sql, (limit,) if limit is not None else ())
        return [Pending(decode_key(r[0]), json.loads(r[1]), *r[2:]) for r in cur]

    def pending_count(self) -> int:
        """How many escalations wait in the queue."""
        return self._db.execute("SELECT count(*) FROM pending").fetchone()[0]

    def note_failure(self, keys: Sequence[Key], error: str) -> None:
        """Count a failed replay attempt on queued keys."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE key = ?",
                [(error, encode_key(k)) for k in keys],
            )

    # ---------------------------------------------------------------- outcomes
    def record(self, outcomes: Sequence[Outcome], x: dict[Key, Sequence[float]] | None = None) -> list[Outcome]:
        """Record outcomes, removing their keys from the queue in the same transaction.

        A replayed outcome ('replay') is recorded only if its key was still queued, so that two flushes racing on
        the same file (or a crash between the cloud's answer and the commit) report each key exactly once.
        Returns the outcomes that were recorded.
        """
        kept = []
        with self._transaction() as db:
            for o in outcomes:
                k = encode_key(o.key)
                removed = db.execute("DELETE FROM pending WHERE key = ?", (k,)).rowcount
                if o.via == "replay" and not removed:
                    continue
                stored_x = json.dumps(list(x[o.key])) if x is not None and o.status == "rejected" else None
                db.execute(
                    "INSERT OR REPLACE INTO outcomes (key, status, via, edge_model, edge_class, edge_confidence, "
                    "cloud_model, cloud_class, cloud_confidence, error, x, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        k, o.status, o.via, o.edge_model, o.edge_class, o.edge_confidence,
                        o.cloud_model, o.cloud_class, o.cloud_confidence, o.error, stored_x, o.recorded_at,
                    ),
                )  # fmt: skip
                kept.append(o)
        return kept

    def outcomes(
        self, status: str | None = None, since: float | None = None, unreported: bool = False
    ) -> list[Outcome]:
        """Recorded outcomes, oldest first, optionally filtered."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if since is not None:
            where.append("recorded_at >= ?")
            args.append(since)
        if unreported:
            where.append("reported = 0")
        sql = (
            "SELECT key, status, via, edge_model, edge_class, edge_confidence, cloud_model, cloud_class, "
            "cloud_confidence, error, recorded_at FROM outcomes"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY recorded_at, rowid"
        )
        return [Outcome(decode_key(r[0]), *r[1:]) for r in self._db.execute(sql, args)]

    def mark_reported(self, keys: Sequence[Key]) -> None:
        """Flag outcomes as delivered to the evaluation, so that the next report holds only new ones."""
        with self._transaction() as db:
            db.executemany("UPDATE outcomes SET reported = 1 WHERE key = ?", [(encode_key(k),) for k in keys])

    def requeue_rejected(self) -> int:
        """Put rejected escalations back into the queue (after the cause was fixed). Returns how many."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key, x, edge_class, edge_confidence, edge_model FROM outcomes "
                "WHERE status = 'rejected' AND x IS NOT NULL"
            ).fetchall()
            now = time.time()
            db.executemany(
                "INSERT OR IGNORE INTO pending (key, x, edge_class, edge_confidence, edge_model, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*r, now) for r in rows],
            )
            db.execute("DELETE FROM outcomes WHERE status = 'rejected' AND x IS NOT NULL")
        return len(rows)
