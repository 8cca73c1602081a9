"""The pure detection rules (`watcher.detect.detect`).

Each rule is a table: a sequence of snapshots fed through `detect` the way the service
does it (the returned baseline and memory feed the next cycle) and, per cycle, the events
expected, reduced to their kind, severity and the fields that matter for that kind. A few
focused tests check what a table cannot (baseline, memory, ids), and Hypothesis checks the
promises that hold for any input: no exceptions, determinism, no false "removed", a
steady state goes quiet, and every event is a well-formed envelope.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.chains import chain
from watcher import kinds
from watcher.detect import Detection, JobMemory, Memory, PageByPage, Rules, detect
from watcher.events import SEVERITIES, Event
from watcher.rules import decode_memory
from watcher.snapshot import (
    FAILED,
    FINISHED,
    INITIALIZE_FAILED,
    INITIALIZING,
    KNOWN_STATUSES,
    MODIFYING,
    NOT_STARTED,
    PRECHECKING,
    SUSPENDING,
    SYNCHRONIZING,
    InitStage,
    JobKey,
    JobState,
    Precheck,
    PrecheckItem,
    RegionOutcome,
    Snapshot,
)
from watcher.snapshot import PRECHECK_FAILED as PRECHECK_FAILED_STATUS

DISCOVERED = kinds.DISCOVERED.name
REMOVED = kinds.REMOVED.name
STATUS_CHANGED = kinds.STATUS_CHANGED.name
DELAY_THRESHOLD_CROSSED = kinds.DELAY_THRESHOLD_CROSSED.name
PRECHECK_FAILED = kinds.PRECHECK_FAILED.name
INIT_FAILED = kinds.INIT_FAILED.name
HZ = "cn-hangzhou"
SH = "cn-shanghai"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLL = timedelta(seconds=30)
DEFAULT = Rules()
COMMON = ("job_id", "job_name", "region", "direction", "status")
ENVELOPE_KEYS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "severity",
    "data",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------- builders


def job(
    status: str = SYNCHRONIZING,
    delay: int | None = 0,
    *,
    job_id: str = "dtsj1",
    region: str = HZ,
    direction: str = "Forward",
    error: str | None = None,
    precheck: Precheck | None = None,
    structure: InitStage | None = None,
    data: InitStage | None = None,
) -> JobState:
    return JobState(
        region=region,
        job_id=job_id,
        direction=direction,
        job_name=f"name-{job_id}",
        status=status,
        error_message=error,
        delay_seconds=delay,
        precheck=precheck,
        structure_init=structure,
        data_init=data,
    )


def sync(delay: int | None, **kwargs: Any) -> JobState:
    return job(SYNCHRONIZING, delay, **kwargs)


def checks(*failed: str, running: bool = False) -> Precheck:
    """A precheck whose named items failed (plus one item that passed)."""
    items = [PrecheckItem("CHECK_CONN_SRC", "Success")]
    items += [PrecheckItem(name, "Failed", f"{name} is wrong", f"fix {name}") for name in failed]
    status = "Prechecking" if running else ("Failed" if failed else "Success")
    return Precheck(status=status, percent=50.0 if running else 100.0, items=tuple(items))


def stage(status: str, error: str | None = None) -> InitStage:
    return InitStage(status=status, percent=None, progress=None, error_message=error)


def snap(
    *jobs: JobState, complete: Sequence[str] = (HZ,), incomplete: Sequence[str] = ()
) -> Snapshot:
    outcomes = [RegionOutcome(region) for region in complete]
    outcomes += [RegionOutcome(region, error="Throttling.User") for region in incomplete]
    return Snapshot.of(jobs, outcomes)


def partial(*jobs: JobState, region: str = HZ) -> Snapshot:
    """A fetch of `region` that failed part-way, having read `jobs`."""
    return snap(*jobs, complete=(), incomplete=(region,))


def assert_job_event_shape(event: Event, current: Snapshot) -> None:
    data = event.data
    for name in COMMON:
        assert name in data, (event.kind, name)
    assert event.job_id == data["job_id"]
    assert event.region == data["region"]
    assert event.severity in SEVERITIES
    assert UUID.match(event.id)
    # Job events only ever speak about completely read regions.
    assert data["region"] in current.complete_regions


def run(
    snapshots: Sequence[Snapshot], rules: Rules | None = None, memory: Memory | None = None
) -> list[Detection]:
    """Chain cycles the way the service does: baseline and memory feed the next one."""
    previous: Snapshot | None = None
    memory = memory if memory is not None else Memory()
    out = []
    for index, current in enumerate(snapshots):
        detection = detect(previous, current, memory, rules or DEFAULT, T0 + index * POLL)
        for event in detection.events:
            assert_job_event_shape(event, current)
        out.append(detection)
        previous, memory = detection.baseline, detection.memory
    return out


# ------------------------------------------------------------------ event projections


def view(event: Event) -> tuple[Any, ...]:
    """An event reduced to its kind, severity and the fields its kind is about."""
    d = event.data
    if event.kind == STATUS_CHANGED:
        return (
            STATUS_CHANGED,
            event.severity,
            d["previous_status"],
            d["status"],
            d["error_message"],
            d.get("recovered_from"),
        )
    if event.kind == DELAY_THRESHOLD_CROSSED:
        return (
            DELAY_THRESHOLD_CROSSED,
            event.severity,
            d["previous_level"],
            d["level"],
            d["delay_seconds"],
            d["threshold_seconds"],
        )
    if event.kind == PRECHECK_FAILED:
        return (PRECHECK_FAILED, event.severity, tuple(i["item_name"] for i in d["failed_items"]))
    if event.kind == INIT_FAILED:
        return (INIT_FAILED, event.severity, d["stage"], d["error_message"])
    return (event.kind, event.severity)


def view_job(event: Event) -> tuple[Any, ...]:
    return (event.data["job_id"], event.data["direction"], *view(event))


def changed(
    previous: str | None,
    status: str,
    severity: str,
    *,
    error: str | None = None,
    recovered: str | None = None,
) -> tuple[Any, ...]:
    return (STATUS_CHANGED, severity, previous, status, error, recovered)


def crossed(
    previous: str, level: str, delay: int, threshold: float, severity: str
) -> tuple[Any, ...]:
    return (DELAY_THRESHOLD_CROSSED, severity, previous, level, delay, threshold)


def prechecked(*items: str) -> tuple[Any, ...]:
    return (PRECHECK_FAILED, "critical", items)


def init_failed(stage_name: str, error: str | None) -> tuple[Any, ...]:
    return (INIT_FAILED, "critical", stage_name, error)


FOUND = (DISCOVERED, "info")
GONE = (REMOVED, "info")


def same(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    """Equal as multisets: the order of events within one cycle is not part of the rules."""
    return Counter(actual) == Counter(expected)


def check_single_job(
    steps: Sequence[tuple[JobState, list[tuple[Any, ...]]]], rules: Rules | None = None
) -> None:
    """One job through several cycles; `discovered` (first cycle) is left out of the view."""
    detections = run([snap(state) for state, _ in steps], rules)
    actual = [[view(e) for e in d.events if e.kind != DISCOVERED] for d in detections]
    expected = [events for _, events in steps]
    assert all(same(a, e) for a, e in zip(actual, expected, strict=True)), (actual, expected)
    assert [e.kind for e in detections[0].events].count(DISCOVERED) == 1


def check_cycles(
    steps: Sequence[tuple[Snapshot, list[tuple[Any, ...]]]], rules: Rules | None = None
) -> list[Detection]:
    """Several jobs through several cycles; events viewed with their job id and direction."""
    detections = run([snapshot for snapshot, _ in steps], rules)
    actual = [[view_job(e) for e in d.events] for d in detections]
    expected = [events for _, events in steps]
    assert all(same(a, e) for a, e in zip(actual, expected, strict=True)), (actual, expected)
    return detections


# ------------------------------------------------------------------------ status_changed

TRANSITIONS = [
    # (before, after, severity, recovered_from)
    (SYNCHRONIZING, FAILED, "critical", None),
    (PRECHECKING, PRECHECK_FAILED_STATUS, "critical", None),
    (INITIALIZING, INITIALIZE_FAILED, "critical", None),
    (SYNCHRONIZING, SUSPENDING, "warning", None),
    (SUSPENDING, SYNCHRONIZING, "info", None),
    (NOT_STARTED, PRECHECKING, "info", None),
    (INITIALIZING, SYNCHRONIZING, "info", None),
    (SYNCHRONIZING, MODIFYING, "info", None),
    (SYNCHRONIZING, FINISHED, "info", None),
    (SYNCHRONIZING, "Upgraded", "info", None),  # a status DTS may invent tomorrow
    (SYNCHRONIZING, "Retrying", "warning", None),
    ("Retrying", FAILED, "critical", None),
    (FAILED, SYNCHRONIZING, "info", FAILED),
    (PRECHECK_FAILED_STATUS, PRECHECKING, "info", PRECHECK_FAILED_STATUS),
    (INITIALIZE_FAILED, INITIALIZING, "info", INITIALIZE_FAILED),
    (FAILED, "Retrying", "warning", FAILED),
    # DescribeDtsJobs: migration, modification and change tracking failures are critical.
    ("Migrating", "MigrationFailed", "critical", None),
    ("Modifying", "ModifyFailed", "critical", None),
    ("Normal", "Abnormal", "critical", None),
    ("Abnormal", "Normal", "info", "Abnormal"),
    ("MigrationFailed", "Migrating", "info", "MigrationFailed"),
    ("Migrating", FINISHED, "info", None),
    ("Starting", "Normal", "info", None),
    # Moving from one failure to another is no recovery.
    (FAILED, PRECHECK_FAILED_STATUS, "critical", None),
    (INITIALIZE_FAILED, FAILED, "critical", None),
]


@pytest.mark.parametrize(
    ("before", "after", "severity", "recovered_from"),
    TRANSITIONS,
    ids=[f"{b}->{a}" for b, a, _, _ in TRANSITIONS],
)
def test_status_transition(
    before: str, after: str, severity: str, recovered_from: str | None
) -> None:
    _, second = run([snap(job(before, None)), snap(job(after, None, error="it said so"))])
    assert [view(e) for e in second.events] == [
        changed(before, after, severity, error="it said so", recovered=recovered_from)
    ]
    assert ("recovered_from" in second.events[0].data) == (recovered_from is not None)


STATUS_SEQUENCES = [
    pytest.param(
        [
            (job(NOT_STARTED, None), []),
            (job(NOT_STARTED, None), []),
            (job(PRECHECKING, None), [changed(NOT_STARTED, PRECHECKING, "info")]),
            (
                job(PRECHECK_FAILED_STATUS, None, error="precheck failed"),
                [changed(PRECHECKING, PRECHECK_FAILED_STATUS, "critical", error="precheck failed")],
            ),
            (
                job(PRECHECKING, None),
                [
                    changed(
                        PRECHECK_FAILED_STATUS,
                        PRECHECKING,
                        "info",
                        recovered=PRECHECK_FAILED_STATUS,
                    )
                ],
            ),
            (job(INITIALIZING, None), [changed(PRECHECKING, INITIALIZING, "info")]),
            (sync(3), [changed(INITIALIZING, SYNCHRONIZING, "info")]),
            (sync(4), []),
            (job(SUSPENDING, 4), [changed(SYNCHRONIZING, SUSPENDING, "warning")]),
            (job(SUSPENDING, 4), []),
            (sync(2), [changed(SUSPENDING, SYNCHRONIZING, "info")]),
            (
                job(FAILED, 2, error="binlog purged"),
                [changed(SYNCHRONIZING, FAILED, "critical", error="binlog purged")],
            ),
            (job(FAILED, 2, error="binlog purged"), []),
            (job(FAILED, 2, error="binlog purged again"), []),  # same status: no event
            (sync(1), [changed(FAILED, SYNCHRONIZING, "info", recovered=FAILED)]),
            (job(FINISHED, None), [changed(SYNCHRONIZING, FINISHED, "info")]),
        ],
        id="lifecycle",
    ),
]


@pytest.mark.parametrize("steps", STATUS_SEQUENCES)
def test_status_sequences(steps: list[tuple[JobState, list[tuple[Any, ...]]]]) -> None:
    # Six alarming changes within eight minutes would be flapping (held back); here each
    # change is looked at on its own (flapping: tests/unit/test_alert_rules.py).
    check_single_job(steps, Rules.of(flap_threshold=0))


# -------------------------------------------------------------- delay_threshold_crossed

THREE_LEVELS = Rules.of(delay_thresholds={"stalled": 600, "slow": 30, "lagging": 120})

DELAY_SEQUENCES = [
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(75), [crossed("ok", "warning", 75, 60, "warning")]),
            (sync(120), []),
            (sync(320), [crossed("warning", "critical", 320, 300, "critical")]),
            (sync(500), []),
            (sync(200), [crossed("critical", "warning", 200, 300, "warning")]),
            (sync(10), [crossed("warning", "ok", 10, 60, "info")]),
            (sync(0), []),
        ],
        id="ok-warning-critical-warning-ok",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(400), [crossed("ok", "critical", 400, 300, "critical")]),
            (sync(0), [crossed("critical", "ok", 0, 300, "info")]),
        ],
        id="jump-ok-critical-and-back-one-event-each",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(60), [crossed("ok", "warning", 60, 60, "warning")]),
            (sync(300), [crossed("warning", "critical", 300, 300, "critical")]),
        ],
        id="exactly-at-threshold-enters",
    ),
    pytest.param(
        DEFAULT,
        [(sync(59), []), (sync(59), []), (sync(1), []), (sync(59), []), (sync(59), [])],
        id="just-under-never-enters",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(61), [crossed("ok", "warning", 61, 60, "warning")]),
            (sync(59), []),
            (sync(61), []),
            (sync(55), []),
            (sync(60), []),
            (sync(54), []),  # 60 x (1 - 10%) = 54: not *below* it yet
            (sync(53), [crossed("warning", "ok", 53, 60, "info")]),
            (sync(59), []),  # re-entering takes the full threshold again
            (sync(60), [crossed("ok", "warning", 60, 60, "warning")]),
        ],
        id="hovering-at-warning-does-not-flap",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(300), [crossed("ok", "critical", 300, 300, "critical")]),
            (sync(290), []),
            (sync(270), []),
            (sync(305), []),
            (sync(269), [crossed("critical", "warning", 269, 300, "warning")]),
            (sync(299), []),
            (sync(300), [crossed("warning", "critical", 300, 300, "critical")]),
        ],
        id="hovering-at-critical-does-not-flap",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(310), [crossed("ok", "critical", 310, 300, "critical")]),
            (sync(40), [crossed("critical", "ok", 40, 300, "info")]),
        ],
        id="critical-straight-down-to-ok-one-event",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(310), [crossed("ok", "critical", 310, 300, "critical")]),
            # Under 60 but not under 54: warning was never left, only critical was.
            (sync(55), [crossed("critical", "warning", 55, 300, "warning")]),
            (sync(53), [crossed("warning", "ok", 53, 60, "info")]),
        ],
        id="down-from-critical-into-the-warning-hysteresis-band",
    ),
    pytest.param(
        Rules.of(delay_hysteresis=0.0),
        [
            (sync(0), []),
            (sync(60), [crossed("ok", "warning", 60, 60, "warning")]),
            (sync(59), [crossed("warning", "ok", 59, 60, "info")]),
        ],
        id="no-hysteresis",
    ),
    pytest.param(
        Rules.of(delay_hysteresis=0.5),
        [
            (sync(0), []),
            (sync(60), [crossed("ok", "warning", 60, 60, "warning")]),
            (sync(31), []),
            (sync(30), []),
            (sync(29), [crossed("warning", "ok", 29, 60, "info")]),
        ],
        id="custom-hysteresis-50-percent",
    ),
    pytest.param(
        THREE_LEVELS,
        [
            (sync(0), []),
            (sync(30), [crossed("ok", "slow", 30, 30, "warning")]),
            (sync(150), [crossed("slow", "lagging", 150, 120, "warning")]),
            (sync(700), [crossed("lagging", "stalled", 700, 600, "critical")]),
            (sync(541), []),
            # below 540 (600 - 10%) and below 108 (120 - 10%): down to slow
            (sync(100), [crossed("stalled", "slow", 100, 600, "warning")]),
            (sync(28), []),
            (sync(5), [crossed("slow", "ok", 5, 30, "info")]),
        ],
        id="three-custom-levels",
    ),
    pytest.param(
        Rules.of(delay_thresholds={"late": 10}),
        [
            (sync(0), []),
            (sync(10), [crossed("ok", "late", 10, 10, "critical")]),
            (sync(0), [crossed("late", "ok", 0, 10, "info")]),
        ],
        id="single-custom-level-is-the-critical-one",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=3),
        [
            (sync(100), []),  # first sight counts as the first cycle
            (sync(100), []),
            (sync(100), [crossed("ok", "warning", 100, 60, "warning")]),
            (sync(100), []),
            (sync(5), [crossed("warning", "ok", 5, 60, "info")]),  # leaving is immediate
        ],
        id="for-3-cycles-enters-on-the-third",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=3),
        [
            (sync(0), []),
            (sync(100), []),
            (sync(100), []),
            (sync(59), []),  # the dip resets the count
            (sync(100), []),
            (sync(100), []),
            (sync(100), [crossed("ok", "warning", 100, 60, "warning")]),
        ],
        id="for-3-cycles-a-dip-resets-the-count",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=3),
        [
            (sync(0), []),
            (sync(400), []),
            (sync(400), []),
            (sync(400), [crossed("ok", "critical", 400, 300, "critical")]),
        ],
        id="for-3-cycles-jump-to-critical-one-event",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=3),
        [
            (sync(400), []),
            (sync(400), []),
            (sync(400), [crossed("ok", "critical", 400, 300, "critical")]),
            # Stepping down is immediate and lands on the level still held, no recount.
            (sync(200), [crossed("critical", "warning", 200, 300, "warning")]),
            (sync(200), []),
        ],
        id="for-3-cycles-stepping-down-is-immediate",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=3),
        [
            (sync(0), []),
            (sync(100), []),
            (sync(100), []),
            (sync(400), [crossed("ok", "warning", 400, 60, "warning")]),
            (sync(400), []),
            (sync(400), [crossed("warning", "critical", 400, 300, "critical")]),
        ],
        id="for-3-cycles-each-level-counts-its-own-streak",
    ),
    pytest.param(
        Rules.of(delay_for_cycles=2),
        [
            (sync(0), []),
            (sync(100), []),
            (job(SUSPENDING, 100), [changed(SYNCHRONIZING, SUSPENDING, "warning")]),
            (sync(100), [changed(SUSPENDING, SYNCHRONIZING, "info")]),  # count restarts
            (sync(100), [crossed("ok", "warning", 100, 60, "warning")]),
        ],
        id="for-2-cycles-a-pause-resets-the-count",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(400), [crossed("ok", "critical", 400, 300, "critical")]),
            (
                job(FAILED, 5, error="oops"),
                [changed(SYNCHRONIZING, FAILED, "critical", error="oops")],
            ),
            (job(FAILED, 1), []),  # the frozen delay clears nothing
            (sync(400), [changed(FAILED, SYNCHRONIZING, "info", recovered=FAILED)]),
            (sync(10), [crossed("critical", "ok", 10, 300, "info")]),
        ],
        id="frozen-delay-while-failed-does-not-clear",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (job(FAILED, 500), [changed(SYNCHRONIZING, FAILED, "critical")]),
            (job(FAILED, 900), []),  # a failed job's delay raises nothing
            (sync(5), [changed(FAILED, SYNCHRONIZING, "info", recovered=FAILED)]),
        ],
        id="frozen-delay-while-failed-does-not-raise",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(0), []),
            (sync(100), [crossed("ok", "warning", 100, 60, "warning")]),
            (job(SUSPENDING, 10), [changed(SYNCHRONIZING, SUSPENDING, "warning")]),
            (job(SUSPENDING, 400), []),
            (sync(100), [changed(SUSPENDING, SYNCHRONIZING, "info")]),
            (sync(400), [crossed("warning", "critical", 400, 300, "critical")]),
        ],
        id="frozen-delay-while-suspending",
    ),
    pytest.param(
        DEFAULT,
        [
            (sync(None), []),
            (sync(100), [crossed("ok", "warning", 100, 60, "warning")]),
            (sync(None), []),  # unknown delay: keep the level
            (sync(100), []),
            (sync(None), []),
            (sync(10), [crossed("warning", "ok", 10, 60, "info")]),
        ],
        id="delay-none-keeps-the-level",
    ),
]


@pytest.mark.parametrize(("rules", "steps"), DELAY_SEQUENCES)
def test_delay_sequences(rules: Rules, steps: list[tuple[JobState, list[tuple[Any, ...]]]]) -> None:
    check_single_job(steps, rules)


def test_delay_event_carries_the_threshold_of_the_level_entered_or_left() -> None:
    detections = run([snap(sync(0)), snap(sync(75)), snap(sync(0))])
    up, down = detections[1].events[0].data, detections[2].events[0].data
    assert (up["level"], up["previous_level"], up["threshold_seconds"]) == ("warning", "ok", 60)
    assert (down["level"], down["previous_level"], down["threshold_seconds"]) == (
        "ok",
        "warning",
        60,
    )
    assert up["delay_seconds"] == 75 and down["delay_seconds"] == 0


# ---------------------------------------------------------------------- precheck_failed


def prechecking(*stale: str) -> JobState:
    """A precheck run in progress (possibly still listing the last run's failures)."""
    return job(PRECHECKING, None, precheck=checks(*stale, running=True))


def failing_precheck(*items: str, error: str | None = None) -> JobState:
    return job(PRECHECK_FAILED_STATUS, None, error=error, precheck=checks(*items))


ENTER_PRECHECK_FAILED = changed(PRECHECKING, PRECHECK_FAILED_STATUS, "critical")
LEAVE_PRECHECK_FAILED = changed(
    PRECHECK_FAILED_STATUS, PRECHECKING, "info", recovered=PRECHECK_FAILED_STATUS
)

PRECHECK_SEQUENCES = [
    pytest.param(
        [
            (prechecking(), []),
            (
                failing_precheck("CHECK_BINLOG", "CHECK_AUTH"),
                [ENTER_PRECHECK_FAILED, prechecked("CHECK_BINLOG", "CHECK_AUTH")],
            ),
            (failing_precheck("CHECK_BINLOG", "CHECK_AUTH"), []),
            # The job changed (a message appeared) but the same items still fail: no repeat.
            (failing_precheck("CHECK_AUTH", "CHECK_BINLOG", error="see precheck"), []),
        ],
        id="newly-failing-then-staying-failed",
    ),
    pytest.param(
        [
            (prechecking(), []),
            (failing_precheck("A"), [ENTER_PRECHECK_FAILED, prechecked("A")]),
            (failing_precheck("A", "B"), [prechecked("B")]),
            (failing_precheck("B", "A"), []),
        ],
        id="an-extra-item-failing-later-only-the-new-one",
    ),
    pytest.param(
        [
            (prechecking(), []),
            (failing_precheck("A"), [ENTER_PRECHECK_FAILED, prechecked("A")]),
            # Re-run: the stale failure is still listed while the new run is in progress.
            (prechecking("A"), [LEAVE_PRECHECK_FAILED]),
            (prechecking("A"), []),
            (failing_precheck("A"), [ENTER_PRECHECK_FAILED, prechecked("A")]),
            (failing_precheck("A"), []),
        ],
        id="rerun-via-prechecking-fails-again-announced-again",
    ),
    pytest.param(
        [
            (prechecking(), []),
            (failing_precheck("A", "B"), [ENTER_PRECHECK_FAILED, prechecked("A", "B")]),
            (failing_precheck("A"), []),  # B passed
            (failing_precheck("A", "B"), [prechecked("B")]),
        ],
        id="an-item-that-passed-and-fails-again",
    ),
    pytest.param(
        [
            (prechecking(), []),
            (prechecking(), []),
            (
                job(NOT_STARTED, None, precheck=checks()),
                [changed(PRECHECKING, NOT_STARTED, "info")],
            ),
        ],
        id="passing-precheck-announces-nothing",
    ),
]


@pytest.mark.parametrize("steps", PRECHECK_SEQUENCES)
def test_precheck_sequences(steps: list[tuple[JobState, list[tuple[Any, ...]]]]) -> None:
    check_single_job(steps)


def test_precheck_event_lists_each_failed_item_with_its_message_and_repair() -> None:
    precheck = Precheck(
        status="Failed",
        percent=100.0,
        items=(
            PrecheckItem("CHECK_CONN_SRC", "Success"),
            PrecheckItem("CHECK_BINLOG_ON", "Failed", "binlog is off", "SET log_bin=ON"),
            PrecheckItem("CHECK_SERVER_ID", "FAILED", "server_id is 0", None),
        ),
    )
    _, second = run(
        [snap(prechecking()), snap(job(PRECHECK_FAILED_STATUS, None, precheck=precheck))]
    )
    [event] = [e for e in second.events if e.kind == PRECHECK_FAILED]
    assert event.severity == "critical"
    assert sorted(event.data["failed_items"], key=lambda i: i["item_name"]) == [
        {
            "item_name": "CHECK_BINLOG_ON",
            "error_message": "binlog is off",
            "repair_method": "SET log_bin=ON",
        },
        {"item_name": "CHECK_SERVER_ID", "error_message": "server_id is 0", "repair_method": None},
    ]


# -------------------------------------------------------------------------- init_failed


def initializing(structure: InitStage | None = None, data: InitStage | None = None) -> JobState:
    return job(INITIALIZING, None, structure=structure, data=data)


def failing_init(
    error: str | None = None, structure: InitStage | None = None, data: InitStage | None = None
) -> JobState:
    return job(INITIALIZE_FAILED, None, error=error, structure=structure, data=data)


ENTER_INIT_FAILED = changed(INITIALIZING, INITIALIZE_FAILED, "critical")

INIT_SEQUENCES = [
    pytest.param(
        [
            (initializing(structure=stage("Migrating")), []),
            (
                failing_init("init failed", structure=stage("Failed", "table exists")),
                [
                    changed(INITIALIZING, INITIALIZE_FAILED, "critical", error="init failed"),
                    init_failed("structure", "table exists"),
                ],
            ),
            (failing_init("init failed", structure=stage("Failed", "table exists")), []),
            (failing_init("still failing", structure=stage("Failed", "table exists!")), []),
        ],
        id="structure-fails-once-no-repeat",
    ),
    pytest.param(
        [
            (initializing(structure=stage("Finished"), data=stage("Migrating")), []),
            (
                failing_init("disk full", structure=stage("Finished"), data=stage("Failed")),
                [
                    changed(INITIALIZING, INITIALIZE_FAILED, "critical", error="disk full"),
                    init_failed("data", "disk full"),  # no message of its own: the job's
                ],
            ),
            (failing_init("disk full", structure=stage("Finished"), data=stage("Failed")), []),
        ],
        id="data-fails-once-no-repeat",
    ),
    pytest.param(
        [
            (initializing(data=stage("Migrating")), []),
            (
                failing_init(data=stage("Failed", "x")),
                [ENTER_INIT_FAILED, init_failed("data", "x")],
            ),
            (
                initializing(data=stage("Migrating")),
                [changed(INITIALIZE_FAILED, INITIALIZING, "info", recovered=INITIALIZE_FAILED)],
            ),
            (
                failing_init(data=stage("Failed", "x")),
                [ENTER_INIT_FAILED, init_failed("data", "x")],
            ),
        ],
        id="stage-stops-failing-then-fails-again",
    ),
    pytest.param(
        [
            (initializing(), []),
            (
                failing_init(structure=stage("failed", "s"), data=stage("Failed", "d")),
                [ENTER_INIT_FAILED, init_failed("structure", "s"), init_failed("data", "d")],
            ),
            (failing_init(structure=stage("failed", "s"), data=stage("Failed", "d")), []),
        ],
        id="both-stages-fail",
    ),
    pytest.param(
        [
            # announce_existing: a stage already failing on first sight is told.
            (initializing(structure=stage("Failed", "s")), [init_failed("structure", "s")]),
            (initializing(structure=stage("Finished")), []),
            (initializing(structure=stage("Failed", "s")), [init_failed("structure", "s")]),
        ],
        id="already-failing-on-first-sight-then-finishes-then-fails",
    ),
]


@pytest.mark.parametrize("steps", INIT_SEQUENCES)
def test_init_sequences(steps: list[tuple[JobState, list[tuple[Any, ...]]]]) -> None:
    check_single_job(steps)


# ------------------------------------------------------------------- discovered/removed

A = job(job_id="dtsA")
B = job(job_id="dtsB")
B_FAILED = job(FAILED, 0, job_id="dtsB", error="boom")
A_FAILED = job(FAILED, 0, job_id="dtsA", error="boom")
C = job(job_id="dtsC", region=SH)
BOTH = (HZ, SH)


def found(job_id: str, direction: str = "Forward") -> tuple[Any, ...]:
    return (job_id, direction, *FOUND)


def gone(job_id: str, direction: str = "Forward") -> tuple[Any, ...]:
    return (job_id, direction, *GONE)


PRESENCE_SEQUENCES = [
    pytest.param(
        DEFAULT,
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), []),
            (snap(A), [gone("dtsB")]),
            (snap(A), []),
            (snap(A, B), [found("dtsB")]),  # back after removal: a new job
        ],
        id="removed-after-2",
    ),
    pytest.param(
        Rules.of(removed_after=1),
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), [gone("dtsB")]),
            (snap(A), []),
        ],
        id="removed-after-1",
    ),
    pytest.param(
        Rules.of(removed_after=3),
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), []),
            (snap(A), []),
            (snap(A), [gone("dtsB")]),
        ],
        id="removed-after-3",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), []),
            (snap(A, B), []),  # absent once, back: nothing happened
            (snap(A), []),  # the count starts again from one
            (snap(A), [gone("dtsB")]),
        ],
        id="absent-once-then-back",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), []),
            (
                snap(A, B_FAILED),
                [("dtsB", "Forward", *changed(SYNCHRONIZING, FAILED, "critical", error="boom"))],
            ),
        ],
        id="absent-once-then-back-changed",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (partial(A), []),  # a partial listing proves nothing
            (partial(), []),
            (snap(A), []),  # first complete listing without B
            (snap(A), [gone("dtsB")]),
        ],
        id="incomplete-never-removes-then-complete-listings-count",
    ),
    pytest.param(
        Rules.of(removed_after=1),
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (partial(), []),
            (partial(A), []),
            (snap(A), [gone("dtsB")]),
        ],
        id="incomplete-never-removes-even-with-removed-after-1",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A, B), [found("dtsA"), found("dtsB")]),
            (snap(A), []),  # absent from one complete listing
            (partial(A), []),  # an incomplete one neither counts nor resets
            (snap(A), [gone("dtsB")]),
        ],
        id="absence-count-survives-an-incomplete-cycle",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A), [found("dtsA")]),
            (partial(job(FAILED, 0, job_id="dtsA"), B), []),  # no events from a partial read
            (
                snap(job(FAILED, 0, job_id="dtsA"), B),
                [
                    ("dtsA", "Forward", *changed(SYNCHRONIZING, FAILED, "critical")),
                    found("dtsB"),
                ],
            ),
        ],
        id="incomplete-region-hides-changes-until-complete",
    ),
    pytest.param(
        DEFAULT,
        [
            (
                snap(sync(100, job_id="dtsA")),
                [found("dtsA"), ("dtsA", "Forward", *crossed("ok", "warning", 100, 60, "warning"))],
            ),
            (partial(sync(0, job_id="dtsA")), []),
            (
                snap(sync(0, job_id="dtsA")),
                [("dtsA", "Forward", *crossed("warning", "ok", 0, 60, "info"))],
            ),
        ],
        id="incomplete-region-keeps-memory",
    ),
    pytest.param(
        Rules.of(removed_after=1),
        [
            (snap(A, C, complete=BOTH), [found("dtsA"), found("dtsC")]),
            (snap(complete=(HZ,), incomplete=(SH,)), [gone("dtsA")]),  # SH proves nothing
            (snap(complete=(HZ,), incomplete=(SH,)), []),
            (snap(C, complete=BOTH), []),
            (snap(complete=BOTH), [gone("dtsC")]),
        ],
        id="one-region-incomplete-the-other-complete",
    ),
    pytest.param(
        DEFAULT,
        [
            (snap(A, C, complete=BOTH), [found("dtsA"), found("dtsC")]),
            (snap(A, complete=(HZ,)), []),  # SH no longer configured: forgotten silently
            (snap(A, complete=(HZ,)), []),
            (snap(A, complete=(HZ,)), []),
            (snap(A, C, complete=BOTH), [found("dtsC")]),  # configured again: new to us
        ],
        id="region-dropped-from-configuration",
    ),
]


