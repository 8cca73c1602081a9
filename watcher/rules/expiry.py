"""Expiring: a PrePaid job whose `ExpireTime` comes near (`expiring`).

`rules.expiry_warnings` are days before the expiry time ([7, 1] by default). When the
time left falls within one of them, `expiring` is said once for it (if several were
crossed at once, as on first sight, once for the smallest); once more when the job has
expired. Severity: warning, critical within a day and when expired. A job renewed (its
ExpireTime moved) starts over; a PostPaid job is not watched.

Time passes while a job stays the same, so a watched job is judged on unchanged cycles
too (`wants_unchanged`) until its expiry has been said; `say.now` is the time it was
observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.events import format_time
from watcher.kinds import EXPIRING
from watcher.rules.base import Condition, Rule, Say
from watcher.settings import RulesSettings
from watcher.snapshot import JobState

DAY = 86400.0
EXPIRED = 0.0  # `warned` once the expiry itself was said


@dataclass(frozen=True, slots=True)
class ExpiryMemory:
    expire_time: datetime | None = None  # the ExpireTime being watched
    warned: float | None = None  # the smallest warning (days) said; EXPIRED once expired

    def to_dict(self) -> dict[str, Any]:
        if self.expire_time is None:
            return {}
        return {"expiry_time": self.expire_time.isoformat(), "expiry_warned": self.warned}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpiryMemory:
        moment = data.get("expiry_time")
        if not moment:
            return cls()
        warned = data.get("expiry_warned")
        return cls(datetime.fromisoformat(str(moment)), None if warned is None else float(warned))


def days_left(expire_time: datetime, now: datetime) -> float:
    return (expire_time - now).total_seconds() / DAY


class ExpiryRule(Rule[ExpiryMemory]):
    name = "expiry"
    memory = ExpiryMemory
    live_blind = True  # judges stable fields only (see Rule.live_blind)

    def __init__(self, warnings: Iterable[float]) -> None:
        self.warnings = tuple(sorted(set(warnings)))  # ascending: the smallest first

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> ExpiryRule:
        return cls(settings.expiry_warnings)

    def first_sight(self, job: JobState, mem: ExpiryMemory, say: Say) -> ExpiryMemory:
        return self._judge(job, mem, say.now, say)

    def quietly(self, job: JobState, mem: ExpiryMemory, say: Say) -> ExpiryMemory:
        return self._judge(job, mem, say.now, None)  # remember what is due, say nothing

    def changed(self, old: JobState, job: JobState, mem: ExpiryMemory, say: Say) -> ExpiryMemory:
        return self._judge(job, mem, say.now, say)

    def wants_unchanged(self, mem: ExpiryMemory) -> bool:
        return mem.expire_time is not None and mem.warned != EXPIRED

    def unchanged(self, job: JobState, mem: ExpiryMemory, say: Say) -> ExpiryMemory:
        return self._judge(job, mem, say.now, say)

    def conditions(self, job: JobState, mem: ExpiryMemory, now: datetime) -> Iterable[Condition]:
        if mem.expire_time is None or mem.warned is None:
            return ()
        left = days_left(mem.expire_time, now)
        return (Condition("expiring", "expiring", "critical" if left <= 1 else "warning"),)

    def _judge(
        self, job: JobState, mem: ExpiryMemory, now: datetime, say: Say | None
    ) -> ExpiryMemory:
        expire = job.expire_time if (job.pay_type or "").lower() == "prepaid" else None
        if expire is None or not self.warnings:
            return self.blank
        if mem.expire_time != expire:
            mem = ExpiryMemory(expire)  # new, or renewed: start over
        left = days_left(expire, now)
        if left <= 0:
            due = EXPIRED
        else:
            reached = [days for days in self.warnings if left <= days]
            if not reached:
                return ExpiryMemory(expire)
            due = reached[0]
        if mem.warned is not None and mem.warned <= due:
            return mem  # said already (this warning, or a later one)
        if say is not None:
            say(
                EXPIRING,
                {
                    "expire_time": format_time(expire),
                    "days_left": round(left, 3) + 0.0,  # never -0.0
                    "warning_days": int(due) if float(due).is_integer() else due,
                },
                "critical" if left <= 1 else "warning",
            )
        return ExpiryMemory(expire, due)
