"""The robustification job store (SQLite, stdlib ``sqlite3``).

One row per job: owner (hash of the bearer token), status, the submitted
request (JSON), progress (JSON), queries used, the budget, an error message,
the number of sessions that ran it and a cancel flag. Statuses::

    queued ─► running ─► completed | failed | cancelled
       ▲         │
       └─────────┘  (service restarted: running jobs are queued again and resume
                     from their checkpoint)

Every write is one autocommitted statement under a lock, with WAL journaling,
so a crash never leaves a half-updated row; a new job's quota check and insert
share one immediate transaction (exact quotas across processes).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from typing import Any

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    queries_used INTEGER NOT NULL DEFAULT 0,
    query_budget INTEGER NOT NULL,
    error TEXT,
    sessions INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT
)
"""


class JobStore:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._execute_when_free("PRAGMA journal_mode=WAL")
            os.chmod(self.path, 0o600)  # holds the target endpoints' API keys
        self._execute_when_free(_SCHEMA)

    def _execute_when_free(self, sql: str, wait_s: float = 30.0) -> None:
        """Run a set-up statement, retrying while another process sets the same file up.

        SQLite answers "database is locked" at once, without its busy handler, when two
        connections switch a new file to WAL together (it would otherwise deadlock).
        """
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            try:
                self._db.execute(sql)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(0.2, delay * 2)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        d = dict(row)
        d["request"] = json.loads(d["request"])
        d["progress"] = json.loads(d["progress"])
        d["result"] = json.loads(d["result"]) if d["result"] else None
        d["cancel_requested"] = bool(d["cancel_requested"])
        return d

    def create(self, owner: str, request: dict, query_budget: int, *, quota: int | None = None) -> dict | None:
        """A new queued job; None (nothing written) when it would take ``owner`` past ``quota``.

        The quota check and the insert run in one immediate transaction, so
        services sharing the database never commit more than the quota.
        """
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if quota is not None and self._reserved(owner) + int(query_budget) > quota:
                    self._db.execute("ROLLBACK")
                    return None
                self._db.execute("INSERT INTO jobs (id, owner, status, request, created, updated, query_budget) "
                                 "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                                 (job_id, owner, json.dumps(request), now, now, int(query_budget)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            return self._row(self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, owner: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE owner = ? ORDER BY created", (owner,)).fetchall()
        return [self._row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        allowed = {"status", "progress", "queries_used", "error", "sessions", "cancel_requested", "result"}
        bad = set(fields) - allowed
        if bad:
            raise KeyError(f"cannot update {', '.join(sorted(bad))}")
        for k in ("progress", "result"):
            if k in fields and not isinstance(fields[k], str):
                fields[k] = json.dumps(fields[k])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols}, updated = ? WHERE id = ?",
                             (*fields.values(), time.time(), job_id))

    def requeue_interrupted(self) -> int:
        """Jobs left ``running`` by a stopped or crashed service go back to ``queued``."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET status = 'queued', updated = ? WHERE status = 'running'",
                                   (time.time(),))
            return cur.rowcount

    def claim_next(self) -> dict | None:
        """The oldest queued job, marked ``running`` (one more session)."""
        with self._lock:
            row = self._db.execute("SELECT id FROM jobs WHERE status = 'queued' AND cancel_requested = 0 "
                                   "ORDER BY created LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE jobs SET status = 'running', sessions = sessions + 1, updated = ? "
                             "WHERE id = ?", (time.time(), row["id"]))
        return self.get(row["id"])

    def request_cancel(self, job_id: str) -> dict:
        """Queued jobs are cancelled at once; running ones when the worker next checks."""
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), job_id))
            self._db.execute("UPDATE jobs SET status = 'cancelled', updated = ? WHERE id = ? AND status = 'queued'",
                             (time.time(), job_id))
        return self.get(job_id)

    def reserved(self, owner: str) -> int:
        """Queries an owner has committed: the whole budget of active jobs, what finished jobs used."""
        with self._lock:
            return self._reserved(owner)

    def _reserved(self, owner: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN query_budget "
            "ELSE queries_used END), 0) FROM jobs WHERE owner = ?", (owner,)).fetchone()
        return int(row[0])
