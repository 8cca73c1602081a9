"""Silences and maintenance windows, as data: which one covers a job at a given moment.

A *silence* is an operator's: a matcher, a start and an end, an author and a comment,
kept in a JetStream key-value bucket (`watcher.silence_bucket`) so that every replica and
every operator sees the same ones. A *maintenance window* is configured
(`rules.maintenance`) and recurs: on given weekdays, from a start to an end time of day
in a time zone; its id is `maintenance:<name>`.

An event about a job covered by either is still published and logged, with the
CloudEvents extension attribute `silenced` set to the id (`detect` sets it as it makes
the event, from the `Silencing` it was handed). Nothing here does I/O or reads a clock:
the moment is always an argument, so detection stays pure and the rules can be given
the silence state as data (reminders need to know when a silence ended).

Windows are wall-clock times in their zone (zoneinfo, so daylight-saving changes are
the zone's): a window that ends at or before its start crosses midnight and belongs to
the weekday it starts on (Friday 22:00 to 02:00 covers Saturday 01:00). On the day
clocks go forward, the part of a window in the skipped hour does not happen; on the day
they go back, the repeated hour is covered twice (a window of 01:00-02:00 then lasts two
hours).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from watcher.settings.alerting import MaintenanceWindow, Matcher
from watcher.snapshot import JobState

MAINTENANCE = "maintenance:"


@dataclass(frozen=True)
class Silence:
    id: str
    match: Matcher
    start: datetime
    end: datetime
    author: str = ""
    comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def ended(self, now: datetime) -> bool:
        return self.end <= now

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": self.match.model_dump(exclude_defaults=True),
            "start": _rfc3339(self.start),
            "end": _rfc3339(self.end),
            "author": self.author,
            "comment": self.comment,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """Raises ValueError when `data` is not a silence."""
        try:
            start, end = _moment(data["start"]), _moment(data["end"])
            silence = cls(
                id=str(data["id"]),
                match=Matcher.model_validate(data.get("match") or {}),
                start=start,
                end=end,
                author=str(data.get("author") or ""),
                comment=str(data.get("comment") or ""),
            )
        except (KeyError, TypeError, ValidationError) as exc:
            raise ValueError(f"not a silence: {type(exc).__name__}: {exc}") from None
        if not silence.id:
            raise ValueError("not a silence: no id")
        return silence

    @classmethod
    def from_json(cls, raw: bytes) -> Silence:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a silence: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError("not a silence: not a JSON object")
        return cls.from_dict(data)


def window_active(window: MaintenanceWindow, now: datetime) -> bool:
    """Whether `window` is on at `now` (wall-clock time in its zone)."""
    local = now.astimezone(window.zone)
    minute = local.hour * 60 + local.minute
    start, end = window.minutes
    days = window.days
    if start < end:
        return local.weekday() in days and start <= minute < end
    # Across midnight: the evening of a listed day, or the morning after one.
    if local.weekday() in days and minute >= start:
        return True
    return (local.weekday() - 1) % 7 in days and minute < end


class Silencing:
    """Every silence and maintenance window known at one time (immutable)."""

    __slots__ = ("silences", "windows")

    def __init__(
        self, silences: Iterable[Silence] = (), windows: Sequence[MaintenanceWindow] = ()
    ) -> None:
        # Explicit silences before windows; among silences, the oldest first.
        self.silences = tuple(sorted(silences, key=lambda s: (s.start, s.id)))
        self.windows = tuple(windows)

    def __bool__(self) -> bool:
        return bool(self.silences or self.windows)

    def covering(self, job: JobState, now: datetime) -> str | None:
        """The id of the silence (or `maintenance:<name>`) covering `job` at `now`."""
        for silence in self.silences:
            if silence.active(now) and silence.match.matches(job):
                return silence.id
        for window in self.windows:
            if window_active(window, now) and window.match.matches(job):
                return window.silence_id
        return None

    def active(self, now: datetime) -> list[tuple[str, Matcher]]:
        """(id, matcher) of every silence and window on at `now`."""
        found = [(s.id, s.match) for s in self.silences if s.active(now)]
        found += [(w.silence_id, w.match) for w in self.windows if window_active(w, now)]
        return found

    def with_silences(self, silences: Iterable[Silence]) -> Silencing:
        return Silencing(silences, self.windows)


NO_SILENCES = Silencing()


def _moment(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"a time must be an RFC 3339 string, not {type(value).__name__}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise TypeError(f"{value!r} has no UTC offset")
    return moment


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
