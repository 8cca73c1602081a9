"""The state file, read only: for `dts-watcher status`, beside a running watcher.

The file is opened read-only (`mode=ro`; `PRAGMA query_only`) and read in one read
transaction: in WAL mode a reader neither waits for the watcher's writes nor holds them
up, and it sees the last committed cycle as a whole. It never creates, migrates or
changes anything: a file of another schema version is refused with the reason (start
the watcher of this version once, which migrates it).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from watcher.errors import StateError
from watcher.rules import JobMemory, Memory
from watcher.snapshot import JobKey, JobState, Snapshot
from watcher.store import codec
from watcher.store.codec import SCHEMA_VERSION


def read_state(path: Path) -> tuple[Snapshot, Memory]:
    """The baseline and rule memory as last committed; StateError when unusable."""
    if not path.is_file():
        raise StateError(f"no state file at {path}: has the watcher run with this state path?")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"state file {path} cannot be opened ({exc})") from None
    try:
        db.execute("PRAGMA query_only=1")
        db.execute("BEGIN")  # one snapshot of the file, whatever the watcher commits meanwhile
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", -1))
        if version != SCHEMA_VERSION:
            raise StateError(
                f"state file {path} has schema {version}, this version reads schema "
                f"{SCHEMA_VERSION}: run this version's watcher on it once (it migrates the "
                "file), or use the dts-watcher that wrote it"
            )
        rows = db.execute(
            "SELECT key, state, body, memory FROM jobs JOIN bodies USING (key)"
        ).fetchall()
        jobs: dict[JobKey, JobState] = {}
        memory: dict[JobKey, JobMemory] = {}
        for key, state, body, mem in rows:
            job_key = JobKey.decode(key)
            jobs[job_key] = codec.decode_job(state, body)
            decoded = codec.decode_memory_text(mem)
            if decoded:
                memory[job_key] = decoded
        db.execute("COMMIT")
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
        raise StateError(
            f"state file {path} cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        db.close()
    return Snapshot(jobs=jobs), Memory(cycle=int(meta.get("cycle", 0)), jobs=memory)
