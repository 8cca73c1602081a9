"""Per-region read health: announced once when blind for N cycles, once on recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.snapshot import RegionOutcome, Snapshot
from watcher.source_health import SourceHealth, track

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def cycle(**failing: str) -> Snapshot:
    regions = [
        RegionOutcome(name, error=failing.get(name.replace("-", "_")), error_code="Code")
        for name in ("cn-hangzhou", "cn-shanghai")
    ]
    return Snapshot.of([], regions)


def test_unavailable_after_n_cycles_then_recovered_once() -> None:
    health = SourceHealth()
    said: list[list[str]] = []
    script = [
        cycle(cn_hangzhou="boom"),
        cycle(cn_hangzhou="boom"),
        cycle(cn_hangzhou="still boom"),  # third failure: announced
        cycle(cn_hangzhou="still boom"),  # not again
        cycle(),  # recovered
        cycle(),  # nothing more
    ]
    for n, snapshot in enumerate(script):
        out, health = track(health, snapshot, 3, T0 + timedelta(minutes=n))
        said.append([f"{kind}:{data['region']}" for kind, _, data in out])
    assert said == [
        [],
        [],
        ["source_unavailable:cn-hangzhou"],
        [],
        ["source_recovered:cn-hangzhou"],
        [],
    ]


def test_the_announcement_carries_the_last_error_and_since_when() -> None:
    health = SourceHealth()
    out, health = track(health, cycle(cn_shanghai="first"), 2, T0)
    out, health = track(health, cycle(cn_shanghai="second"), 2, T0 + timedelta(minutes=1))
    ((kind, severity, data),) = out
    assert (kind, severity) == ("source_unavailable", "critical")
    assert data["error_message"] == "second" and data["unavailable_since"] == "2026-11-28T12:00:00Z"
    assert data["failed_cycles"] == 2


def test_a_blip_shorter_than_n_cycles_says_nothing() -> None:
    health = SourceHealth()
    for snapshot in (
        cycle(cn_hangzhou="x"),
        cycle(cn_hangzhou="x"),
        cycle(),
        cycle(cn_hangzhou="x"),
    ):
        out, health = track(health, snapshot, 3, T0)
        assert out == []
