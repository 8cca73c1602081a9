"""A job whose live fields alone moved (its delay, its checkpoint: every running job's,
at every poll) costs little downstream, and nothing in what is said or remembered.

- `Rules.judge` asks the rules that never read live fields (`Rule.live_blind`) as for an
  unchanged job: the events and memory are exactly those of the full judgement.
- `PageByPage` does not hand such a job to the store page by page; the store does not
  rewrite its row (`SavedRows`), and writes it at a clean stop (`Store.save_live`).
- A restart after such polls neither loses nor invents an event: after a clean stop the
  events are those of a watcher that never stopped; after a crash, the state holds each
  job's memory as it was, and its stable state, with live fields a few polls old, and
  what follows is judged as if the polls since had not been read.
"""

from __future__ import annotations

import operator
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import watcher.rules
from tests.support.chains import chain as detect_chain
from watcher.detect import Detection, Memory, PageByPage, Rules, detect
from watcher.live import same_but_live
from watcher.snapshot import (
    FAILED,
    PRECHECKING,
    SUSPENDING,
    SYNCHRONIZING,
    JobState,
    Precheck,
    PrecheckItem,
    RegionOutcome,
    Snapshot,
)
from watcher.store import Store

HZ = "cn-hangzhou"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLL = timedelta(seconds=30)
SHORT = Rules.of(
    delay_thresholds={"warning": 60, "critical": 300},
    delay_for_cycles=2,
    stall_after=60,
    repeat_interval=60,
    flap_threshold=3,
    flap_window=600,
    expiry_warnings=[1],
)
FAILING = Precheck("Failed", 100.0, (PrecheckItem("CHECK_A", "Failed", "no"),))
PASSING = Precheck("Success", 100.0, (PrecheckItem("CHECK_A", "Success"),))

# What stays (most cycles) and what moves (every cycle).
stable_parts = st.fixed_dictionaries(
    {
        "status": st.sampled_from([SYNCHRONIZING, SYNCHRONIZING, "Migrating", FAILED, SUSPENDING])
        | st.just(PRECHECKING),
        "precheck": st.sampled_from([None, PASSING, FAILING]),
        "pay_type": st.sampled_from([None, "PrePaid"]),
        "expire_time": st.sampled_from([None, T0 + timedelta(seconds=200), T0 + timedelta(days=3)]),
    }
)
live_parts = st.fixed_dictionaries(
    {
        # around the thresholds (60, 300) mostly: levels come and go, flap, are reminded
        "delay_seconds": st.sampled_from([None, 0, 5, 58, 70, 75, 290, 350, 360])
        | st.integers(0, 400),
        "checkpoint": st.none() | st.sampled_from(["100", "200", "300"]),
        "rps": st.none() | st.sampled_from([0.0, 5.0]),
    }
)


@st.composite
def runs(draw: st.DrawFn) -> list[Snapshot]:
    """Listings of two jobs: each keeps its stable part for a while (a new one now and
    then), while its live fields move at every poll."""
    parts = {job_id: draw(stable_parts) for job_id in ("dtsA", "dtsB")}
    steps = []
    for _ in range(draw(st.integers(2, 14))):
        jobs = []
        for job_id in parts:
            if draw(st.integers(0, 7)) == 0:
                parts[job_id] = draw(stable_parts)
            if draw(st.integers(0, 4)) == 0:
                continue  # missing from this listing
            jobs.append(
                JobState(HZ, job_id, "Forward", job_id, **parts[job_id], **draw(live_parts))
            )
        steps.append(Snapshot.of(jobs, [RegionOutcome(HZ)]))
    return steps


@contextmanager
def full_judgements() -> Iterator[None]:
    """The judgement as it was before the short-cut: a job is unchanged when it equals
    its last state, and changed otherwise, every rule and reviewer asked."""
    saved = watcher.rules.same_but_live
    watcher.rules.same_but_live = operator.eq  # "stable" only when equal: never live-only
    try:
        yield
    finally:
        watcher.rules.same_but_live = saved


def chain(steps: list[Snapshot], rules: Rules = SHORT) -> list[Detection]:
    return detect_chain(steps, rules, T0, POLL)


def said(detections: list[Detection]) -> list[list[tuple[Any, ...]]]:
    """Each cycle's events, in order per job (the order among jobs follows the baseline's,
    which after a restart is the state file's)."""
    return [
        sorted(((e.id, e.kind, e.job_id, dict(e.data)) for e in d.events), key=lambda e: str(e[2]))
        for d in detections
    ]


@settings(max_examples=200, deadline=None)
@given(steps=runs())
def test_property_the_live_short_cut_says_and_remembers_what_the_full_judgement_does(
    steps: list[Snapshot],
) -> None:
    fast = chain(steps)
    with full_judgements():
        full = chain(steps)
    assert said(fast) == said(full)
    for a, b in zip(fast, full, strict=True):
        assert a.memory == b.memory
        assert a.baseline.jobs == b.baseline.jobs


def test_a_job_whose_delay_alone_moved_is_not_handed_to_the_store_page_by_page() -> None:
    steady = JobState(HZ, "dtsA", "Forward", "a", SYNCHRONIZING, delay_seconds=3)
    first = detect(None, Snapshot.of([steady], [RegionOutcome(HZ)]), Memory(), SHORT, T0)
    pages = PageByPage(first.baseline, first.memory, SHORT)
    moved = JobState(HZ, "dtsA", "Forward", "a", SYNCHRONIZING, delay_seconds=2)
    found = pages.judge([moved], T0 + POLL)
    assert not found.jobs and not found.events
    done = pages.finish(Snapshot.of([moved], [RegionOutcome(HZ)]), T0 + POLL)
    assert done.baseline.jobs[moved.key] is moved  # the cycle's baseline has it
    failed = JobState(HZ, "dtsA", "Forward", "a", FAILED, delay_seconds=2)
    again = PageByPage(done.baseline, done.memory, SHORT).judge([failed], T0 + 2 * POLL)
    assert list(again.jobs) == [failed.key]  # a stable change is saved with its event


