"""The vocabulary of alert semantics (Contract v1.1): matchers, per-job overrides,
maintenance windows and durations.

A *matcher* picks jobs: every key it gives must match (`job_id`, `job_name` as a shell
glob, `region`, `job_type`, `account`, and `tags`, every given tag key with the given
value). Overrides (`[[rules.overrides]]`), maintenance windows (`[[rules.maintenance]]`)
and silences (`dts-watcher silence add --match ...`) all use it, so a job is picked the
same way everywhere. Matching is here too (`Matcher.matches`): it only reads a job's
fields.

What these values *do* lives elsewhere: overrides in `watcher.rules` (`Rules.for_job`),
windows and silences in `watcher.silencing`.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from watcher.settings.common import REGION, TOKEN, Section

if TYPE_CHECKING:
    from watcher.snapshot import JobState

JobType = Literal["sync", "migration", "subscribe"]
MATCH_KEYS = ("job_id", "job_name", "region", "job_type", "account")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    **{name: index for index, name in enumerate(WEEKDAYS)},
    **{
        full: index
        for index, full in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def check_glob(pattern: str) -> str:
    """A shell glob as `fnmatch` reads it (`*`, `?`, `[abc]`, `[!abc]`), refused when
    empty or when a `[` is never closed (fnmatch would silently match it literally)."""
    if not pattern:
        raise ValueError("a glob cannot be empty")
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1  # a "]" first in a class is a literal one
            close = pattern.find("]", j)
            if close < 0:
                raise ValueError(f"{pattern!r}: '[' at position {i} is never closed")
            i = close
        i += 1
    return pattern


@functools.lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


class Matcher(Section):
    """Which jobs: every key given must match; no key at all matches every job."""

    job_id: str | None = Field(None, min_length=1)
    job_name: str | None = Field(None, description="shell glob: *, ?, [abc], [!abc]")
    region: str | None = None
    job_type: JobType | None = None
    account: str | None = Field(None, min_length=1)
    tags: dict[str, str] = Field(default_factory=dict, description="every key with its value")

    @field_validator("job_name")
    @classmethod
    def _glob_is_valid(cls, value: str | None) -> str | None:
        return None if value is None else check_glob(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.match(value):
            raise ValueError(f"{value!r} is not a region id like 'cn-hangzhou'")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not key for key in value):
            raise ValueError("a tag key cannot be empty")
        return value

    @property
    def empty(self) -> bool:
        """True when it names nothing, and so matches every job."""
        return not self.tags and all(getattr(self, key) is None for key in MATCH_KEYS)

    def matches(self, job: JobState) -> bool:
        if self.job_id is not None and job.job_id != self.job_id:
            return False
        if self.region is not None and job.region != self.region:
            return False
        if self.job_type is not None and job.job_type != self.job_type:
            return False
        if self.account is not None and job.account != self.account:
            return False
        if self.job_name is not None and not _glob(self.job_name).match(job.job_name):
            return False
        if self.tags:
            have = dict(job.tags)
            return all(have.get(key) == value for key, value in self.tags.items())
        return True

    def describe(self) -> str:
        """`job_id=dtsabc region=cn-hangzhou tag:env=prod`, or `*` (every job)."""
        parts = [f"{key}={getattr(self, key)}" for key in MATCH_KEYS if getattr(self, key)]
        parts += [f"tag:{key}={value}" for key, value in sorted(self.tags.items())]
        return " ".join(parts) or "*"


def check_levels(value: Mapping[str, float]) -> Mapping[str, float]:
    """Delay levels: names that are tokens (not `ok`), distinct positive thresholds."""
    for name, seconds in value.items():
        if name == "ok" or not TOKEN.match(name):
            raise ValueError(f"{name!r} cannot name a delay level")
        if seconds <= 0:
            raise ValueError(f"level {name!r} needs a positive number of seconds")
    if len(set(value.values())) != len(value):
        raise ValueError("two delay levels share a threshold")
    return value


OVERRIDABLE = ("delay_thresholds", "delay_for_cycles", "stall_after", "repeat_interval")


class Override(Section):
    """Other rule settings for the jobs `match` picks (`[[rules.overrides]]`)."""

    match: Matcher
    delay_thresholds: dict[str, float] | None = None
    delay_for_cycles: int | None = Field(None, ge=1)
    stall_after: float | None = Field(None, ge=0, description="seconds; 0 = off")
    repeat_interval: float | None = Field(None, ge=0, description="seconds; 0 = off")

    @field_validator("delay_thresholds")
    @classmethod
    def _levels(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return None if value is None else dict(check_levels(value))

    @model_validator(mode="after")
    def _sets_something(self) -> Override:
        if all(getattr(self, name) is None for name in OVERRIDABLE):
            raise ValueError(f"an override must set one of {', '.join(OVERRIDABLE)}")
        return self

    def values(self) -> dict[str, Any]:
        """The settings it overrides, by name."""
        return {
            name: getattr(self, name) for name in OVERRIDABLE if getattr(self, name) is not None
        }


def parse_clock(text: str, *, end: bool = False) -> int:
    """`HH:MM` (24-hour) as minutes after midnight; `24:00` only as an end."""
    match = _CLOCK.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day like '22:30' (HH:MM, 24-hour)")
    hours, minutes = int(match[1]), int(match[2])
    if (hours, minutes) == (24, 0) and end:
        return 24 * 60
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59)")
    return hours * 60 + minutes


def zone(name: str) -> ZoneInfo:
    """An IANA time zone (`Asia/Shanghai`, `UTC`); ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone of the IANA database, like 'Asia/Shanghai' or 'UTC'"
        ) from None


class MaintenanceWindow(Section):
    """A recurring silence (`[[rules.maintenance]]`): on each of `weekdays`, from `start`
    to `end` (wall-clock times in `timezone`; an `end` at or before `start` is the next
    day's), events of the jobs `match` picks carry `silenced: "maintenance:<name>"`."""

    name: str
    match: Matcher
    weekdays: list[str] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError(f"{value!r} is not a window name (letters, digits, '-' and '_')")
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        days = []
        for text in value:
            index = _WEEKDAY_NAMES.get(text.strip().lower())
            if index is None:
                raise ValueError(f"{text!r} is not a weekday: one of {', '.join(WEEKDAYS)}")
            days.append(index)
        return [WEEKDAYS[index] for index in sorted(set(days))]

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        minute = parse_clock(value)
        return f"{minute // 60:02d}:{minute % 60:02d}"

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        minute = parse_clock(value, end=True)
        return f"{minute // 60:02d}:{minute % 60:02d}"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> MaintenanceWindow:
        if self.start == self.end:
            raise ValueError(f"window {self.name!r}: start and end are both {self.start}")
        return self

    @property
    def silence_id(self) -> str:
        return f"maintenance:{self.name}"

    @property
    def days(self) -> frozenset[int]:
        """Weekdays as numbers, Monday 0."""
        return frozenset(WEEKDAYS.index(day) for day in self.weekdays)

    @property
    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after midnight."""
        return parse_clock(self.start), parse_clock(self.end, end=True)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h`, `1h30m`, `2d`, `1w`, or a bare number of seconds; positive."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value) if value else None
        if match is None or not any(match.groups()):
            raise ValueError(
                f"{text!r} is not a duration like 90s, 30m, 2h, 1h30m, 2d or 1w"
            ) from None
        weeks, days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + secs
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return seconds
