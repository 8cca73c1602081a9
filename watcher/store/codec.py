"""The store's codec: how a job's state and rule memory become rows, and back.

A job is two JSON texts: its *head* (what moves from one poll to the next: status,
delay, stages) in `jobs.state`, and its *body* (`snapshot.BODY_FIELDS`: precheck,
endpoints, tags, objects, times, 90% of its bytes) in `bodies.body`, rewritten only when
it changed: SQLite rewrites a whole row, overflow pages included, to update one column,
so a storm that moves 10,000 statuses writes a tenth of the bytes. Rule memory is the
flat object `JobMemory.to_dict()` gives, in `jobs.memory` (NULL when blank).

Rows are keyed by `JobKey.encode()` (schema 3), which round-trips any account, region,
id and direction. `migrate` brings older files up to date, one step at a time: schema 1
kept the whole job in `jobs.state`; schema 2 keyed rows `region/id/direction`, which a
"/" in an id or direction could not survive.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from watcher import fastjson
from watcher.rules import JobMemory, decode_memory
from watcher.sharing import shared
from watcher.snapshot import JobKey, JobState

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, memory TEXT);
CREATE TABLE IF NOT EXISTS bodies (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""
# Events JetStream refused for good, set aside with the reason (watcher.publish). Created
# on open when missing: older files gain it without a schema change, and older versions
# opening a file that has it simply ignore it.
DEAD_LETTERS = """
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
)
"""


def head_text(job: JobState) -> str:
    return fastjson.dumps_text(job.head_dict())


def body_text(job: JobState) -> str:
    return fastjson.dumps_text(job.body_dict())


def memory_text(memory: JobMemory | None) -> str | None:
    return fastjson.dumps_text(memory.to_dict()) if memory else None


def decode_job(head: str, body: str) -> JobState:
    """Raises ValueError, TypeError or KeyError for rows that are not a job."""
    return shared(JobState.from_dict({**json.loads(head), **json.loads(body)}))


def decode_memory_text(text: str | None) -> JobMemory | None:
    if not text:
        return None
    data: Any = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("rule memory is not a JSON object")
    return decode_memory(data) or None


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a file of schema `version` up to `SCHEMA_VERSION`, inside the caller's
    transaction; raises LookupError when no migration exists from it."""
    while version < SCHEMA_VERSION:
        step = _STEPS.get(version)
        if step is None:
            raise LookupError(f"no migration from schema {version}")
        step(db)
        version += 1
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _from_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept the whole job in `jobs.state`: move each job's body to `bodies`."""
    db.execute("CREATE TABLE bodies (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
    rows = db.execute("SELECT key, state FROM jobs").fetchall()
    for key, state in rows:
        job = JobState.from_dict(json.loads(state))
        db.execute("UPDATE jobs SET state = ? WHERE key = ?", (head_text(job), key))
        db.execute("INSERT INTO bodies VALUES (?, ?)", (key, body_text(job)))


def _from_2(db: sqlite3.Connection) -> None:
    """Schema 2 keyed rows `region/id/direction`: key them by `JobKey.encode()`."""
    for table in ("jobs", "bodies"):
        keys = [key for (key,) in db.execute(f"SELECT key FROM {table}")]  # noqa: S608
        for key in keys:
            new = JobKey.parse_legacy(key).encode()
            db.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (new, key))  # noqa: S608


_STEPS = {1: _from_1, 2: _from_2}