@pytest.mark.parametrize(("rules", "steps"), PRESENCE_SEQUENCES)
def test_presence_sequences(
    rules: Rules, steps: list[tuple[Snapshot, list[tuple[Any, ...]]]]
) -> None:
    check_cycles(steps, rules)


def test_discovered_carries_the_whole_job_and_removed_the_last_known_one() -> None:
    b_old = job(SUSPENDING, 7, job_id="dtsB", error="paused by user")
    first, _, third = run([snap(A, b_old), snap(A), snap(A)])
    discovered = {e.job_id: e for e in first.events}
    assert discovered["dtsB"].data["job"] == b_old.to_dict()
    assert discovered["dtsB"].severity == "info"
    [removed] = third.events
    assert removed.kind == REMOVED
    assert removed.data["job"] == b_old.to_dict()
    assert removed.data["status"] == SUSPENDING
    assert removed.severity == "info"


def test_incomplete_region_baseline_carries_last_known_state_and_memory() -> None:
    a_warn = sync(100, job_id="dtsA")
    first = detect(None, snap(a_warn, B), Memory(), DEFAULT, T0)
    assert first.memory.jobs[a_warn.key].to_dict()["delay_level"] == "warning"
    # The partial read saw A with another state and did not see B at all.
    second = detect(
        first.baseline, partial(job(FAILED, 0, job_id="dtsA")), first.memory, DEFAULT, T0 + POLL
    )
    assert second.events == []
    assert dict(second.baseline.jobs) == {a_warn.key: a_warn, B.key: B}
    assert second.memory.jobs[a_warn.key] == first.memory.jobs[a_warn.key]
    assert second.memory.jobs.get(B.key, JobMemory()).to_dict().get("absent", 0) == 0


