"""`tail` without a server: filters, the subject they narrow to, --since, colours, lines."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watcher.events import Event, watcher_event
from watcher.tail import (
    Filters,
    Skipped,
    TailOptions,
    TailUsageError,
    color_wanted,
    parse_since,
    render,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def job_event(
    kind: str = "status_changed",
    severity: Any = "critical",
    region: str = "cn-hangzhou",
    job_id: str = "dtsA",
) -> Event:
    data = {
        "job_id": job_id,
        "job_name": "orders",
        "region": region,
        "direction": "Forward",
        "status": "Failed",
        "previous_status": "Synchronizing",
        "error_message": "boom",
    }
    return Event(
        kind, severity, NOW, data, id=f"{region}-{job_id}-{kind}", region=region, job_id=job_id
    )


STARTED = watcher_event("started", "info", NOW, {"version": "x"})
FAILED = job_event()
DELAY_SH = job_event("delay_threshold_crossed", "warning", "cn-shanghai", "dtsB")
FOUND = job_event("discovered", "info", "cn-hangzhou", "dtsC")


def passing(filters: Filters) -> list[str]:
    events = [STARTED, FAILED, DELAY_SH, FOUND]
    return [e.id for e in events if filters.matches(e.envelope())]


def test_no_filter_passes_everything() -> None:
    assert passing(Filters()) == [STARTED.id, FAILED.id, DELAY_SH.id, FOUND.id]
    assert Filters().subject("dts") == "dts.>"


def test_each_filter_narrows() -> None:
    assert passing(Filters(regions=("cn-shanghai",))) == [DELAY_SH.id]
    assert passing(Filters(jobs=("dtsA", "dtsC"))) == [FAILED.id, FOUND.id]
    assert passing(Filters(kinds=("started", "discovered"))) == [STARTED.id, FOUND.id]
    assert passing(Filters(min_severity="warning")) == [FAILED.id, DELAY_SH.id]
    assert passing(Filters(min_severity="critical")) == [FAILED.id]
    # together: all must hold
    both = Filters(regions=("cn-hangzhou",), min_severity="warning")
    assert passing(both) == [FAILED.id]


@pytest.mark.parametrize(
    ("filters", "subject"),
    [
        (Filters(regions=("cn-hangzhou",)), "dts.job.cn-hangzhou.*.*"),
        (Filters(regions=("a-1", "b-2")), "dts.job.*.*.*"),
        (Filters(jobs=("dtsA",), kinds=("status_changed",)), "dts.job.*.dtsA.status_changed"),
        (Filters(jobs=("odd.id",)), "dts.job.*.odd%2Eid.*"),
        (Filters(kinds=("precheck_failed",)), "dts.job.*.*.precheck_failed"),
        (Filters(kinds=("precheck_failed", "init_failed")), "dts.job.*.*.*"),
        (Filters(kinds=("cycle_incomplete",)), "dts.watcher.cycle_incomplete"),
        (Filters(kinds=("started", "discovered")), "dts.>"),
        (Filters(min_severity="critical"), "dts.>"),
    ],
)
def test_filters_narrow_the_subscription(filters: Filters, subject: str) -> None:
    assert filters.subject("dts") == subject


def test_impossible_filters_are_refused() -> None:
    with pytest.raises(TailUsageError, match="unknown event kind 'nope'"):
        Filters(kinds=("nope",))
    with pytest.raises(TailUsageError, match="job events only"):
        Filters(regions=("cn-hangzhou",), kinds=("started",))


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("90s", timedelta(seconds=90)),
        ("90", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1.5s", timedelta(seconds=1.5)),
    ],
)
def test_since_takes_durations(text: str, ago: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - ago


def test_since_takes_times() -> None:
    assert parse_since("2026-11-28T09:00:00Z", NOW) == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert parse_since("2026-11-28T09:00:00", NOW) == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert parse_since("2026-11-28T17:00:00+08:00", NOW) == datetime(2026, 11, 28, 9, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "1x", "h", "2027-01-01T00:00:00Z"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(TailUsageError, match="--since"):
        parse_since(text, NOW)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colours_only_on_a_terminal_without_no_color() -> None:
    assert color_wanted(None, Tty(), {}) is True
    assert color_wanted(None, io.StringIO(), {}) is False  # piped
    assert color_wanted(None, Tty(), {"NO_COLOR": "1"}) is False
    assert color_wanted(None, Tty(), {"NO_COLOR": ""}) is True  # set but empty: ignored
    assert color_wanted(None, Tty(), {"TERM": "dumb"}) is False
    assert color_wanted(True, io.StringIO(), {"NO_COLOR": "1"}) is True  # --color wins
    assert color_wanted(False, Tty(), {}) is False  # --no-color wins


def test_lines_are_coloured_by_severity_only_when_asked() -> None:
    plain = render(FAILED.to_json(), "x", TailOptions())
    assert plain is not None and "\x1b" not in plain
    coloured = render(FAILED.to_json(), "x", TailOptions(color=True))
    assert coloured is not None
    assert coloured.replace("\x1b[1;31m", "").replace("\x1b[0m", "") == plain
    assert "\x1b[1;31mcritical status_changed\x1b[0m" in coloured
    warning = render(DELAY_SH.to_json(), "x", TailOptions(color=True))
    assert warning is not None and "\x1b[33mwarning  delay_threshold_crossed\x1b[0m" in warning
    info = render(FOUND.to_json(), "x", TailOptions(color=True))
    assert info is not None and info.startswith(f"{FOUND.envelope()['time']} \x1b[32minfo")
    raw = render(FAILED.to_json(), "x", TailOptions(raw_json=True, color=True))
    assert raw == FAILED.to_json().decode()  # raw JSON is never coloured


def test_rejected_and_foreign_messages() -> None:
    only_warnings = TailOptions(filters=Filters(min_severity="warning"))
    assert render(FOUND.to_json(), "x", only_warnings) is None
    for options in (TailOptions(), only_warnings, TailOptions(raw_json=True)):
        # never printed, never dropped silently: a filter cannot judge it either
        skipped = render(b"not json", "dts.x", options)
        assert isinstance(skipped, Skipped) and "not a CloudEvent" in skipped.reason
