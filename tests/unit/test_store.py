"""The SQLite store: each job's state with its events, incremental writes, chunked storms,
the outbox, schema migration, bad files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.watcher import commit
from watcher.detect import Memory, Rules, detect
from watcher.snapshot import JobKey, JobState, Precheck, PrecheckItem, RegionOutcome, Snapshot
from watcher.store import SCHEMA_VERSION, StateError, Store
from watcher.store.outbox import chunks

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def snap(*jobs: JobState, complete: bool = True) -> Snapshot:
    accounts = {"default"} | {j.account for j in jobs}  # every shard the jobs are in
    error = None if complete else "boom"
    outcomes = [RegionOutcome("cn-hangzhou", error=error, account=a) for a in sorted(accounts)]
    return Snapshot.of(jobs, outcomes, NOW)


def job(job_id: str, **fields: object) -> JobState:
    values: dict[str, object] = {"status": "Synchronizing", "delay_seconds": 1, **fields}
    return JobState("cn-hangzhou", job_id, "Forward", f"name {job_id}", **values)  # type: ignore[arg-type]


def test_a_committed_cycle_is_what_the_next_process_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    baseline, memory = store.load()
    detection = detect(baseline, snap(job("a"), job("b", delay_seconds=90)), memory, Rules(), NOW)
    commit(store, detection, "dts")
    store.close()

    with Store.open(path) as reopened:
        baseline, memory = reopened.load()
        assert baseline.jobs == detection.baseline.jobs
        assert memory == detection.memory
        assert memory.jobs[job("b").key].to_dict()["delay_level"] == "warning"
        assert [e.id for e in reopened.pending()] == [e.id for e in detection.events]
        assert reopened.pending()[0].subject == "dts.job.cn-hangzhou.a.discovered"


def test_nothing_is_announced_twice_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    baseline, memory = store.load()
    first = detect(baseline, snap(job("a", status="Failed")), memory, Rules(), NOW)
    assert [e.kind for e in first.events] == ["discovered", "status_changed"]
    commit(store, first, "dts")
    store.close()
    with Store.open(path) as store:
        baseline, memory = store.load()
    again = detect(baseline, snap(job("a", status="Failed")), memory, Rules(), NOW)
    assert again.events == []


def test_only_changed_jobs_are_rewritten(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    jobs = [job(f"j{i}") for i in range(50)]
    first = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    commit(store, first, "dts")
    changes: list[str] = []
    store._db.set_trace_callback(changes.append)
    jobs[7] = job("j7", status="Failed")
    second = detect(first.baseline, snap(*jobs), first.memory, Rules(), NOW)
    commit(store, second, "dts")
    upserts = [c for c in changes if c.startswith("INSERT INTO jobs")]
    assert len(upserts) == 1 and "j7" in upserts[0]
    store.close()


def test_a_status_change_leaves_the_heavy_body_alone(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    precheck = Precheck("Success", 100.0, (PrecheckItem("CHECK_CONN", "Success"),))
    jobs = [job(f"j{i}", precheck=precheck) for i in range(3)]
    first = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    commit(store, first, "dts")
    changes: list[str] = []
    store._db.set_trace_callback(changes.append)
    failed = Precheck("Failed", 100.0, (PrecheckItem("CHECK_CONN", "Failed", "refused"),))
    jobs[0] = job("j0", precheck=precheck, status="Failed")  # equal body, new objects
    jobs[1] = job("j1", precheck=failed)
    second = detect(first.baseline, snap(*jobs), first.memory, Rules(), NOW)
    commit(store, second, "dts")
    (rows,) = [c for c in changes if c.startswith("INSERT INTO jobs")]
    assert "j0" in rows and "j1" in rows and "j2" not in rows
    (bodies,) = [c for c in changes if c.startswith("INSERT INTO bodies")]
    assert "j1" in bodies and "refused" in bodies and "j0" not in bodies
    store.close()
    with Store.open(tmp_path / "state.db") as reopened:
        assert reopened.load()[0].jobs == second.baseline.jobs


def test_a_storm_is_saved_in_chunks_each_job_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    baseline, memory = store.load()
    jobs = [job(f"j{i}") for i in range(10)]
    first = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    commit(store, first, "dts")
    store.acknowledge([p.seq for p in store.pending()])
    # Every job fails (status_changed); j3's precheck fails too (a second event); j9 is
    # missing (no event yet, but its memory counts the absence).
    failed = [job(f"j{i}", status="Failed") for i in range(10)]
    refused = Precheck("Failed", 100.0, (PrecheckItem("CHECK_CONN", "Failed", "refused"),))
    failed[3] = job("j3", status="PrecheckFailed", precheck=refused)
    storm = detect(first.baseline, snap(*failed[:9]), first.memory, Rules(), NOW)  # j9 gone
    assert len(storm.events) == 10
    steps = store.commit_steps(storm, "dts", chunk=3)
    saved = [next(steps)]
    # Now, as after a crash: a fresh process sees the first chunk's jobs and events only
    # (the files as they are on disk now, opened apart: the store holds its lock).
    with Store.open(files_as_they_are(path, tmp_path / "crashed.db")) as crashed:
        after_crash, _ = crashed.load()
        in_outbox = {p.subject.split(".")[3] for p in crashed.pending()}
        assert crashed.meta()["cycle"] == "1"
    moved = {k.job_id for k, j in after_crash.jobs.items() if j != first.baseline.jobs[k]}
    assert in_outbox == moved and 0 < len(moved) < 9
    saved += list(steps)
    assert saved[-1] == 10 and saved == sorted(saved) and len(saved) >= 3
    store.close()
    # No job's events were split across transactions; the whole cycle is saved at last.
    with Store.open(path) as reopened:
        loaded, loaded_memory = reopened.load()
        assert loaded.jobs == storm.baseline.jobs and loaded_memory == storm.memory
        assert [p.id for p in reopened.pending()] == [e.id for e in storm.events]


def files_as_they_are(path: Path, to: Path) -> Path:
    """A copy of a state file and its WAL as they are on disk right now (what a process
    started after a crash here would find)."""
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            shutil.copyfile(source, to.with_name(to.name + suffix))
    return to


def test_chunks_never_split_a_jobs_events() -> None:

    def cut(owners: str, size: int, first: int) -> list[str]:
        keys = [JobKey("r", o, "Forward") for o in owners]
        return [owners[a:b] for a, b in chunks(keys, size, first)]

    assert cut("aaabccde", 2, first=2) == ["aaa", "bcc", "de"]
    assert cut("aaabccde", 3, first=1) == ["aaa", "bcc", "de"]
    assert cut("bccde", 2, first=1) == ["b", "cc", "de"]
    assert cut("", 5, first=1) == [""]
    assert cut("aaabccde", 100, first=10) == ["aaabccde"]


def _write_schema_1(path: Path, jobs: list[JobState], cycle: int) -> None:
    """A state file as dts-watcher 0.1 wrote it: the whole job in jobs.state, next to its
    rule memory."""
    memory = detect(None, snap(*jobs), Memory(), Rules(), NOW).memory.jobs
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, memory TEXT);
            CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                subject TEXT NOT NULL, payload BLOB NOT NULL
            );
            INSERT INTO meta VALUES ('schema_version', '1');
            """
        )
        db.execute("INSERT INTO meta VALUES ('cycle', ?)", (str(cycle),))
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?)",
            [
                (str(j.key), json.dumps(j.to_dict()), json.dumps(m.to_dict()) if m else None)
                for j in jobs
                for m in [memory.get(j.key)]
            ],
        )
        db.execute("INSERT INTO outbox(id, subject, payload) VALUES ('e1', 'dts.x', X'7B7D')")