# -- the store, and restarts -------------------------------------------------------------------


def committed(store: Store, detection: Detection) -> None:
    for _ in store.commit_steps(detection, "dts"):
        pass


def rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, state FROM jobs").fetchall())


def test_a_moved_delay_is_not_written_until_a_clean_stop(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    job = JobState(HZ, "dtsA", "Forward", "a", SYNCHRONIZING, delay_seconds=3)
    with Store.open(path) as store:
        baseline, memory = store.load()
        detection = detect(baseline, Snapshot.of([job], [RegionOutcome(HZ)]), memory, SHORT, T0)
        committed(store, detection)
        saved = rows(path)
        moved = JobState(HZ, "dtsA", "Forward", "a", SYNCHRONIZING, delay_seconds=2)
        later = detect(
            detection.baseline,
            Snapshot.of([moved], [RegionOutcome(HZ)]),
            detection.memory,
            SHORT,
            T0 + POLL,
        )
        committed(store, later)
        assert rows(path) == saved  # not rewritten for a moved delay
    with Store.open(path) as store:
        baseline, _ = store.load()
    assert baseline.jobs[moved.key] == moved  # written at the clean stop


def test_a_stall_being_timed_writes_its_memory_and_not_the_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"

    def seen(delay: int) -> Snapshot:
        job = JobState(HZ, "dtsA", "Forward", "a", SYNCHRONIZING, delay_seconds=delay)
        return Snapshot.of([job], [RegionOutcome(HZ)])

    with Store.open(path) as store:
        baseline, memory = store.load()
        for index, delay in enumerate([3, 40]):  # the delay grew: a stall is being timed
            detection = detect(baseline, seen(delay), memory, SHORT, T0 + index * POLL)
            committed(store, detection)
            baseline, memory = detection.baseline, detection.memory
            if index == 0:
                saved = rows(path)
        with sqlite3.connect(path) as db:
            ((state, remembered),) = db.execute("SELECT state, memory FROM jobs").fetchall()
        assert [state] == list(saved.values())  # the state as first written
        assert "stall_since" in remembered  # the memory as it is now
    with Store.open(path) as store:
        assert store.load()[0].jobs == baseline.jobs  # a clean stop wrote the rest


def restarted(steps: list[Snapshot], at: int, crash: bool) -> tuple[list[Detection], Any]:
    """The steps through detect and a real store, the watcher stopping before step `at`
    (cleanly, or killed: the state as it was committed, without `save_live`) and going
    on from what it finds in the state; also what it found then."""
    out: list[Detection] = []
    found: Any = None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.sqlite3"
        store = Store.open(path)
        previous, memory = store.load()
        try:
            for index, current in enumerate(steps):
                if index == at:
                    if crash:  # what the file holds, committed: a copy taken now
                        copy = Path(folder) / "crashed.sqlite3"
                        with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
                            source.backup(target)
                        path = copy
                    store.close()
                    store = Store.open(path)
                    found = store.load()
                    previous, memory = found
                detection = detect(previous, current, memory, SHORT, T0 + index * POLL)
                committed(store, detection)
                out.append(detection)
                previous, memory = detection.baseline, detection.memory
        finally:
            store.close()
    return out, found


@settings(max_examples=60, deadline=None)
@given(steps=runs(), data=st.data())
def test_property_a_clean_restart_says_what_a_watcher_that_never_stopped_says(
    steps: list[Snapshot], data: Any
) -> None:
    at = data.draw(st.integers(1, len(steps) - 1))
    reference = chain(steps)
    after, _ = restarted(steps, at, crash=False)
    assert said(after) == said(reference)
    assert [d.memory for d in after] == [d.memory for d in reference]


@settings(max_examples=60, deadline=None)
@given(steps=runs(), data=st.data())
def test_property_a_crash_keeps_every_job_s_memory_and_stable_state(
    steps: list[Snapshot], data: Any
) -> None:
    """Killed after live fields moved: each job's rule memory is exactly what it was,
    its state equal but for the live fields, and nothing already said is said again."""
    at = data.draw(st.integers(1, len(steps) - 1))
    reference = chain(steps)
    after, (baseline, memory) = restarted(steps, at, crash=True)
    before = reference[at - 1]
    assert memory == before.memory
    assert baseline.jobs.keys() == before.baseline.jobs.keys()
    for key, job in baseline.jobs.items():
        assert same_but_live(job, before.baseline.jobs[key])
    assert said(after[:at]) == said(reference[:at])
    # What is said from there is judged against those states, as if the polls since each
    # row was written had not been read: the same events, but that a `removed` carries
    # the job as last written (its delay a few polls old), and a stall is timed from the
    # delays it sees (one that only the lost polls showed growing starts later). The ids
    # differ: an id covers the state a job was judged from, live fields included, and
    # these events were never saved before the crash, so no id of theirs is out there.
    assert kept(said(after[at:])) == kept(said(reference[at:]))


def kept(events: list[list[tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
    return [
        [
            (e[1], e[2]) if e[1] == "removed" else e[1:]
            for e in cycle
            if e[1] not in ("stalled", "reminder")
        ]
        for cycle in events
    ]