def test_region_dropped_forgets_jobs_and_their_memory() -> None:
    c_warn = sync(100, job_id="dtsC", region=SH)
    first = detect(None, snap(A, c_warn, complete=BOTH), Memory(), DEFAULT, T0)
    assert c_warn.key in first.memory.jobs
    second = detect(first.baseline, snap(A, complete=(HZ,)), first.memory, DEFAULT, T0 + POLL)
    assert second.events == []
    assert set(second.baseline.jobs) == {A.key}
    assert c_warn.key not in second.memory.jobs


# ----------------------------------------------------------------------- first sight

FIRST_SIGHT = [
    pytest.param(sync(0), [], id="healthy"),
    pytest.param(job(SUSPENDING, 0), [], id="suspending-is-no-failure"),
    pytest.param(
        job(FAILED, 0, error="boom"),
        [changed(None, FAILED, "critical", error="boom")],
        id="failed",
    ),
    pytest.param(
        job(FAILED, 900, error="boom"),
        [changed(None, FAILED, "critical", error="boom")],
        id="failed-with-frozen-delay",
    ),
    pytest.param(
        job(PRECHECK_FAILED_STATUS, None, precheck=checks("A")),
        [changed(None, PRECHECK_FAILED_STATUS, "critical"), prechecked("A")],
        id="precheck-failed",
    ),
    pytest.param(
        job(INITIALIZE_FAILED, None, structure=stage("Failed", "no table")),
        [changed(None, INITIALIZE_FAILED, "critical"), init_failed("structure", "no table")],
        id="init-failed",
    ),
    pytest.param(sync(100), [crossed("ok", "warning", 100, 60, "warning")], id="delay-warning"),
    pytest.param(sync(400), [crossed("ok", "critical", 400, 300, "critical")], id="delay-critical"),
]


