"""A settable clock: the time tests pass in where the code takes `now` (no test reads
the real clock to decide what it expects)."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)
