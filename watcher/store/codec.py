"""The store's codec: how a job's state and rule memory become rows, and back.

A job is two JSON texts: its *head* (what moves from one poll to the next: status,
delay, stages) in `jobs.state`, and its *body* (`snapshot.BODY_FIELDS`: precheck,
endpoints, tags, objects, times, 90% of its bytes) in `bodies.body`, rewritten only when
it changed: SQLite rewrites a whole row, overflow pages included, to update one column,
so a storm that moves 10,000 statuses writes a tenth of the bytes. Rule memory is the
flat object `JobMemory.to_dict()` gives, in `jobs.memory` (NULL when blank).

Schema 1 kept the whole job in `jobs.state`; `migrate_from_1` moves each body out.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from watcher import fastjson
from watcher.rules import JobMemory, decode_memory
from watcher.snapshot import JobState

SCHEMA_VERSION = 2
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


def head_text(job: JobState) -> str:
    return fastjson.dumps_text(job.head_dict())


def body_text(job: JobState) -> str:
    return fastjson.dumps_text(job.body_dict())


def memory_text(memory: JobMemory | None) -> str | None:
    return fastjson.dumps_text(memory.to_dict()) if memory else None


def decode_job(head: str, body: str) -> JobState:
    """Raises ValueError, TypeError or KeyError for rows that are not a job."""
    return JobState.from_dict({**json.loads(head), **json.loads(body)})


def decode_memory_text(text: str | None) -> JobMemory | None:
    if not text:
        return None
    data: Any = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("rule memory is not a JSON object")
    return decode_memory(data) or None


def migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept the whole job in `jobs.state`: move each job's body to `bodies`.
    Runs inside the caller's transaction."""
    db.execute("CREATE TABLE bodies (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
    rows = db.execute("SELECT key, state FROM jobs").fetchall()
    for key, state in rows:
        job = JobState.from_dict(json.loads(state))
        db.execute("UPDATE jobs SET state = ? WHERE key = ?", (head_text(job), key))
        db.execute("INSERT INTO bodies VALUES (?, ?)", (key, body_text(job)))
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