def test_a_schema_1_file_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    precheck = Precheck("Failed", 50.0, (PrecheckItem("CHECK_CONN", "Failed", "refused"),))
    jobs = [job("a", precheck=precheck, tags=(("env", "prod"),)), job("b/with/slashes")]
    _write_schema_1(path, jobs, cycle=7)
    store = Store.open(path)
    baseline, memory = store.load()
    assert baseline.jobs == {j.key: j for j in jobs}
    assert memory.cycle == 7 and memory.jobs == {jobs[0].key: memory.jobs[jobs[0].key]}
    assert [p.id for p in store.pending()] == ["e1"]
    assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
    # and it goes on working: nothing changed, nothing announced; a change is.
    again = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    assert again.events == []
    moved = [job("a", precheck=precheck, tags=(("env", "prod"),), status="Failed"), jobs[1]]
    changed = detect(baseline, snap(*moved), memory, Rules(), NOW)
    assert [e.kind for e in changed.events] == ["status_changed"]
    commit(store, changed, "dts")
    store.close()
    with Store.open(path) as reopened:
        assert reopened.load()[0].jobs == {j.key: j for j in moved}


def test_a_schema_1_file_that_cannot_be_migrated_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _write_schema_1(path, [job("a")], cycle=1)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET state = '{not json'")
    with pytest.raises(StateError, match="could not be migrated from schema 1"):
        Store.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "1",
        )
        assert db.execute("SELECT state FROM jobs").fetchone() == ("{not json",)