@pytest.mark.parametrize(("first", "expected"), FIRST_SIGHT)
@pytest.mark.parametrize("announce", [True, False], ids=["announce", "quiet"])
def test_first_sight(first: JobState, expected: list[tuple[Any, ...]], announce: bool) -> None:
    """announce_existing on: existing conditions are told; off: only `discovered`, and the
    same conditions are not announced on the following cycles either."""
    rules = Rules.of(announce_existing=announce)
    detections = run([snap(first), snap(first), snap(first)], rules)
    first_cycle = [view(e) for e in detections[0].events]
    assert same(first_cycle, [FOUND, *(expected if announce else [])]), first_cycle
    assert detections[1].events == [] and detections[2].events == []


QUIET_START = Rules.of(announce_existing=False)

QUIET_SEQUENCES = [
    pytest.param(
        [
            (sync(400), []),
            (sync(500), []),
            (sync(100), [crossed("critical", "warning", 100, 300, "warning")]),
        ],
        id="delay-level-remembered-and-changes-told",
    ),
    pytest.param(
        [
            (job(PRECHECK_FAILED_STATUS, None, precheck=checks("A")), []),
            (job(PRECHECK_FAILED_STATUS, None, error="x", precheck=checks("A")), []),
            (job(PRECHECK_FAILED_STATUS, None, precheck=checks("A", "B")), [prechecked("B")]),
        ],
        id="precheck-items-remembered-new-ones-told",
    ),
    pytest.param(
        [
            (job(INITIALIZE_FAILED, None, structure=stage("Failed", "s")), []),
            (job(INITIALIZE_FAILED, None, error="x", structure=stage("Failed", "s")), []),
            (
                job(
                    INITIALIZE_FAILED,
                    None,
                    structure=stage("Failed", "s"),
                    data=stage("Failed", "d"),
                ),
                [init_failed("data", "d")],
            ),
        ],
        id="init-stage-remembered-new-one-told",
    ),
    pytest.param(
        [
            (job(FAILED, 0), []),
            (job(FAILED, 0, error="x"), []),
            (sync(0), [changed(FAILED, SYNCHRONIZING, "info", recovered=FAILED)]),
        ],
        id="failed-remembered-recovery-told",
    ),
]


