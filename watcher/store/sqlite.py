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
    dead_letters(seq, id, subject, payload, reason, at)
                                     events JetStream refused for good, set aside (added
                                     to older files on open: no schema change)

One process at a time: opening takes an exclusive lock beside the file (`lock.py`).
A failure of the file while running is told apart (`failures.py`): one that may pass
(disk full, read-only) from one that makes the file unusable (corrupt, deleted).

Only what changed is written: the store remembers what it last loaded or committed and
compares by identity first (unchanged jobs are the very same objects), then by value.
A job's heavy, seldom-moving parts (`snapshot.BODY_FIELDS`) live in a table of their
own, rewritten only when they changed (`codec.py` says why). A job whose live fields
alone moved (`watcher.live`: its delay, checkpoint, throughput; every running job's, at
every poll) while its rule memory stayed the same is not rewritten: the rules judge
those afresh at each poll, so a saved row whose delay is a few polls old makes the next
poll after a crash judged as if the polls in between had not been read (as after an
incomplete listing), and a clean stop writes them (`save_live`, from `close`; `saved.py`
keeps the books). Older schemas are migrated on open, in one transaction. How rows are
encoded is `codec.py`'s business, the outbox rows' `outbox.py`'s.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from watcher import __version__
from watcher.detect import Detection
from watcher.errors import StateError, StateUnusable
from watcher.events import Event
from watcher.live import same_but_live
from watcher.logs import get_logger
from watcher.rules import JobMemory, Memory
from watcher.snapshot import JobKey, JobState, Snapshot
from watcher.store import codec, failures, outbox
from watcher.store.codec import SCHEMA_VERSION
from watcher.store.failures import RECOVERY, FileIdentity
from watcher.store.lock import StateLock
from watcher.store.outbox import DeadLetter, OutboxEntry
from watcher.store.saved import SavedRows, Written
from watcher.store.sql import NotOurs, insert_rows, schema_version, set_memory, transaction
from watcher.wire import Wire

_T = TypeVar("_T")
log = get_logger("watcher.store")


