"""The watcher's memory on disk: baseline, rule memory and outbox, in one SQLite file.

Why one file, and each job's new state in the same transaction as its events: the
events and the state that produced them must be saved together (a transactional outbox).
If the process dies before the commit, the next run sees the old state and detects the
same changes again; if it dies after, the events wait in the outbox and are published on
the next start. Either way nothing is lost, and JetStream's duplicate window (the event
id is the Nats-Msg-Id) absorbs a re-publish of an event whose ack we never saw. A cycle
is usually one transaction; a storm is several (`commit_steps`), and with events page by
page each page that changed something is one (`save_page`).

Layout (schema version 3):
    meta(key, value)                 schema_version, cycle, taken_at, writer
    jobs(key, state, memory)         the baseline: last known state + rule memory per job
    bodies(key, body)                the heavy rest of each job's state (see below)
    outbox(seq, id, subject, payload) events not yet acknowledged by JetStream, in order

Only what changed is written: the store remembers what it last loaded or committed and
compares by identity first (unchanged jobs are the very same objects), then by value.
A job's heavy, seldom-moving parts (`snapshot.BODY_FIELDS`) live in a table of their
own, rewritten only when they changed (`codec.py` says why). Older schemas are migrated
on open, in one transaction. How rows are encoded is `codec.py`'s business, the outbox
rows' `outbox.py`'s.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from watcher import __version__
from watcher.detect import Detection
from watcher.errors import StateError
from watcher.events import Event
from watcher.rules import JobMemory, Memory
from watcher.snapshot import JobKey, JobState, Snapshot
from watcher.store import codec, outbox
from watcher.store.codec import SCHEMA_VERSION
from watcher.store.outbox import OutboxEntry

RECOVERY = (
    "to start afresh, move the file aside (every job will then be announced as discovered "
    "again, and events still in its outbox are lost), or restore it from a backup"
)


class Store:
    def __init__(
        self, connection: sqlite3.Connection, reader: sqlite3.Connection, path: Path
    ) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()  # calls may come from worker threads, one at a time
        # The outbox is read through a connection of its own: in WAL mode it sees what
        # was committed last without waiting for a transaction under way (a storm's).
        self._reader = reader
        self._read_lock = threading.Lock()
        self._jobs: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
        self._cycle = 0
        self._loaded = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state folder {path.parent}: {exc.strerror}"
            ) from None
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            version = _schema_version(db)
            if version is None:
                with _transaction(db):
                    for statement in codec.SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
        except (sqlite3.DatabaseError, _NotOurs) as exc:
            raise StateError(f"state file {path} is unreadable ({exc}); {RECOVERY}") from None
        if version is not None and version > SCHEMA_VERSION:
            db.close()
            raise StateError(
                f"state file {path} was written by a newer dts-watcher (schema {version}, "
                f"this is {__version__} with schema {SCHEMA_VERSION}); upgrade, or {RECOVERY}"
            )
        if version is not None and version < SCHEMA_VERSION:
            try:
                with _transaction(db):
                    codec.migrate(db, version)
            except LookupError:
                db.close()
                raise StateError(
                    f"state file {path} has the old schema {version} and no migration exists; "
                    f"{RECOVERY}"
                ) from None
            except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
                db.close()
                raise StateError(
                    f"state file {path} could not be migrated from schema {version} "
                    f"({type(exc).__name__}: {exc}); {RECOVERY}"
                ) from None
        reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        reader.execute("PRAGMA query_only=1")
        return cls(db, reader, path)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- baseline and memory ---------------------------------------------------------------

    def load(self) -> tuple[Snapshot, Memory]:
        """The baseline and rule memory as last committed (empty on a fresh file)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT key, state, body, memory FROM jobs JOIN bodies USING (key)"
                ).fetchall()
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
                jobs: dict[JobKey, tuple[JobState, JobMemory | None]] = {}
                for key, state, body, memory in rows:
                    jobs[JobKey.decode(key)] = (
                        codec.decode_job(state, body),
                        codec.decode_memory_text(memory),
                    )
            except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
                raise StateError(
                    f"state file {self.path} holds unreadable data ({type(exc).__name__}: "
                    f"{exc}); {RECOVERY}"
                ) from None
            self._jobs = jobs
            self._cycle = int(meta.get("cycle", 0))
            self._loaded = True
        baseline = Snapshot(jobs={k: j for k, (j, _) in jobs.items()})
        memory = Memory(cycle=self._cycle, jobs={k: m for k, (_, m) in jobs.items() if m})
        return baseline, memory

    def commit_steps(
        self, detection: Detection, subject_prefix: str, chunk: int = 1000
    ) -> Iterator[int]:
        """Save the new baseline, memory and the cycle's events, in transactions of about
        `chunk` events each (the first, a tenth of that); after each one, yield how many
        events are saved so far.

        What must be atomic is a job's new state with the events it caused: if the
        process dies between two transactions, the jobs saved have their events in the
        outbox, and the others still have their old state, so the next run detects their
        changes again. Chunks let the publisher start on the first events of a storm
        while the rest are being written. A job's events are never split; the last
        transaction carries every remaining change and the cycle number.
        """
        if not self._loaded:
            self.load()
        jobs, memory = detection.baseline.jobs, detection.memory.jobs
        events = detection.events
        owners = [outbox.owner(e) for e in events]
        bounds = outbox.chunks(owners, max(1, chunk), first=max(1, chunk // 10))
        for n, (a, b) in enumerate(bounds, start=1):
            if n < len(bounds):
                keys = {k for k in owners[a:b] if k is not None}
                self._write(keys, jobs, memory, events[a:b], subject_prefix, None)
            else:
                keys = self._changed(jobs, memory)
                self._write(keys, jobs, memory, events[a:b], subject_prefix, detection.memory.cycle)
            yield b

    def save_page(
        self,
        jobs: Mapping[JobKey, tuple[JobState, JobMemory | None]],
        events: Sequence[Event],
        subject_prefix: str,
    ) -> bool:
        """Save jobs judged from one page of the listing under way, with the events they
        caused, in one transaction (`poll.emit = "page"`); False if nothing changed."""
        if not self._loaded:
            self.load()
        keys = {key for key, (job, mem) in jobs.items() if self._differs(key, job, mem)}
        if not keys and not events:
            return False
        states = {key: job for key, (job, _) in jobs.items()}
        memory = {key: mem for key, (_, mem) in jobs.items() if mem is not None}
        self._write(keys, states, memory, events, subject_prefix, None)
        return True

    def _changed(
        self, jobs: Mapping[JobKey, JobState], memory: Mapping[JobKey, JobMemory]
    ) -> set[JobKey]:
        """Keys whose row differs from what is saved: new, changed, or gone."""
        changed = {key for key, job in jobs.items() if self._differs(key, job, memory.get(key))}
        changed.update(self._jobs.keys() - jobs.keys())
        return changed

    def _differs(self, key: JobKey, job: JobState, memory: JobMemory | None) -> bool:
        """Whether the saved row of `key` is not this job with this memory (compared by
        identity first: an unchanged job is the very same object)."""
        old = self._jobs.get(key)
        return old is None or not (old[0] is job or old[0] == job) or old[1] != memory

    def _write(
        self,
        keys: set[JobKey],
        jobs: Mapping[JobKey, JobState],
        memory: Mapping[JobKey, JobMemory],
        events: Sequence[Event],
        prefix: str,
        cycle: int | None,
    ) -> None:
        """One transaction: the rows of `keys` as in `jobs` and `memory` (not in `jobs`:
        deleted), `events` into the outbox, and the cycle number if given."""
        upserts: list[tuple[JobKey, JobState, JobMemory | None]] = []
        bodies: list[tuple[JobKey, JobState]] = []  # new jobs, and those whose body moved
        gone: list[JobKey] = []
        for key in keys:
            job = jobs.get(key)
            if job is None:
                gone.append(key)
                continue
            upserts.append((key, job, memory.get(key)))
            old = self._jobs.get(key)
            if old is None or not (old[0] is job or old[0].same_body(job)):
                bodies.append((key, job))
        with self._lock, _transaction(self._db):
            if gone:
                deletes = [(key.encode(),) for key in gone]
                self._db.executemany("DELETE FROM jobs WHERE key = ?", deletes)
                self._db.executemany("DELETE FROM bodies WHERE key = ?", deletes)
            # Rows are serialized as SQLite takes them: lists of them all would double
            # the memory a 10,000-job storm peaks at.
            _insert_rows(
                self._db,
                "INSERT INTO jobs(key, state, memory)",
                "ON CONFLICT(key) DO UPDATE SET state = excluded.state, memory = excluded.memory",
                (
                    (key.encode(), codec.head_text(job), codec.memory_text(mem))
                    for key, job, mem in upserts
                ),
            )
            _insert_rows(
                self._db,
                "INSERT INTO bodies(key, body)",
                "ON CONFLICT(key) DO UPDATE SET body = excluded.body",
                ((key.encode(), codec.body_text(job)) for key, job in bodies),
            )
            self._insert_events(events, prefix)
            if cycle is not None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('cycle', ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value",
                    (str(cycle),),
                )
        # Saved: what the next comparison starts from.
        for key, job, mem in upserts:
            self._jobs[key] = (job, mem)
        for key in gone:
            self._jobs.pop(key, None)
        if cycle is not None:
            self._cycle = cycle

    # -- outbox ----------------------------------------------------------------------------

    def add_events(self, events: Sequence[Event], subject_prefix: str) -> None:
        """Queue events that are not part of a cycle (the watcher's own)."""
        with self._lock, _transaction(self._db):
            self._insert_events(events, subject_prefix)

    def _insert_events(self, events: Iterable[Event], prefix: str) -> None:
        _insert_rows(
            self._db,
            "INSERT OR IGNORE INTO outbox(id, subject, payload)",
            "",
            outbox.rows(events, prefix),
        )

    def pending(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry]:
        """The oldest unacknowledged events (past seq `after`), in the order they were
        produced."""
        with self._read_lock:
            return self._pending(limit, after)

    def pending_nowait(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry] | None:
        """`pending`, or None at once if another thread is reading the outbox.

        A read of a thousand entries takes a few milliseconds: the publisher does it on
        the event loop's own thread rather than in a worker thread, where fetching row by
        row would wait for the interpreter lock once per row while the loop is busy
        (docs/performance.md). Reads do not wait for commits (their own connection); if
        another thread is reading, the caller falls back to a worker thread instead of
        blocking the loop.
        """
        if not self._read_lock.acquire(blocking=False):
            return None
        try:
            return self._pending(limit, after)
        finally:
            self._read_lock.release()

    def _pending(self, limit: int, after: int) -> list[OutboxEntry]:
        rows = self._reader.execute(
            "SELECT seq, id, subject, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [
            OutboxEntry(seq, id_, subject, bytes(payload)) for seq, id_, subject, payload in rows
        ]

    def acknowledge(self, seqs: Sequence[int]) -> None:
        """Forget events JetStream has acknowledged.

        One statement per run of consecutive seqs (a whole batch, usually): a statement
        per event would hand the interpreter lock back and forth once per event.
        """
        if not seqs:
            return
        with self._lock, _transaction(self._db):
            self._db.executemany(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", outbox.runs(sorted(set(seqs)))
            )

    def outbox_depth(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())


_ROWS_PER_STATEMENT = 100


def _insert_rows(
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


@functools.lru_cache(maxsize=64)
def _statement(head: str, tail: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)} {tail}"


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


class _NotOurs(Exception):
    """A readable SQLite file that is not a dts-watcher state file."""


def _schema_version(db: sqlite3.Connection) -> int | None:
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            raise _NotOurs("an SQLite database, but not a dts-watcher state file")
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise _NotOurs("no schema version recorded")
    return int(row[0])