@pytest.mark.parametrize("steps", QUIET_SEQUENCES)
def test_quiet_start_sequences(steps: list[tuple[JobState, list[tuple[Any, ...]]]]) -> None:
    check_single_job(steps, QUIET_START)


def test_quiet_start_precheck_in_progress_failure_is_announced_when_it_ends() -> None:
    check_single_job(
        [
            (job(PRECHECKING, None, precheck=checks("A", running=True)), []),
            (
                job(PRECHECK_FAILED_STATUS, None, precheck=checks("A")),
                [changed(PRECHECKING, PRECHECK_FAILED_STATUS, "critical"), prechecked("A")],
            ),
        ],
        QUIET_START,
    )


def test_precheck_in_progress_failure_is_announced_when_it_ends() -> None:
    """The counterpart of the xfail above, with announce_existing on (passes today)."""
    check_single_job(
        [
            (job(PRECHECKING, None, precheck=checks("A", running=True)), []),
            (
                job(PRECHECK_FAILED_STATUS, None, precheck=checks("A")),
                [changed(PRECHECKING, PRECHECK_FAILED_STATUS, "critical"), prechecked("A")],
            ),
        ]
    )


# ------------------------------------------------------------------- two-way jobs

FWD = sync(0, job_id="dtsTW", direction="Forward")
REV = sync(0, job_id="dtsTW", direction="Reverse")


