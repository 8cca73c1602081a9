"""The SQLite store: one transaction per cycle, incremental writes, the outbox, bad files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watcher.detect import Memory, Rules, detect
from watcher.snapshot import JobState, RegionOutcome, Snapshot
from watcher.store import SCHEMA_VERSION, StateError, Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def snap(*jobs: JobState, complete: bool = True) -> Snapshot:
    outcome = RegionOutcome("cn-hangzhou", error=None if complete else "boom")
    return Snapshot.of(jobs, [outcome], NOW)


def job(job_id: str, **fields: object) -> JobState:
    values: dict[str, object] = {"status": "Synchronizing", "delay_seconds": 1, **fields}
    return JobState("cn-hangzhou", job_id, "Forward", f"name {job_id}", **values)  # type: ignore[arg-type]


def test_a_committed_cycle_is_what_the_next_process_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    baseline, memory = store.load()
    detection = detect(baseline, snap(job("a"), job("b", delay_seconds=90)), memory, Rules(), NOW)
    store.commit(detection, "dts")
    store.close()

    reopened = Store.open(path)
    baseline, memory = reopened.load()
    assert baseline.jobs == detection.baseline.jobs
    assert memory == detection.memory
    assert memory.jobs[job("b").key].delay_level == "warning"
    assert [e.id for e in reopened.pending()] == [e.id for e in detection.events]
    assert reopened.pending()[0].subject == "dts.job.cn-hangzhou.a.discovered"


def test_nothing_is_announced_twice_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    baseline, memory = store.load()
    first = detect(baseline, snap(job("a", status="Failed")), memory, Rules(), NOW)
    assert [e.kind for e in first.events] == ["discovered", "status_changed"]
    store.commit(first, "dts")
    store.close()
    store = Store.open(path)
    baseline, memory = store.load()
    again = detect(baseline, snap(job("a", status="Failed")), memory, Rules(), NOW)
    assert again.events == []


def test_only_changed_jobs_are_rewritten(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    jobs = [job(f"j{i}") for i in range(50)]
    first = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    store.commit(first, "dts")
    changes: list[str] = []
    store._db.set_trace_callback(changes.append)
    jobs[7] = job("j7", status="Failed")
    second = detect(first.baseline, snap(*jobs), first.memory, Rules(), NOW)
    store.commit(second, "dts")
    upserts = [c for c in changes if c.startswith("INSERT INTO jobs")]
    assert len(upserts) == 1 and "j7" in upserts[0]


def test_the_outbox_keeps_order_and_forgets_only_what_was_acknowledged(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    detection = detect(baseline, snap(*(job(f"j{i}") for i in range(5))), memory, Rules(), NOW)
    store.commit(detection, "dts")
    pending = store.pending()
    assert [p.seq for p in pending] == sorted(p.seq for p in pending)
    store.acknowledge([pending[0].seq, pending[2].seq])
    assert [p.id for p in store.pending()] == [pending[i].id for i in (1, 3, 4)]
    assert store.outbox_depth() == 3


def test_a_failed_commit_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    detection = detect(baseline, snap(job("a")), memory, Rules(), NOW)
    store._db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.DatabaseError):
        store.commit(detection, "dts")
    store._db.execute("DROP TRIGGER boom")
    fresh = Store.open(tmp_path / "state.db")
    assert fresh.load()[0].jobs == {} and fresh.outbox_depth() == 0


def test_a_corrupt_file_is_a_clear_error_with_a_recovery_path(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    with pytest.raises(StateError, match="move the file aside"):
        Store.open(path)


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StateError, match="not a dts-watcher state file"):
        Store.open(path)


def test_state_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(StateError, match="newer dts-watcher"):
        Store.open(path)


def test_unreadable_rows_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    store.commit(detect(None, snap(job("a")), Memory(), Rules(), NOW), "dts")
    store._db.execute("UPDATE jobs SET state = '{not json'")
    with pytest.raises(StateError, match="unreadable data"):
        Store.open(path).load()
