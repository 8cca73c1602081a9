"""What is not ok, three ways that must agree: `watcher.board` (computed), the condition
and silence gauges of `/metrics` (from the service's status), and the state file read
only for `dts-watcher status` beside a writing watcher. Also the simulator's means to
script a stall and an expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dts_sim import JobSpec, Scenario, ScenarioState, parse_scenario
from tests.support.watcher import commit
from watcher.board import not_ok
from watcher.detect import Detection, Memory, Rules, detect
from watcher.errors import StateError
from watcher.metrics import Metrics
from watcher.settings.alerting import MaintenanceWindow, Matcher
from watcher.silencing import NO_SILENCES, Silence, Silencing
from watcher.snapshot import FAILED, JobState, RegionOutcome, Snapshot
from watcher.status import Status
from watcher.store import Store
from watcher.store.reader import read_state

HZ = "cn-hangzhou"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RULES = Rules.of(stall_after=60, flap_threshold=0, expiry_warnings=[7])


def job(job_id: str, status: str = "Synchronizing", delay: int = 0, **fields: object) -> JobState:
    return JobState(HZ, job_id, "Forward", f"name {job_id}", status, delay_seconds=delay, **fields)  # type: ignore[arg-type]


def chain(*listings: list[JobState]) -> Detection:
    previous: Snapshot | None = None
    memory = Memory()
    detection = None
    for index, jobs in enumerate(listings):
        detection = detect(
            previous,
            Snapshot.of(jobs, [RegionOutcome(HZ)]),
            memory,
            RULES,
            T0 + timedelta(seconds=30 * index),
        )
        previous, memory = detection.baseline, detection.memory
    assert detection is not None
    return detection


def estate() -> Detection:
    """ok; failed; a critical delay; stalled; expiring in 3 days (at T0 + 90 s)."""
    prepaid = {"pay_type": "PrePaid", "expire_time": T0 + timedelta(days=3)}
    return chain(
        [job("ok"), job("failed"), job("late"), job("stuck", delay=0), job("renew", **prepaid)],
        [
            job("ok"),
            job("failed", FAILED),
            job("late", delay=400),
            job("stuck", delay=30),
            job("renew", **prepaid),
        ],
        [
            job("ok"),
            job("failed", FAILED),
            job("late", delay=400),
            job("stuck", delay=60),
            job("renew", **prepaid),
        ],
        [
            job("ok"),
            job("failed", FAILED),
            job("late", delay=400),
            job("stuck", delay=90),
            job("renew", **prepaid),
        ],
    )


NOW = T0 + timedelta(seconds=100)


def test_the_board_lists_what_is_not_ok_most_severe_first() -> None:
    detection = estate()
    covering = Silence("s1", Matcher(job_id="failed"), T0, T0 + timedelta(hours=1))
    rows = not_ok(detection.baseline, detection.memory.jobs, RULES, Silencing([covering]), NOW)
    seen = [(r.job.job_id, [(c.name, c.severity) for c in r.conditions], r.silenced) for r in rows]
    assert seen == [
        ("failed", [("Failed", "critical")], "s1"),
        ("late", [("critical", "critical")], None),
        ("stuck", [("warning", "warning"), ("stalled", "critical")], None),
        ("renew", [("expiring", "warning")], None),
    ]
    failed = rows[0].to_dict(NOW)
    assert failed["conditions"][0]["since"] == "2024-05-01T12:00:30Z"
    assert failed["conditions"][0]["duration_seconds"] == 70
    stuck = rows[2].to_dict(NOW)["conditions"][1]
    assert stuck["since"] == "2024-05-01T12:00:30Z"  # where the run began, not when it was said


def test_condition_and_silence_gauges_show_the_same_picture() -> None:
    detection = estate()
    window = MaintenanceWindow(
        name="noon", match=Matcher(job_id="late"), start="11:00", end="13:00"
    )
    status = Status(
        baseline=detection.baseline,
        memory=detection.memory,
        rules=RULES,
        silencing=lambda: Silencing(windows=[window]),
        silences_followed=lambda: True,
        now=lambda: NOW,
    )
    metrics = Metrics(status, max_job_series=3)
    metrics.observe_held({"status_changed": 2})

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    labels = {"region": HZ, "direction": "Forward", "account": "default"}
    assert (
        value(
            "dts_watcher_job_condition",
            job_id="late",
            job_name="name late",
            condition="critical",
            kind="delay",
            severity="critical",
            silenced="maintenance:noon",
            **labels,
        )
        == 1
    )
    assert (
        value(
            "dts_watcher_job_condition",
            job_id="failed",
            job_name="name failed",
            condition="Failed",
            kind="status",
            severity="critical",
            silenced="",
            **labels,
        )
        == 1
    )
    assert value("dts_watcher_job_condition_series_dropped") == 2  # five firing, three kept
    assert value("dts_watcher_silence_active", silence="maintenance:noon", match="job_id=late") == 1
    assert value("dts_watcher_silences_followed") == 1
    assert value("dts_watcher_events_held_total", kind="status_changed") == 2
    # Nothing firing, nothing exported: the series set is bounded by what is wrong.
    quiet = Metrics(Status(baseline=Snapshot.of([job("ok")]), rules=RULES, now=lambda: NOW))
    text = quiet.registry.collect()
    assert not [s for m in text if m.name == "dts_watcher_job_condition" for s in m.samples]


def test_the_state_file_is_read_as_committed_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    detection = estate()
    with Store.open(path) as store:
        store.load()
        commit(store, detection)
        baseline, memory = read_state(path)  # beside the open, writing store
        assert dict(baseline.jobs) == dict(detection.baseline.jobs)
        assert memory == detection.memory
        # The watcher commits again meanwhile: a reader sees the new cycle as a whole.
        commit(store, chain([job("ok", FAILED)]))
        again, _ = read_state(path)
        assert list(again.jobs) == [job("ok").key]
    assert not_ok(baseline, memory.jobs, RULES, NO_SILENCES, NOW)
    stamp = path.stat().st_mtime_ns
    read_state(path)
    assert path.stat().st_mtime_ns == stamp


def test_an_unusable_state_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file"):
        read_state(tmp_path / "missing.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match="cannot be read"):
        read_state(junk)
    path = tmp_path / "old.sqlite3"
    with Store.open(path) as store:
        store._db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="schema 2"):
        read_state(path)


# ---------------------------------------------------------------------------- simulator

SCRIPT = """
[[jobs]]
id = "dtsstall"
region = "cn-hangzhou"
delay = 5