def test_two_way_directions_are_independent_jobs() -> None:
    check_cycles(
        [
            (snap(FWD, REV), [found("dtsTW", "Forward"), found("dtsTW", "Reverse")]),
            (
                snap(FWD, job(FAILED, 0, job_id="dtsTW", direction="Reverse")),
                [("dtsTW", "Reverse", *changed(SYNCHRONIZING, FAILED, "critical"))],
            ),
            (
                snap(
                    sync(100, job_id="dtsTW", direction="Forward"),
                    job(FAILED, 0, job_id="dtsTW", direction="Reverse"),
                ),
                [("dtsTW", "Forward", *crossed("ok", "warning", 100, 60, "warning"))],
            ),
            (snap(sync(100, job_id="dtsTW", direction="Forward")), []),
            (snap(sync(100, job_id="dtsTW", direction="Forward")), [gone("dtsTW", "Reverse")]),
        ]
    )


# -------------------------------------------------------------------------- event ids

MIXED = [
    snap(A, B, FWD, REV),
    snap(sync(100, job_id="dtsA"), B_FAILED, FWD, REV),
    snap(sync(400, job_id="dtsA"), B, FWD),
    snap(sync(0, job_id="dtsA"), B_FAILED, FWD),
    snap(sync(0, job_id="dtsA"), B, FWD, REV),
]


def test_event_ids_are_deterministic() -> None:
    ids = [[e.id for e in d.events] for d in run(MIXED)]
    again = [[e.id for e in d.events] for d in run(MIXED)]
    assert ids == again
    assert sum(len(cycle) for cycle in ids) >= 10


def test_event_ids_are_distinct_across_cycles_jobs_and_kinds() -> None:
    events = [e for d in run(MIXED) for e in d.events]
    kinds = {e.kind for e in events}
    assert {DISCOVERED, STATUS_CHANGED, DELAY_THRESHOLD_CROSSED, REMOVED} <= kinds
    # B fails twice (cycles 2 and 4): same job and kind in different cycles.
    assert len([e for e in events if e.job_id == "dtsB" and e.kind == STATUS_CHANGED]) == 4
    assert len({e.id for e in events}) == len(events)


def test_event_ids_depend_on_the_cycle_not_only_on_the_job() -> None:
    current = snap(job(FAILED, 0))
    one = detect(None, current, Memory(cycle=0), DEFAULT, T0)
    two = detect(None, current, Memory(cycle=7), DEFAULT, T0)
    assert [e.kind for e in one.events] == [e.kind for e in two.events]
    assert {e.id for e in one.events}.isdisjoint({e.id for e in two.events})


def test_event_ids_do_not_depend_on_the_moment_of_observation() -> None:
    """Two replicas judging the same saved state in the same cycle see it at different
    moments: the ids must not tell them apart (JetStream then drops a copy)."""
    before = detect(None, snap(A, B), Memory(), DEFAULT, T0)
    changed = snap(A, B_FAILED)
    one = detect(before.baseline, changed, before.memory, DEFAULT, T0 + POLL)
    two = detect(before.baseline, changed, before.memory, DEFAULT, T0 + 7 * POLL)
    assert [e.kind for e in one.events] == [STATUS_CHANGED]
    assert [e.id for e in one.events] == [e.id for e in two.events]
    assert one.events[0].time != two.events[0].time


