"""The alert semantics of Contract v1.1 through the pure detection: stalls, flapping,
reminders, expiry and per-job overrides (`watcher.rules.stall`, `flap`, `reminder`,
`expiry`, `Rules.for_job`).

Each rule is a table: one job observed at given moments (seconds after T0), fed through
`detect` the way the service does (baseline and memory feed the next cycle), and the
events expected at each moment. Hypothesis then checks what must hold for any sequence:
a job that flaps N times says exactly one `flapping` up and at most threshold - 1
changes before it; no reminder is lost on a consumer that skips silenced events; the
stored forms of the new memories give the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_detect import _chain, _chain_pages, _said
from watcher import kinds
from watcher.detect import Detection, Memory, Rules, detect
from watcher.events import Event
from watcher.rules import decode_memory
from watcher.settings.alerting import MaintenanceWindow, Matcher
from watcher.silencing import NO_SILENCES, Silence, Silencing
from watcher.snapshot import (
    FAILED,
    FINISHED,
    INITIALIZING,
    PRECHECKING,
    SUSPENDING,
    SYNCHRONIZING,
    JobKey,
    JobState,
    RegionOutcome,
    Snapshot,
)

HZ = "cn-hangzhou"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STALLED = kinds.STALLED.name
FLAPPING = kinds.FLAPPING.name
REMINDER = kinds.REMINDER.name
EXPIRING = kinds.EXPIRING.name
STATUS_CHANGED = kinds.STATUS_CHANGED.name
DELAY = kinds.DELAY_THRESHOLD_CROSSED.name
QUIET: dict[str, Any] = {
    "flap_threshold": 0,
    "repeat_interval": 0,
    "stall_after": 0,
    "expiry_warnings": [],
    "delay_thresholds": {"critical": 10**7},  # out of the way, unless a test sets them
}


def job(
    status: str = SYNCHRONIZING,
    delay: int | None = 0,
    *,
    job_id: str = "dtsj1",
    checkpoint: str | None = None,
    pay_type: str | None = None,
    expire: datetime | None = None,
    tags: dict[str, str] | None = None,
    name: str | None = None,
    error: str | None = None,
) -> JobState:
    return JobState(
        region=HZ,
        job_id=job_id,
        direction="Forward",
        job_name=name or f"name-{job_id}",
        status=status,
        delay_seconds=delay,
        checkpoint=checkpoint,
        pay_type=pay_type,
        expire_time=expire,
        tags=tuple(sorted((tags or {}).items())),
        error_message=error,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


Step = tuple[float, JobState | Sequence[JobState]]


def run(
    steps: Sequence[Step],
    rules: Rules,
    silences: Sequence[Silencing] | None = None,
    memory: Memory | None = None,
) -> list[Detection]:
    """Each step: (seconds after T0, the job or jobs listed then), chained as the service
    chains cycles; `silences[i]` is what covers what at step i."""
    previous: Snapshot | None = None
    memory = memory or Memory()
    out = []
    for index, (seconds, listed) in enumerate(steps):
        jobs = [listed] if isinstance(listed, JobState) else list(listed)
        current = Snapshot.of(jobs, [RegionOutcome(HZ)])
        silencing = silences[index] if silences is not None else NO_SILENCES
        detection = detect(previous, current, memory, rules, at(seconds), silences=silencing)
        out.append(detection)
        previous, memory = detection.baseline, detection.memory
    return out


def view(event: Event) -> tuple[Any, ...]:
    d = event.data
    if event.kind == STALLED:
        return (STALLED, event.severity, d["change"], d["stalled_seconds"], d["delay_seconds"])
    if event.kind == FLAPPING:
        return (FLAPPING, event.severity, d["change"], d["changes"])
    if event.kind == REMINDER:
        return (REMINDER, event.severity, d["condition"], d["duration_seconds"], d["reason"])
    if event.kind == EXPIRING:
        return (EXPIRING, event.severity, d["days_left"], d["warning_days"])
    if event.kind == STATUS_CHANGED:
        return (STATUS_CHANGED, event.severity, d["previous_status"], d["status"])
    if event.kind == DELAY:
        return (DELAY, event.severity, d["previous_level"], d["level"])
    return (event.kind, event.severity)


def views(detections: Sequence[Detection]) -> list[list[tuple[Any, ...]]]:
    return [[view(e) for e in d.events if e.kind != "discovered"] for d in detections]


def check(steps: Sequence[tuple[float, JobState, list[tuple[Any, ...]]]], rules: Rules) -> None:
    detections = run([(t, state) for t, state, _ in steps], rules)
    assert views(detections) == [expected for _, _, expected in steps]


def rules(**settings: Any) -> Rules:
    return Rules.of(**{**QUIET, **settings})


# ----------------------------------------------------------------------------- stalled

STALL = rules(stall_after=600)

STALL_TABLES = [
    pytest.param(
        STALL,
        [
            (0, job(delay=2), []),
            (30, job(delay=32), []),  # grew 30 in 30 s: a run starts here
            (330, job(delay=332), []),
            (600, job(delay=602), []),
            (630, job(delay=632), [(STALLED, "critical", "up", 600, 632)]),
            (660, job(delay=662), []),  # said once
            (690, job(delay=20), [(STALLED, "info", "down", 660, 20)]),
            (720, job(delay=50), []),  # a new run: it takes stall_after again
        ],
        id="delay-grows-with-the-clock-up-then-down",
    ),
    pytest.param(
        STALL,
        [
            (0, job(delay=0), []),
            *((30 * i, job(delay=20 * i), []) for i in range(1, 40)),
        ],
        id="growing-slower-than-0.9-per-second-is-moving",
    ),
    pytest.param(
        STALL,
        [
            (0, job(delay=0), []),
            *((30 * i, job(delay=30 * i), []) for i in range(1, 12)),
            # DTS had not refreshed the delay: averaged over the run (300 s in 330 s),
            # it still grows at 0.9 s per second or more, so the run goes on.
            (360, job(delay=330), []),
            (630, job(delay=630), [(STALLED, "critical", "up", 600, 630)]),
        ],
        id="a-poll-that-missed-an-update-does-not-break-the-run",
    ),
    pytest.param(
        STALL,
        [
            (0, job(delay=0), []),
            (30, job(delay=30), []),
            (630, job(delay=630), [(STALLED, "critical", "up", 600, 630)]),
            (
                660,
                job(SUSPENDING, 660),
                [
                    (STATUS_CHANGED, "warning", SYNCHRONIZING, SUSPENDING),
                    (STALLED, "info", "down", 630, 660),
                ],
            ),
        ],
        id="leaving-synchronizing-ends-the-stall",
    ),
    pytest.param(
        STALL,
        [
            (0, job(delay=5, checkpoint="1714564800"), []),
            (30, job(delay=7, checkpoint="1714564800"), []),  # slow growth, but it stands
            (300, job(delay=9, checkpoint="1714564800"), []),
            (630, job(delay=11, checkpoint="1714564800"), [(STALLED, "critical", "up", 600, 11)]),
            (660, job(delay=12, checkpoint="1714565460"), [(STALLED, "info", "down", 630, 12)]),
        ],
        id="checkpoint-standing-still-while-the-delay-grows",
    ),
    pytest.param(
        STALL,
        [
            (0, job(delay=5, checkpoint="100"), []),
            (30, job(delay=40, checkpoint="130"), []),
            *((30 * i, job(delay=30 * i, checkpoint=str(100 + 30 * i)), []) for i in range(2, 30)),
        ],
        id="checkpoint-moving-is-not-a-stall-even-if-the-delay-grows",
    ),
    pytest.param(
        rules(stall_after=0),
        [(30 * i, job(delay=30 * i), []) for i in range(40)],
        id="stall-after-0-is-off",
    ),
    pytest.param(
        STALL,
        [
            (30 * i, job(FAILED, 30 * i), [] if i else [(STATUS_CHANGED, "critical", None, FAILED)])
            for i in range(40)
        ],
        id="only-a-job-that-should-move-can-stall",
    ),
]


@pytest.mark.parametrize(("rule_set", "steps"), STALL_TABLES)
def test_stalled(rule_set: Rules, steps: list[tuple[float, JobState, list[Any]]]) -> None:
    check(steps, rule_set)


def test_a_stall_is_timed_on_unchanged_cycles_and_ends_when_the_delay_stops_growing() -> None:
    detections = run(
        [
            (0, job(delay=0)),
            (30, job(delay=30)),
            (630, job(delay=630)),  # up
            (660, job(delay=630)),  # unchanged: the delay no longer grows with the clock,
            (690, job(delay=630)),  # but over the whole run it still did, 0.9 s a second
            (720, job(delay=630)),  # and now no longer: 600 s in 690 s
            (750, job(delay=630)),
        ],
        STALL,
    )
    assert views(detections)[2:] == [
        [(STALLED, "critical", "up", 600, 630)],
        [],
        [],
        [(STALLED, "info", "down", 690, 630)],
        [],
    ]
    assert not detections[-1].memory.jobs  # nothing left to time: the steady state is free


def test_a_steady_job_keeps_no_stall_memory() -> None:
    detections = run([(30 * i, job(delay=3)) for i in range(5)], STALL)
    assert all(not d.memory.jobs for d in detections)


def test_stall_data_and_severity() -> None:
    detections = run([(0, job(delay=0)), (30, job(delay=30)), (630, job(delay=630))], STALL)
    (event,) = detections[-1].events
    assert event.data["stalled_seconds"] == 600
    assert event.data["checkpoint"] is None
    assert event.severity == "critical"
    assert event.envelope()["type"] == "dts.job.stalled"


# ---------------------------------------------------------------------------- flapping

FLAP = rules(flap_threshold=3, flap_window=600)
LEVELS = {"warning": 60, "critical": 300}


def flips(times: Sequence[float], start: str = SYNCHRONIZING) -> list[tuple[float, JobState]]:
    out = []
    status = start
    for t in times:
        out.append((t, job(status)))
        status = FAILED if status == SYNCHRONIZING else SYNCHRONIZING
    return out


def test_flapping_holds_changes_back_and_says_where_it_ended() -> None:
    steps = [*flips([0, 30, 60, 90, 120]), (200, job(SYNCHRONIZING)), (270, job(SYNCHRONIZING))]
    detections = run(steps, FLAP)
    assert views(detections) == [
        [],
        [(STATUS_CHANGED, "critical", SYNCHRONIZING, FAILED)],
        [(STATUS_CHANGED, "info", FAILED, SYNCHRONIZING)],
        [(FLAPPING, "warning", "up", 3)],  # the third change: held back, flapping instead
        [],  # held
        [],  # steady since 120, not yet for a quarter of the window (150 s)
        [(FLAPPING, "info", "down", 4)],  # it ended as it was before flapping: no summary
    ]
    assert sum(d.held.get(STATUS_CHANGED, 0) for d in detections) == 2
    assert not detections[-1].memory.jobs


def test_flapping_ends_with_one_status_changed_when_the_status_differs() -> None:
    steps = [*flips([0, 30, 60, 90, 120, 150]), (400, job(FAILED, error="gone"))]
    detections = run(steps, FLAP)
    assert views(detections)[-1] == [
        (FLAPPING, "info", "down", 5),
        (STATUS_CHANGED, "critical", SYNCHRONIZING, FAILED),
    ]
    last = detections[-1].events
    summary = [e for e in last if e.kind == STATUS_CHANGED]
    # Before flapping (at 60) consumers had heard "Synchronizing"; it ended Failed.
    assert [
        (e.data["previous_status"], e.data["status"], e.data["error_message"]) for e in summary
    ] == [(SYNCHRONIZING, FAILED, "gone")]


def test_flapping_summary_of_the_delay_level() -> None:
    delays = [0, 100, 0, 100, 0, 100, 100]
    steps = [(30 * i, job(delay=d)) for i, d in enumerate(delays)] + [(400, job(delay=100))]
    detections = run(steps, rules(flap_threshold=3, flap_window=600, delay_thresholds=LEVELS))
    said = views(detections)
    assert said[3] == [(FLAPPING, "warning", "up", 3)]
    assert said[-1] == [(FLAPPING, "info", "down", 5), (DELAY, "warning", "ok", "warning")]


def test_lifecycle_steps_are_progress_not_flapping() -> None:
    lifecycle = [job(s, None) for s in ("NotStarted", PRECHECKING, INITIALIZING)]
    lifecycle += [job(SYNCHRONIZING, 0), job(FINISHED, None)]
    detections = run([(i, state) for i, state in enumerate(lifecycle)], FLAP)
    assert [kind for d in detections for kind, *_ in views([d])[0]] == [STATUS_CHANGED] * 4


def test_changes_older_than_the_window_do_not_count_and_are_forgotten() -> None:
    detections = run(flips([0, 30, 1000, 1030, 2000]), FLAP)
    assert all(FLAPPING not in [v[0] for v in vs] for vs in views(detections))
    # An unchanged job forgets its old changes once they leave the window.
    later = run([*flips([0, 30]), (700, job(FAILED))], FLAP)
    assert "flap" not in later[-1].memory.jobs[job().key].parts


@settings(max_examples=200, deadline=None)
@given(
    threshold=st.integers(2, 6),
    gaps=st.lists(st.integers(1, 60), min_size=1, max_size=20),
)
def test_property_a_job_that_flaps_says_one_flapping_up_and_fewer_than_threshold_changes(
    threshold: int, gaps: list[int]
) -> None:
    """Flips within one window: exactly one `flapping` up when there are at least
    `threshold` of them, and at most threshold - 1 status events before it is steady."""
    times = [0.0]
    for gap in gaps:
        times.append(times[-1] + gap)  # all within 20 x 60 s < the window
    changes = len(times) - 1
    window = 3600
    detections = run(flips(times), rules(flap_threshold=threshold, flap_window=window))
    said = [view(e) for d in detections for e in d.events if e.kind != "discovered"]
    ups = [v for v in said if v[:3] == (FLAPPING, "warning", "up")]
    statuses = [v for v in said if v[0] == STATUS_CHANGED]
    assert len(ups) == (1 if changes >= threshold else 0)
    assert len(statuses) <= threshold - 1
    assert len(statuses) + sum(d.held.get(STATUS_CHANGED, 0) for d in detections) == changes
    # Then steady: one down, and the status is told again if it differs.
    final = job(FAILED if changes % 2 else SYNCHRONIZING)
    end = run(
        [*flips(times), (times[-1] + window, final)],
        rules(flap_threshold=threshold, flap_window=window),
    )
    tail = views(end)[-1]
    if ups:
        assert tail[0] == (FLAPPING, "info", "down", changes)
        before = SYNCHRONIZING if threshold % 2 else FAILED  # status before the flap
        told = [v for v in tail if v[0] == STATUS_CHANGED]
        assert told == ([] if final.status == before else [told[0]])
    else:
        assert tail == []


# ---------------------------------------------------------------------------- reminders

REMIND = rules(repeat_interval=120)


def test_a_critical_condition_is_reminded_every_repeat_interval() -> None:
    steps = [(0, job()), *((30 * i, job(FAILED, error="x")) for i in range(1, 12))]
    detections = run(steps, REMIND)
    said = views(detections)
    assert said[1] == [(STATUS_CHANGED, "critical", SYNCHRONIZING, FAILED)]
    reminders = [(i, v) for i, vs in enumerate(said) for v in vs if v[0] == REMINDER]
    assert reminders == [
        (5, (REMINDER, "critical", FAILED, 120, "repeat")),
        (9, (REMINDER, "critical", FAILED, 240, "repeat")),
    ]
    event = next(e for e in detections[5].events if e.kind == REMINDER)
    assert event.data["since"] == "2024-05-01T12:00:30Z"


def test_warnings_are_not_repeated_and_a_recovered_job_is_forgotten() -> None:
    steps = [(30 * i, job(delay=100)) for i in range(12)] + [(400, job(delay=1))]
    detections = run(steps, REMIND)
    assert not [v for vs in views(detections) for v in vs if v[0] == REMINDER]
    assert not detections[-1].memory.jobs


def test_repeat_interval_0_is_off() -> None:
    steps = [(3600 * i, job(FAILED)) for i in range(5)]
    assert not [
        v for vs in views(run(steps, rules(repeat_interval=0))) for v in vs if v[0] == REMINDER
    ]


def test_a_stall_is_reminded_like_any_critical_condition() -> None:
    steps = [(0, job(delay=0)), *((30 * i, job(delay=30 * i)) for i in range(1, 30))]
    detections = run(steps, rules(stall_after=300, repeat_interval=300))
    said = [v for vs in views(detections) for v in vs if v[0] in (STALLED, REMINDER)]
    assert said[0] == (STALLED, "critical", "up", 300, 330)
    assert (REMINDER, "critical", "stalled", 600, "repeat") in said


def silence_on(job_id: str, start: float, end: float, sid: str = "s1") -> Silence:
    return Silence(sid, Matcher(job_id=job_id), at(start), at(end), "ops", "db upgrade")


def test_a_silence_marks_the_events_and_its_end_reminds_what_is_still_wrong() -> None:
    silence = Silencing([silence_on("dtsj1", 20, 100)])
    steps = [
        (0, job()),
        (30, job(FAILED)),
        (60, job(FAILED)),
        (90, job(FAILED)),
        (120, job(FAILED)),
        (150, job(FAILED)),
    ]
    detections = run(steps, rules(repeat_interval=0), [silence] * len(steps))
    events = [
        [(e.kind, e.silenced) for e in d.events if e.kind != "discovered"] for d in detections
    ]
    assert events == [
        [],
        [(STATUS_CHANGED, "s1")],  # said, logged, published: marked
        [],
        [],
        [(REMINDER, None)],  # the silence ended at 100: reminded at once
        [],
    ]
    reminder = detections[4].events[0]
    assert reminder.data["reason"] == "silence_ended"
    assert reminder.severity == "critical"
    assert reminder.data["condition"] == FAILED and reminder.data["duration_seconds"] == 90


def test_a_condition_that_came_and_went_within_a_silence_needs_no_reminder() -> None:
    silence = Silencing([silence_on("dtsj1", 20, 100)])
    steps = [(0, job()), (30, job(FAILED)), (60, job()), (120, job()), (150, job())]
    detections = run(steps, REMIND, [silence] * len(steps))
    assert [v for vs in views(detections) for v in vs if v[0] == REMINDER] == []


def test_a_maintenance_window_that_ends_reminds_too() -> None:
    window = MaintenanceWindow(name="nightly", match=Matcher(), start="12:00", end="12:02")
    silencing = Silencing(windows=[window])
    steps = [(0, job(FAILED)), (60, job(FAILED)), (120, job(FAILED)), (150, job(FAILED))]
    detections = run(steps, rules(), [silencing] * len(steps))
    marks = [[(e.kind, e.silenced, e.data.get("reason")) for e in d.events] for d in detections]
    assert marks == [
        [
            ("discovered", "maintenance:nightly", None),
            (STATUS_CHANGED, "maintenance:nightly", None),
        ],
        [],
        [(REMINDER, None, "silence_ended")],
        [],
    ]


def test_another_silence_taking_over_is_not_an_end() -> None:
    one, two = silence_on("dtsj1", 0, 100, "one"), silence_on("dtsj1", 50, 200, "two")
    silencing = Silencing([one, two])
    steps = [(0, job(FAILED)), (90, job(FAILED)), (120, job(FAILED)), (210, job(FAILED))]
    detections = run(steps, rules(), [silencing] * len(steps))
    assert [
        [(e.kind, e.silenced) for e in d.events if e.kind != "discovered"] for d in detections
    ] == [
        [(STATUS_CHANGED, "one")],
        [],
        [],
        [(REMINDER, None)],
    ]


@settings(max_examples=300, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.booleans(), st.booleans()),  # (failed?, covered by the silence?)
        min_size=1,
        max_size=25,
    ),
    repeat=st.sampled_from([0, 60, 90]),
)
def test_property_no_reminder_while_silenced_is_lost(
    plan: list[tuple[bool, bool]], repeat: int
) -> None:
    """A consumer that skips silenced events: whenever the job is not covered and is
    failed, that consumer knows it is failed (from an unsilenced status_changed, or a
    reminder once the silence ended)."""
    silences = []
    steps = []
    for i, (failed, covered) in enumerate(plan):
        t = 30 * i
        silence = Silence("s", Matcher(job_id="dtsj1"), at(t - 1), at(t + 1), "ops")
        silences.append(Silencing([silence]) if covered else NO_SILENCES)
        steps.append((t, job(FAILED if failed else SYNCHRONIZING)))
    detections = run(steps, rules(repeat_interval=repeat), silences)
    knows_failed = False
    for (failed, covered), detection in zip(plan, detections, strict=True):
        for event in detection.events:
            assert (event.silenced is not None) == covered
            if event.silenced is not None:
                continue
            if event.kind == STATUS_CHANGED:
                knows_failed = event.data["status"] == FAILED
            elif event.kind == REMINDER and event.data["condition"] == FAILED:
                knows_failed = True
        if failed and not covered:
            assert knows_failed


# ---------------------------------------------------------------------------- expiring

DAY = 86400


def prepaid(expire_in_days: float, status: str = SYNCHRONIZING) -> JobState:
    return job(status, pay_type="PrePaid", expire=T0 + timedelta(days=expire_in_days))


def test_one_warning_per_threshold_critical_within_a_day_and_once_expired() -> None:
    state = prepaid(10)
    days = [0, 2, 3, 3.5, 8, 9, 9.5, 10, 11, 30]
    detections = run([(d * DAY, state) for d in days], rules(expiry_warnings=[7, 1]))
    assert views(detections) == [
        [],
        [],
        [(EXPIRING, "warning", 7.0, 7)],
        [],
        [],
        [(EXPIRING, "critical", 1.0, 1)],
        [],
        [(EXPIRING, "critical", 0.0, 0)],
        [],
        [],
    ]
    event = detections[2].events[0]
    assert event.data["expire_time"] == "2024-05-11T12:00:00Z"


def test_first_seen_close_to_expiry_says_only_the_nearest_warning() -> None:
    detections = run([(0, prepaid(0.5)), (DAY, prepaid(0.5))], rules(expiry_warnings=[7, 1]))
    assert views(detections) == [
        [(EXPIRING, "critical", 0.5, 1)],
        [(EXPIRING, "critical", -0.5, 0)],
    ]


def test_a_renewed_job_starts_over_and_postpaid_jobs_are_not_watched() -> None:
    near, renewed = prepaid(3), prepaid(300)
    detections = run([(0, near), (DAY, renewed), (294 * DAY, renewed)], rules(expiry_warnings=[7]))
    assert views(detections) == [
        [(EXPIRING, "warning", 3.0, 7)],
        [],
        [(EXPIRING, "warning", 6.0, 7)],
    ]
    postpaid = job(pay_type="PostPaid", expire=T0)
    assert views(run([(0, postpaid), (DAY, postpaid)], rules(expiry_warnings=[7]))) == [[], []]


def test_expiry_quiet_on_first_sight_when_existing_conditions_are_not_announced() -> None:
    quiet = rules(expiry_warnings=[7, 1], announce_existing=False)
    detections = run([(0, prepaid(3)), (DAY, prepaid(3)), (2.5 * DAY, prepaid(3))], quiet)
    assert views(detections) == [[], [], [(EXPIRING, "critical", 0.5, 1)]]


def test_an_expiring_job_is_reminded_when_critical() -> None:
    steps = [(0, prepaid(0.5)), (3600, prepaid(0.5)), (7200, prepaid(0.5))]
    said = views(run(steps, rules(expiry_warnings=[1], repeat_interval=3600)))
    assert said[2] == [(REMINDER, "critical", "expiring", 7200, "repeat")]


# ---------------------------------------------------------------------------- overrides


def test_overrides_first_match_wins_for_thresholds_and_timings() -> None:
    rule_set = Rules.of(
        **{**QUIET, "repeat_interval": 600, "delay_thresholds": LEVELS},
        overrides=[
            {"match": {"tags": {"env": "test"}}, "delay_thresholds": {"warning": 3600}},
            {"match": {"job_name": "orders-*"}, "delay_for_cycles": 2, "repeat_interval": 60},
            {"match": {"job_name": "orders-*", "region": HZ}, "delay_thresholds": {"x": 1}},
        ],
    )
    prod = job(delay=0, job_id="a", name="orders-eu", tags={"env": "prod"})
    test = job(delay=0, job_id="b", name="orders-test", tags={"env": "test"})
    plain = job(delay=0, job_id="c", name="billing")
    assert rule_set.for_job(test).judges[3].names == ["warning"]  # type: ignore[attr-defined]
    steps: list[Step] = [
        (0, [prod, test, plain]),
        (
            30,
            [
                job(delay=100, job_id=j.job_id, name=j.job_name, tags=dict(j.tags))
                for j in (prod, test, plain)
            ],
        ),
        (
            60,
            [
                job(delay=100, job_id=j.job_id, name=j.job_name, tags=dict(j.tags))
                for j in (prod, test, plain)
            ],
        ),
    ]
    detections = run(steps, rule_set)
    said = [
        [(e.data["job_id"], e.data["level"]) for e in d.events if e.kind == DELAY]
        for d in detections
    ]
    # plain: the default (60 s), at once; prod: 2 cycles (the second override); test: 3600 s.
    assert said == [[], [("c", "warning")], [("a", "warning")]]


def test_override_of_repeat_interval_and_stall_after() -> None:
    rule_set = Rules.of(
        **{**QUIET, "repeat_interval": 3600, "stall_after": 3600},
        overrides=[{"match": {"job_id": "fast"}, "repeat_interval": 60, "stall_after": 60}],
    )
    steps: list[Step] = [
        (30 * i, [job(FAILED, job_id="fast"), job(FAILED, job_id="slow")]) for i in range(5)
    ]
    said = [
        (e.data["job_id"], e.kind)
        for d in run(steps, rule_set)
        for e in d.events
        if e.kind == REMINDER
    ]
    assert said == [("fast", REMINDER), ("fast", REMINDER)]  # at 60 s and 120 s


# -------------------------------------------------------------------- memory round trip


def test_the_stored_forms_of_the_new_memories_give_the_same_events() -> None:
    rule_set = rules(
        stall_after=60, repeat_interval=60, flap_threshold=3, flap_window=600, expiry_warnings=[1]
    )
    states = [
        job(delay=0, pay_type="PrePaid", expire=at(200)),
        job(delay=30, pay_type="PrePaid", expire=at(200)),
        job(FAILED, 60, pay_type="PrePaid", expire=at(200)),
        job(delay=90, pay_type="PrePaid", expire=at(200)),
        job(FAILED, 120, pay_type="PrePaid", expire=at(200)),
        job(FAILED, 120, pay_type="PrePaid", expire=at(200)),
        job(FAILED, 120, pay_type="PrePaid", expire=at(200)),
        job(FAILED, 120, pay_type="PrePaid", expire=at(200)),
    ]
    steps = [(30 * i, s) for i, s in enumerate(states)]
    direct = run(steps, rule_set)
    previous: Snapshot | None = None
    memory = Memory()
    stored = []
    for (t, state), _ in zip(steps, direct, strict=True):
        detection = detect(
            previous, Snapshot.of([state], [RegionOutcome(HZ)]), memory, rule_set, at(t)
        )
        stored.append(detection.events)
        previous = detection.baseline
        memory = Memory(
            detection.memory.cycle,
            {
                JobKey.decode(k.encode()): decode_memory(m.to_dict())
                for k, m in detection.memory.jobs.items()
            },
        )
        assert memory == detection.memory
    assert stored == [d.events for d in direct]
    kinds_said = {e.kind for d in direct for e in d.events}
    assert {FLAPPING, EXPIRING, REMINDER} <= kinds_said


# ------------------------------------------------------------------- across every rule

SHORT = Rules.of(
    stall_after=60,
    repeat_interval=60,
    flap_threshold=3,
    flap_window=600,
    expiry_warnings=[1],
)
alert_jobs = st.builds(
    job,
    status=st.sampled_from([SYNCHRONIZING, FAILED, SUSPENDING, "Migrating"]),
    delay=st.none() | st.integers(0, 400),
    job_id=st.sampled_from(["dtsA", "dtsB"]),
    checkpoint=st.none() | st.sampled_from(["100", "200"]),
    pay_type=st.sampled_from([None, "PrePaid"]),
    expire=st.sampled_from([None, T0 + timedelta(seconds=100), T0 + timedelta(days=3)]),
)


@settings(max_examples=150, deadline=None)
@given(
    listings=st.lists(st.lists(alert_jobs, max_size=3), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 3), max_size=2),
)
def test_property_page_by_page_says_what_detect_says_with_every_alert_rule(
    listings: list[list[JobState]], cuts: list[int]
) -> None:
    steps = [Snapshot.of(jobs, [RegionOutcome(HZ)]) for jobs in listings]
    whole, paged = _chain(steps, SHORT), _chain_pages(steps, SHORT, cuts)
    for a, b in zip(whole, paged, strict=True):
        assert _said(a) == _said(b)
        assert a.memory == b.memory
    again = _chain(steps, SHORT)  # and deterministic
    assert [d.events for d in again] == [d.events for d in whole]
