"""The state bucket's entries (`watcher.cluster.records`) and what a cycle writes to them
(`watcher.cluster.changes.plan`): pure, no NATS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.cluster import records
from watcher.cluster.changes import Cached, JobWrite, OwnWrite, ShardWrite, plan
from watcher.cluster.records import JobRecord, OwnRecord, Pending, ShardRecord
from watcher.detect import detect
from watcher.events import watcher_event
from watcher.rules import Memory, Rules
from watcher.snapshot import JobKey, JobState, RegionOutcome, Snapshot
from watcher.source_health import RegionHealth

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HZ, SH = "cn-hangzhou", "cn-shanghai"


def job(job_id: str, region: str = HZ, status: str = "Synchronizing", **more: object) -> JobState:
    return JobState(
        region=region, job_id=job_id, direction="Forward", job_name=job_id, status=status, **more
    )


def test_entries_round_trip_and_large_ones_are_compressed() -> None:
    pending = (Pending("id-1", "dts.job.x.y.discovered", b'{"a":"\xc3\xa9"}', (5, 1)),)
    big = job("j1", error_message="x" * 5000, tags=(("team", "db"),))
    memory = Rules().judge(None, big, Rules().judge(None, big, _blank(), _quiet()), _quiet())
    record = JobRecord(big, memory or None, pending)
    value = records.encode_record(record)
    assert value.startswith(b"\x00z") and len(value) < 1000  # compressed past a kilobyte
    assert records.decode_job(value) == record
    gone = JobRecord(None, None, pending)
    assert records.decode_job(records.encode_record(gone)) == gone
    since = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    shard = ShardRecord(7, RegionHealth(2, since, True, "Throttling", "slow down"), pending)
    assert records.decode_shard(records.encode_record(shard)) == shard
    own = OwnRecord("pod-0", pending)
    assert records.decode_own(records.encode_record(own)) == own
    for garbage in (b"", b"[]", b'{"v": 99}', b"\x00zgarbage"):
        with pytest.raises(ValueError):
            records.decode_job(garbage)


def test_keys_are_one_token_per_name_and_decode_back() -> None:
    key = JobKey("cn-hangzhou", "dts.weird/id", "Reverse", "team a")
    text = records.job_key(key)
    kind, shard, job_id, direction = text.split(".")
    assert (job_id, direction) == ("dts=2Eweird=2Fid", "Reverse")
    assert (kind, shard) == ("job", "team=20a=2Fcn-hangzhou")
    assert records.job_key_of(text) == key
    assert records.jobs_of("team a", "cn-hangzhou") == "job.team=20a=2Fcn-hangzhou.>"
    assert records.shard_key("default", HZ) == "shard.default=2Fcn-hangzhou"
    assert records.member_of(records.own_key("pod 7")) == "pod 7"


def _blank() -> object:
    from watcher.rules import JobMemory

    return JobMemory()


def _quiet() -> object:
    class Quiet:
        now = T0
        silenced = None

        def __call__(self, *args: object, **kwargs: object) -> None:
            return None

        def held(self, kind: object) -> None:
            return None

    return Quiet()


def cached(label: str, *jobs: JobState) -> dict[JobKey, Cached]:
    return {j.key: Cached(records.job_key(j.key), label, 3, JobRecord(j, None)) for j in jobs}


def test_a_cycle_writes_what_moved_and_each_shard_it_read() -> None:
    """Changed jobs with their events, jobs gone from a shard read, each shard read with
    its cycle count and health; nothing of a shard not read (another's, or handed over)."""
    a, b, c = job("a"), job("b"), job("c", SH)
    tables = {HZ: cached(HZ, a, b), SH: cached(SH, c)}
    failed = job("a", status="Failed")
    current = Snapshot.of([failed], [RegionOutcome(HZ)])  # SH is not read this cycle
    memory = Memory(cycle=9, shard_cycles={HZ: 4, SH: 2})
    rules = Rules.of(removed_after=1)
    detection = detect(Snapshot(jobs={a.key: a, b.key: b}), current, memory, rules, T0)
    incomplete = watcher_event("cycle_incomplete", "warning", T0, {"regions": {}})
    unavailable = watcher_event("source_unavailable", "critical", T0, {"region": HZ})
    detection = detection._replace(events=[*detection.events, incomplete, unavailable])
    rows = [Pending(e.id, f"s.{e.kind}", b"{}") for e in detection.events]
    health = RegionHealth(failures=1)

    def route(event: object) -> str | None:
        return HZ if event is unavailable else None

    steps = plan(detection, rows, 1000, tables, lambda label: health, route)
    ((changes, saved),) = steps
    assert saved == len(rows)
    jobs = {c.key: c for c in changes if isinstance(c, JobWrite)}
    assert set(jobs) == {a.key, b.key}  # c's shard was not read: c stays as it is
    assert jobs[a.key].job == failed
    assert [p.subject for p in jobs[a.key].events] == ["s.status_changed"]
    # b is gone: its entry keeps no state, only its `removed` until published
    assert (jobs[b.key].job, [p.subject for p in jobs[b.key].events]) == (None, ["s.removed"])
    (shard,) = [c for c in changes if isinstance(c, ShardWrite)]
    assert (shard.label, shard.cycle, shard.health, shard.new_health) == (HZ, 5, health, True)
    assert [p.subject for p in shard.events] == ["s.source_unavailable"]
    (own,) = [c for c in changes if isinstance(c, OwnWrite)]
    assert [p.subject for p in own.events] == ["s.cycle_incomplete"]


def test_a_storm_is_written_in_steps_never_splitting_a_jobs_events() -> None:
    jobs = [job(f"j{n:02}") for n in range(30)]
    detection = detect(None, Snapshot.of(jobs, [RegionOutcome(HZ)]), Memory(), Rules(), T0)
    rows = [Pending(e.id, e.kind, b"{}") for e in detection.events]
    steps = plan(detection, rows, 10, {HZ: {}}, lambda label: None, lambda event: None)
    assert [saved for _, saved in steps] == [1, 11, 21, 30]  # a tenth first, then chunks
    written = [c.key for changes, _ in steps for c in changes if isinstance(c, JobWrite)]
    assert sorted(written) == sorted(j.key for j in jobs)  # each job once
    assert isinstance(steps[-1][0][-1], ShardWrite)  # the shard's count comes last


def test_delays_that_move_at_every_poll_rewrite_no_entry() -> None:
    """A job whose live fields alone moved, its memory the entry's, is not written (it
    would be every job at every cycle); one whose stable part or memory moved is."""
    steady, drifting, renamed = (
        job("steady", delay_seconds=5),
        job("drifting", delay_seconds=5, checkpoint="100"),
        job("renamed", delay_seconds=5),
    )
    tables = {HZ: cached(HZ, steady, drifting, renamed)}
    # catching up (a growing delay would start a stall's timing: memory, written)
    moved = job("drifting", delay_seconds=3, checkpoint="130", rps=12.5)
    other = job("renamed", delay_seconds=4)
    other = JobState(**{**vars_of(other), "job_name": "renamed-2"})
    current = Snapshot.of([steady, moved, other], [RegionOutcome(HZ)])
    before = Snapshot(jobs={j.key: j for j in (steady, drifting, renamed)})
    detection = detect(before, current, Memory(cycle=1, shard_cycles={HZ: 1}), Rules(), T0)
    assert detection.memory.jobs == {}  # nothing remembered: the entries' memory (None)
    ((changes, _),) = plan(detection, [], 1000, tables, lambda label: None, lambda e: None)
    written = {c.key.job_id for c in changes if isinstance(c, JobWrite)}
    assert written == {"renamed"}


def vars_of(state: JobState) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(state, f.name) for f in fields(state)}