def test_a_cycle_number_used_again_after_a_crash_repeats_no_id() -> None:
    """A crash after some of a cycle was saved, before its end (the cycle number) was:
    the next run counts that cycle again. What was saved moved the job's state on, so a
    new change of the job in the cycle counted again gets an id of its own."""
    first = detect(None, snap(A), Memory(), DEFAULT, T0)
    failed = detect(first.baseline, snap(A_FAILED), first.memory, DEFAULT, T0 + POLL)
    # Saved: A's failed state and its event; not the cycle number (still 1).
    saved = Memory(cycle=first.memory.cycle, jobs=failed.memory.jobs)
    back = detect(failed.baseline, snap(A), saved, DEFAULT, T0 + 2 * POLL)
    assert [e.kind for e in failed.events] == [e.kind for e in back.events] == [STATUS_CHANGED]
    assert failed.events[0].id != back.events[0].id
    # The same transition judged again from the same saved state: the same id.
    again = detect(first.baseline, snap(A_FAILED), first.memory, DEFAULT, T0 + 3 * POLL)
    assert [e.id for e in again.events] == [e.id for e in failed.events]


def test_shard_cycles_count_each_shard_and_name_the_ids() -> None:
    """With several replicas each shard keeps its own cycle count (in the shared state):
    the ids use the shard's, which moves only for the shards read."""
    memory = Memory(cycle=40, shard_cycles={HZ: 3, SH: 9})
    one = detect(None, snap(A), memory, DEFAULT, T0)
    assert one.memory.shard_cycles == {HZ: 4, SH: 9}
    assert one.memory.cycle == 41
    elsewhere = detect(None, snap(A), Memory(cycle=2, shard_cycles={HZ: 3}), DEFAULT, T0)
    assert [e.id for e in one.events] == [e.id for e in elsewhere.events]
    later = detect(None, snap(A), Memory(cycle=40, shard_cycles={HZ: 4}), DEFAULT, T0)
    assert {e.id for e in later.events}.isdisjoint({e.id for e in one.events})


def test_event_ids_distinct_when_both_init_stages_fail_in_one_cycle() -> None:
    both = job(INITIALIZE_FAILED, None, structure=stage("Failed", "s"), data=stage("Failed", "d"))
    _, second = run([snap(job(INITIALIZING, None)), snap(both)])
    init_events = [e for e in second.events if e.kind == INIT_FAILED]
    assert len(init_events) == 2
    assert len({e.id for e in second.events}) == len(second.events)


# ------------------------------------------------------------ memory and baseline chain


def test_memory_and_baseline_feed_the_next_cycle() -> None:
    detections = run([snap(A, B), snap(A), snap(A)], Rules.of(delay_for_cycles=2))
    assert [d.memory.cycle for d in detections] == [1, 2, 3]
    assert dict(detections[0].baseline.jobs) == {A.key: A, B.key: B}
    assert detections[1].memory.jobs[B.key].to_dict()["absent"] == 1
    assert dict(detections[1].baseline.jobs) == {A.key: A, B.key: B}  # not yet proven gone
    assert dict(detections[2].baseline.jobs) == {A.key: A}
    assert B.key not in detections[2].memory.jobs
    # Without the memory the absence count starts over: no removal.
    fresh = detect(detections[1].baseline, snap(A), Memory(cycle=2), DEFAULT, T0)
    assert fresh.events == []


def _through_storage(detection: Detection) -> tuple[Snapshot, Memory]:
    """What the store keeps, read back: jobs and memory through their dict forms."""
    jobs = [JobState.from_dict(j.to_dict()) for j in detection.baseline.jobs.values()]
    baseline = Snapshot.of(jobs, detection.baseline.regions.values())
    memory = Memory(
        cycle=detection.memory.cycle,
        jobs={
            JobKey.decode(key.encode()): decode_memory(value.to_dict())
            for key, value in detection.memory.jobs.items()
        },
    )
    return baseline, memory


def test_chain_through_the_stored_forms_gives_the_same_events() -> None:
    rules = Rules.of(delay_for_cycles=2)
    steps = [
        snap(sync(100, precheck=checks("A")), job(INITIALIZE_FAILED, None, job_id="dtsI")),
        snap(sync(100, precheck=checks("A", "B")), job(INITIALIZE_FAILED, None, job_id="dtsI")),
        snap(sync(120, precheck=checks("A", "B")), job(INITIALIZE_FAILED, None, job_id="dtsI")),
        snap(sync(10, precheck=checks("B"))),
        snap(sync(10, precheck=checks("B"))),
    ]
    direct = run(steps, rules)
    previous: Snapshot | None = None
    memory = Memory()
    stored: list[list[Event]] = []
    for index, current in enumerate(steps):
        detection = detect(previous, current, memory, rules, T0 + index * POLL)
        stored.append(detection.events)
        previous, memory = _through_storage(detection)
    assert stored == [d.events for d in direct]
    assert any(e.kind == DELAY_THRESHOLD_CROSSED for d in direct for e in d.events)


def test_common_fields_on_every_kind() -> None:
    events = [e for d in run(MIXED) for e in d.events]
    events += run([snap(job(INITIALIZE_FAILED, None, structure=stage("Failed", "s")))])[0].events
    events += run([snap(job(PRECHECK_FAILED_STATUS, None, precheck=checks("X")))])[0].events
    assert {e.kind for e in events} == {
        DISCOVERED,
        REMOVED,
        STATUS_CHANGED,
        DELAY_THRESHOLD_CROSSED,
        INIT_FAILED,
        PRECHECK_FAILED,
    }
    for event in events:
        data = event.data
        assert data["job_name"] == f"name-{data['job_id']}"
        assert data["region"] == HZ
        assert data["direction"] in ("Forward", "Reverse")
        assert isinstance(data["status"], str)
        assert event.type == f"dts.job.{event.kind}"


# ------------------------------------------------------------------ properties (Hypothesis)

REGIONS = (HZ, SH)
job_ids = st.sampled_from(["dtsA", "dtsB", "dts.C", "d e*"])
statuses = st.one_of(st.sampled_from(KNOWN_STATUSES), st.text(max_size=6))
messages = st.none() | st.sampled_from(["boom", "", "bad thing"])
precheck_items = st.builds(
    PrecheckItem,
    item_name=st.sampled_from(["A", "B", "C"]),
    status=st.sampled_from(["Success", "Failed", "FAILED", "Running", ""]),
    error_message=messages,
    repair_method=messages,
)
prechecks = st.none() | st.builds(
    Precheck,
    status=st.none() | st.sampled_from(["Success", "Failed", "Prechecking"]),
    percent=st.sampled_from([None, 0.0, 42.5, 100.0]),
    items=st.lists(precheck_items, max_size=3).map(tuple),
)
stages = st.none() | st.builds(
    InitStage,
    status=st.none() | st.sampled_from(["NotStarted", "Migrating", "Failed", "failed", "Finished"]),
    error_message=messages,
)
jobs = st.builds(
    JobState,
    region=st.sampled_from(REGIONS),
    job_id=job_ids,
    direction=st.sampled_from(["Forward", "Reverse"]),
    job_name=st.sampled_from(["", "orders", "订单 sync"]),
    status=statuses,
    error_message=messages,
    delay_seconds=st.none() | st.integers(min_value=0, max_value=1000),
    precheck=prechecks,
    structure_init=stages,
    data_init=stages,
)
# Each region: read completely, read partially, or not configured at all.
outcome_choices = st.sampled_from(["complete", "incomplete", "absent"])


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    outcomes = []
    for region in REGIONS:
        choice = draw(outcome_choices)
        if choice != "absent":
            outcomes.append(RegionOutcome(region, error=None if choice == "complete" else "x"))
    return Snapshot.of(draw(st.lists(jobs, max_size=5)), outcomes)