def test_many_rows_go_in_statements_of_a_hundred_and_all_arrive(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    jobs = [job(f"j{i:03}", status="Failed") for i in range(250)]
    detection = detect(baseline, snap(*jobs), memory, Rules(), NOW)
    changes: list[str] = []
    store._db.set_trace_callback(changes.append)
    commit(store, detection, "dts", chunk=10_000)
    outbox = [c for c in changes if c.startswith("INSERT OR IGNORE INTO outbox")]
    assert len(outbox) == 5  # 500 events (discovered, status_changed)
    assert [
        len([c for c in changes if c.startswith(f"INSERT INTO {t}")]) for t in ("jobs", "bodies")
    ] == [3, 3]
    store.close()
    with Store.open(tmp_path / "state.db") as reopened:
        assert reopened.load()[0].jobs == detection.baseline.jobs
        assert [p.id for p in reopened.pending(1000)] == [e.id for e in detection.events]


def test_the_outbox_keeps_order_and_forgets_only_what_was_acknowledged(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    detection = detect(baseline, snap(*(job(f"j{i}") for i in range(5))), memory, Rules(), NOW)
    commit(store, detection, "dts")
    pending = store.pending()
    assert [p.seq for p in pending] == sorted(p.seq for p in pending)
    store.acknowledge([pending[0].seq, pending[2].seq])
    assert [p.id for p in store.pending()] == [pending[i].id for i in (1, 3, 4)]
    assert store.outbox_depth() == 3
    store.close()


def test_a_failed_commit_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    baseline, memory = store.load()
    detection = detect(baseline, snap(job("a")), memory, Rules(), NOW)
    store._db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(StateError, match="disk full"):
        commit(store, detection, "dts")
    store._db.execute("DROP TRIGGER boom")
    store.close()
    with Store.open(tmp_path / "state.db") as fresh:
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
    commit(store, detect(None, snap(job("a")), Memory(), Rules(), NOW), "dts")
    store._db.execute("UPDATE jobs SET state = '{not json'")
    store.close()
    with Store.open(path) as reopened, pytest.raises(StateError, match="unreadable data"):
        reopened.load()


def test_a_schema_2_file_is_rekeyed_so_any_key_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as store:  # today's schema, then written back as schema 2 was
        commit(store, detect(None, snap(job("a/b")), Memory(), Rules(), NOW), "dts")
    with sqlite3.connect(path) as db:
        for table in ("jobs", "bodies"):
            db.execute(f"UPDATE {table} SET key = ?", ("cn-hangzhou/a/b/Forward",))  # noqa: S608
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Store.open(path) as store:
        baseline, _ = store.load()
        assert list(baseline.jobs) == [JobKey("cn-hangzhou", "a/b", "Forward")]
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        # a key that the old form could not hold now survives a save and a load
        odd = JobState("cn-hangzhou", "x/y", "For/ward", "n", "Synchronizing", account="a/c")
        commit(store, detect(baseline, snap(job("a/b"), odd), Memory(), Rules(), NOW), "dts")
    with Store.open(path) as store:
        assert odd.key in store.load()[0].jobs


@settings(max_examples=200, deadline=None)
@given(parts=st.tuples(st.text(), st.text(), st.text(), st.text()))
def test_property_any_job_key_round_trips(parts: tuple[str, str, str, str]) -> None:
    key = JobKey(*parts)
    assert JobKey.decode(key.encode()) == key


def test_one_process_at_a_time_per_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    in_use = rf"in use by another dts-watcher \(pid {os.getpid()},"
    with Store.open(path), pytest.raises(StateError, match=in_use):
        Store.open(path)
    with Store.open(path) as again:  # closed: free again
        assert again.outbox_depth() == 0


def test_an_event_set_aside_leaves_the_outbox_for_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        commit(store, detect(None, snap(job("a"), job("b")), Memory(), Rules(), NOW), "dts")
        first, second = store.pending()
        store.dead_letter(first.seq, "too large even trimmed")
        assert [p.id for p in store.pending()] == [second.id]
        (letter,) = store.dead_letters()
        assert (letter.id, letter.subject) == (first.id, first.subject)
        assert letter.payload == first.payload
        assert letter.reason == "too large even trimmed" and store.dead_letter_count() == 1
        store._db.execute("DROP TABLE dead_letters")  # as a file of an older version
    with Store.open(path) as older:  # gains the table on open, schema unchanged
        assert older.dead_letter_count() == 0
        assert older.meta()["schema_version"] == str(SCHEMA_VERSION)
