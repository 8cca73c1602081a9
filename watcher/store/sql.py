"""SQL the store is made of: transactions that survive a failed commit, rows inserted a
hundred per statement, and the schema version of a file (or that it is not ours)."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterable
from typing import Any

_ROWS_PER_STATEMENT = 100


def insert_rows(
    db: sqlite3.Connection, head: str, tail: str, rows: Iterable[tuple[Any, ...]]
) -> None:
    """`head VALUES (...), (...), ... tail`, up to `_ROWS_PER_STATEMENT` rows a statement.

    `executemany` runs one statement per row, and the sqlite3 module lets go of the
    interpreter lock for each: while the event loop is busy publishing (a storm), every
    row then waits for the lock to come back. A hundred rows a statement: a hundred times
    fewer waits (docs/performance.md).
    """
    params: list[Any] = []
    width = 0
    for row in rows:
        width = len(row)
        params.extend(row)
        if len(params) == width * _ROWS_PER_STATEMENT:
            db.execute(_statement(head, tail, width, _ROWS_PER_STATEMENT), params)
            params = []
    if params:
        db.execute(_statement(head, tail, width, len(params) // width), params)


def set_memory(db: sqlite3.Connection, rows: Iterable[tuple[str, str | None]]) -> None:
    """Set the rule memory of existing job rows ((key, memory) pairs): a hundred a
    statement (`UPDATE ... FROM`, SQLite 3.33 and later), else one by one."""
    if sqlite3.sqlite_version_info >= (3, 33):
        insert_rows(
            db,
            "UPDATE jobs SET memory = v.column2 FROM (",
            ") AS v WHERE jobs.key = v.column1",
            rows,
        )
    else:  # pragma: no cover - SQLite older than 3.33 (2020)
        db.executemany("UPDATE jobs SET memory = ? WHERE key = ?", ((m, k) for k, m in rows))


@functools.lru_cache(maxsize=64)
def _statement(head: str, tail: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)} {tail}"


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (or a failed COMMIT: a
    full disk fails the commit, and the transaction must not stay open after it)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # SQLite may have rolled back already (after SQLITE_FULL, say); the error that
        # brought us here is the one to report, not the rollback's.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


class NotOurs(Exception):
    """A readable SQLite file that is not a dts-watcher state file."""


def schema_version(db: sqlite3.Connection) -> int | None:
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            raise NotOurs("an SQLite database, but not a dts-watcher state file")
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise NotOurs("no schema version recorded")
    return int(row[0])