rule_sets = st.builds(
    Rules.of,
    delay_thresholds=st.sampled_from(
        [
            {"warning": 60, "critical": 300},
            {"stalled": 600, "slow": 30, "lagging": 120},
            {"late": 1.0},
            {},
        ]
    ),
    delay_hysteresis=st.sampled_from([0.0, 0.1, 0.5]),
    delay_for_cycles=st.integers(1, 3),
    announce_existing=st.booleans(),
    removed_after=st.integers(1, 3),
)


def _chain(steps: list[Snapshot], rules: Rules) -> list[Detection]:
    return chain(steps, rules, T0, POLL)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(snapshots(), min_size=2, max_size=4), rules=rule_sets)
def test_property_incomplete_regions_are_left_alone(steps: list[Snapshot], rules: Rules) -> None:
    previous: Snapshot | None = None
    for detection, current in zip(_chain(steps, rules), steps, strict=True):
        complete = current.complete_regions
        for event in detection.events:
            # No event at all (removed included) about a region not read completely.
            assert event.region in complete, (event.kind, event.region)
        for region, outcome in current.regions.items():
            carried = {k: v for k, v in detection.baseline.jobs.items() if k.region == region}
            if not outcome.complete:
                before = previous.jobs if previous is not None else {}
                assert carried == {k: v for k, v in before.items() if k.region == region}
            else:
                listed = {k: v for k, v in current.jobs.items() if k.region == region}
                assert listed.items() <= carried.items()
        unconfigured = {k.region for k in detection.baseline.jobs} - set(current.regions)
        assert not unconfigured or not current.regions
        previous = detection.baseline


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(snapshots(), min_size=1, max_size=4), rules=rule_sets)
def test_property_deterministic_and_every_event_well_formed(
    steps: list[Snapshot], rules: Rules
) -> None:
    """Never raises; twice the same inputs give the same events, memory and baseline; every
    event is a CloudEvents envelope with the common job fields."""
    detections = _chain(steps, rules)
    again = _chain(steps, rules)
    for a, b in zip(detections, again, strict=True):
        assert a.events == b.events
        assert a.memory == b.memory
        assert dict(a.baseline.jobs) == dict(b.baseline.jobs)
    by_id: dict[str, tuple[Any, ...]] = {}
    for cycle, detection in enumerate(detections):
        for event in detection.events:
            envelope = event.envelope()
            assert set(envelope) == ENVELOPE_KEYS
            assert envelope["specversion"] == "1.0"
            assert envelope["type"].startswith("dts.job.")
            assert envelope["type"] == f"dts.job.{event.kind}"
            assert envelope["subject"] == event.data["job_id"]
            assert envelope["time"].endswith("Z")
            assert envelope["severity"] in SEVERITIES
            assert envelope["datacontenttype"] == "application/json"
            assert UUID.match(envelope["id"])
            for name in COMMON:
                assert name in envelope["data"]
            # An id names one (job, kind) in one cycle: never two different things.
            key = (
                cycle,
                event.data["region"],
                event.data["job_id"],
                event.data["direction"],
                event.kind,
            )
            assert by_id.setdefault(envelope["id"], key) == key


@settings(max_examples=60, deadline=None)
@given(state=snapshots(), rules=rule_sets)
def test_property_a_steady_state_goes_quiet(state: Snapshot, rules: Rules) -> None:
    """Never cry wolf: the same listing over and over stops producing events once the
    "for N cycles" counts have run out."""
    detections = _chain([state] * (rules.settings.delay_for_cycles + 2), rules)
    assert detections[-1].events == []
    assert detections[-2].events == []


# --------------------------------------------------------------------------- page by page


def _chain_pages(steps: list[Snapshot], rules: Rules, cuts: list[int]) -> list[Detection]:
    """As `_chain`, but each listing judged a page at a time (`PageByPage`), pages cut
    at `cuts` and fed in reverse order (pages arrive out of order); the events of the
    pages come first in each cycle's result, as the service saves them."""
    previous: Snapshot | None = None
    memory = Memory()
    out = []
    for index, current in enumerate(steps):
        now = T0 + index * POLL
        pages = PageByPage(previous, memory, rules)
        listing = [j for j in current if j.region in current.regions]  # what is read
        bounds = sorted({0, len(listing), *(c % (len(listing) + 1) for c in cuts)})
        early: list[Event] = []
        for a, b in reversed(list(itertools.pairwise(bounds))):
            early += pages.judge(listing[a:b], now).events
        rest = pages.finish(current, now)
        out.append(Detection([*early, *rest.events], rest.memory, rest.baseline))
        previous, memory = rest.baseline, rest.memory
    return out


def _said(detection: Detection) -> Counter[tuple[Any, ...]]:
    return Counter(
        (e.kind, e.region, e.job_id, e.data.get("direction"), repr(dict(e.data)))
        for e in detection.events
    )


page_cuts = st.lists(st.integers(0, 6), max_size=3)  # where a listing is cut into pages


@st.composite
def complete_snapshots(draw: st.DrawFn) -> Snapshot:
    return Snapshot.of(draw(st.lists(jobs, max_size=6)), [RegionOutcome(r) for r in REGIONS])


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(complete_snapshots(), min_size=1, max_size=4),
    rules=rule_sets,
    cuts=page_cuts,
)
def test_property_page_by_page_says_what_detect_says(
    steps: list[Snapshot], rules: Rules, cuts: list[int]
) -> None:
    """Complete listings judged page by page: the same events, ids included (they depend
    on the transition alone), the same baseline and memory, cycle after cycle."""
    whole, paged = _chain(steps, rules), _chain_pages(steps, rules, cuts)
    for a, b in zip(whole, paged, strict=True):
        assert _said(a) == _said(b)
        assert sorted(e.id for e in a.events) == sorted(e.id for e in b.events)
        assert a.memory == b.memory
        assert dict(a.baseline.jobs) == dict(b.baseline.jobs)
    ids = [e.id for d in paged for e in d.events]
    assert len(ids) == len(set(ids))


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(snapshots(), min_size=2, max_size=4),
    rules=rule_sets,
    cuts=page_cuts,
)
def test_property_page_by_page_never_removes_from_an_incomplete_listing(
    steps: list[Snapshot], rules: Rules, cuts: list[int]
) -> None:
    """Pages of a listing that then failed may announce what they showed, never an
    absence; and what they announced is never announced again by the next cycle."""
    paged = _chain_pages(steps, rules, cuts)
    for detection, current in zip(paged, steps, strict=True):
        for event in detection.events:
            if event.kind == REMOVED:
                assert event.region in current.complete_regions
    # A job seen twice in a row with nothing changed and no rule pending says nothing.
    again = _chain_pages([*steps, steps[-1], steps[-1], steps[-1], steps[-1]], rules, cuts)
    assert [e for e in again[-1].events if e.kind != REMOVED] == []


def test_a_job_seen_on_two_pages_is_judged_from_the_first() -> None:
    one = job(job_id="a")
    pages = PageByPage(Snapshot.of([one]), Memory(cycle=3), DEFAULT)
    failed = job(job_id="a", status=FAILED)
    first = pages.judge([failed], T0)
    assert [e.kind for e in first.events] == [STATUS_CHANGED]
    assert pages.judge([one], T0).events == []  # the same job again, older: ignored
    done = pages.finish(Snapshot.of([failed], [RegionOutcome(HZ)]), T0)
    assert done.events == [] and done.baseline.jobs[failed.key] == failed
    assert done.memory.cycle == 4