class Store:
    def __init__(
        self,
        connection: sqlite3.Connection,
        reader: sqlite3.Connection,
        path: Path,
        lock: StateLock | None = None,
    ) -> None:
        self.path = path
        self.wire = Wire()  # how events become outbox payloads (limits, endpoint details)
        self._state_lock = lock
        self._identity = FileIdentity.of(path)
        self._db = connection
        self._lock = threading.Lock()  # calls may come from worker threads, one at a time
        # The outbox is read through a connection of its own: in WAL mode it sees what
        # was committed last without waiting for a transaction under way (a storm's).
        self._reader = reader
        self._read_lock = threading.Lock()
        self._saved = SavedRows()  # what each job's row holds, and which are behind
        self._cycle = 0
        self._loaded = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (or create) the state file, locked for this process; StateError (exit 2)
        if it is in use, read-only, unreadable, or of a schema this version cannot use."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state folder {path.parent}: {exc.strerror}"
            ) from None
        lock = StateLock.take(path)
        try:
            db = cls._connect(path)
            reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            reader.execute("PRAGMA query_only=1")
            return cls(db, reader, path, lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            version = schema_version(db)
            if version is None:
                with transaction(db):
                    for statement in codec.SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
        except NotOurs as exc:
            raise StateError(f"state file {path} is unreadable ({exc}); {RECOVERY}") from None
        except sqlite3.Error as exc:
            raise failures.at_open(path, exc) from None
        if version is not None and version > SCHEMA_VERSION:
            db.close()
            raise StateError(
                f"state file {path} was written by a newer dts-watcher (schema {version}, "
                f"this is {__version__} with schema {SCHEMA_VERSION}); upgrade, or {RECOVERY}"
            )
        if version is not None and version < SCHEMA_VERSION:
            try:
                with transaction(db):
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
        try:
            db.execute(codec.DEAD_LETTERS)  # a table older files lack (no schema change)
            _try_a_write(db)
        except sqlite3.Error as exc:
            db.close()
            raise failures.at_open(path, exc) from None
        return db

    def close(self) -> None:
        """Write what only moved in live fields (`save_live`), then let go of the file."""
        try:
            self.save_live()
        except (StateError, sqlite3.Error) as exc:  # a failing file: what is saved stays
            log.warning("state.live_not_saved", jobs=len(self._saved.unsaved), reason=str(exc))
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None

    def _guard(self, doing: str, call: Callable[[], _T]) -> _T:
        """`call()`, its SQLite failures as StateWriteError or StateUnusable."""
        try:
            return call()
        except sqlite3.Error as exc:
            raise failures.while_running(self.path, exc, doing) from None

    def check_file(self) -> None:
        """StateUnusable if the state file was deleted or replaced since it was opened."""
        self._identity.check()

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
            except sqlite3.Error as exc:
                raise failures.while_running(self.path, exc, "read") from None
            except (ValueError, TypeError, KeyError) as exc:
                raise StateUnusable(
                    f"state file {self.path} holds unreadable data ({type(exc).__name__}: "
                    f"{exc}); {RECOVERY}"
                ) from None
            self._saved.reset(jobs)
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
            keys = {k for k in owners[a:b] if k is not None}  # gone ones: deleted with it
            if n < len(bounds):
                self._write(keys, jobs, memory, events[a:b], subject_prefix, None)
            else:
                keys |= self._saved.changed(jobs, memory)
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
        keys = {key for key, (job, mem) in jobs.items() if self._saved.differs(key, job, mem)}
        keys.update(k for e in events if (k := outbox.owner(e)) is not None and k in jobs)
        if not keys and not events:
            return False
        states = {key: job for key, (job, _) in jobs.items()}
        memory = {key: mem for key, (_, mem) in jobs.items() if mem is not None}
        self._write(keys, states, memory, events, subject_prefix, None)
        return True

    def save_live(self) -> int:
        """Write the jobs whose saved rows hold older live fields (`SavedRows.unsaved`),
        in one transaction; how many. `close` calls it: after a clean stop, the state holds
        every job as last seen."""
        keys, states, memory = self._saved.live_rows()
        if keys:
            self._write(keys, states, memory, (), "", None, whole=True)
        return len(keys)

    def _write(
        self,
        keys: set[JobKey],
        jobs: Mapping[JobKey, JobState],
        memory: Mapping[JobKey, JobMemory],
        events: Sequence[Event],
        prefix: str,
        cycle: int | None,
        *,
        whole: bool = False,
    ) -> None:
        """One transaction: the rows of `keys` as in `jobs` and `memory` (not in `jobs`:
        deleted), `events` into the outbox, and the cycle number if given. A job whose
        saved state differs in live fields alone gets its memory written, not its state
        (unless `whole`): a stall being timed moves its memory at every poll."""
        upserts: list[Written] = []
        memories: list[Written] = []  # the state as saved, but for live fields
        bodies: list[tuple[JobKey, JobState]] = []  # new jobs, and those whose body moved
        gone: list[JobKey] = []
        for key in keys:
            job = jobs.get(key)
            if job is None:
                gone.append(key)
                continue
            old = self._saved.jobs.get(key)
            if old is not None and not whole and same_but_live(old[0], job):
                memories.append((key, job, memory.get(key)))
                continue
            upserts.append((key, job, memory.get(key)))
            if old is None or not (old[0] is job or old[0].same_body(job)):
                bodies.append((key, job))
        self.check_file()
        rows = (upserts, memories, bodies, gone)
        self._guard("save to", lambda: self._save_rows(*rows, events, prefix, cycle))
        self._saved.written(upserts, gone, memories)  # what the next comparison starts from
        if cycle is not None:
            self._cycle = cycle

    def _save_rows(
        self,
        upserts: list[Written],
        memories: list[Written],
        bodies: list[tuple[JobKey, JobState]],
        gone: list[JobKey],
        events: Sequence[Event],
        prefix: str,
        cycle: int | None,
    ) -> None:
        with self._lock, transaction(self._db):
            if gone:
                deletes = [(key.encode(),) for key in gone]
                self._db.executemany("DELETE FROM jobs WHERE key = ?", deletes)
                self._db.executemany("DELETE FROM bodies WHERE key = ?", deletes)
            # Rows are serialized as SQLite takes them: lists of them all would double
            # the memory a 10,000-job storm peaks at.
            insert_rows(
                self._db,
                "INSERT INTO jobs(key, state, memory)",
                "ON CONFLICT(key) DO UPDATE SET state = excluded.state, memory = excluded.memory",
                (
                    (key.encode(), codec.head_text(job), codec.memory_text(mem))
                    for key, job, mem in upserts
                ),
            )
            set_memory(self._db, ((key.encode(), codec.memory_text(m)) for key, _, m in memories))
            insert_rows(
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

    # -- outbox ----------------------------------------------------------------------------

    def add_events(self, events: Sequence[Event], subject_prefix: str) -> None:
        """Queue events that are not part of a cycle (the watcher's own)."""
        self.check_file()

        def add() -> None:
            with self._lock, transaction(self._db):
                self._insert_events(events, subject_prefix)

        self._guard("save to", add)

    def _insert_events(self, events: Iterable[Event], prefix: str) -> None:
        insert_rows(
            self._db,
            "INSERT OR IGNORE INTO outbox(id, subject, payload)",
            "",
            outbox.rows(events, prefix, self.wire),
        )

    def pending(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry]:
        """The oldest unacknowledged events (past seq `after`), in the order they were
        produced."""
        with self._read_lock:
            return self._guard("read the outbox of", lambda: self._pending(limit, after))

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
            return self._guard("read the outbox of", lambda: self._pending(limit, after))
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

        def delete() -> None:
            with self._lock, transaction(self._db):
                self._db.executemany(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", outbox.runs(sorted(set(seqs)))
                )

        self._guard("record acknowledgements in", delete)

    def dead_letter(self, seq: int, reason: str) -> None:
        """Move an outbox entry JetStream refused for good to `dead_letters`, with why."""
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")

        def move() -> None:
            with self._lock, transaction(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO dead_letters(seq, id, subject, payload, reason, at) "
                    "SELECT seq, id, subject, payload, ?, ? FROM outbox WHERE seq = ?",
                    (reason, at, seq),
                )
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

        self._guard("set an event aside in", move)

    def dead_letters(self) -> list[DeadLetter]:
        """Events set aside, oldest first (`sqlite3 <state> 'SELECT * FROM dead_letters'`)."""

        def read() -> list[DeadLetter]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, id, subject, payload, reason, at FROM dead_letters ORDER BY seq"
                ).fetchall()
            return [DeadLetter(s, i, sub, bytes(p), r, a) for s, i, sub, p, r, a in rows]

        return self._guard("read", read)

    def outbox_depth(self) -> int:
        return self._count("outbox")

    def dead_letter_count(self) -> int:
        return self._count("dead_letters")

    def _count(self, table: str) -> int:
        def count() -> int:
            with self._lock:
                (n,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608
            return int(n)

        return self._guard("read", count)

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())


def _try_a_write(db: sqlite3.Connection) -> None:
    """Write, and roll back: SQLite opens a file it may not write read-only without a
    word, and only the first real write would say so (in the middle of a cycle)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
    finally:
        db.execute("ROLLBACK")