[[jobs]]
id = "dtsexpire"
region = "cn-hangzhou"
pay_type = "PrePaid"
expires_in = "36h"

[[steps]]
set.dtsstall = { stalled = true }

[[steps]]
set.dtsstall = { stalled = "", delay = 2 }
set.dtsexpire = { expires_in = "-1h" }
"""


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def test_the_simulator_scripts_a_stall_and_an_expiry() -> None:
    clock = Clock()
    state = ScenarioState(parse_scenario(SCRIPT), clock)
    stall, expiring = state.get("dtsstall"), state.get("dtsexpire")
    assert stall is not None and expiring is not None
    assert state.render(expiring)["ExpireTime"] == "2024-05-03T00:00:00Z"  # 36 h after T0
    assert state.render(stall)["Delay"] == "5"
    state.advance()
    clock.at += timedelta(seconds=90)
    stalled = state.get("dtsstall")
    assert stalled is not None and stalled.stalled
    assert state.render(stalled)["Delay"] == "95"  # one second a second
    clock.at += timedelta(seconds=10)
    assert state.render(stalled)["Delay"] == "105"
    state.advance()
    moving = state.get("dtsstall")
    assert moving is not None and state.render(moving)["Delay"] == "2"
    expired = state.get("dtsexpire")
    assert expired is not None
    assert state.render(expired)["ExpireTime"] == "2024-05-01T11:01:40Z"  # an hour before now


def test_expires_in_must_be_a_duration() -> None:
    with pytest.raises(Exception, match="expires_in"):
        parse_scenario('[[jobs]]\nid = "x"\nregion = "cn-hangzhou"\nexpires_in = "soon"\n')
    spec = JobSpec(id="x", region=HZ, expires_in="2d")
    assert ScenarioState(Scenario(jobs=[spec])).get("x").expire_time is not None  # type: ignore[union-attr]
