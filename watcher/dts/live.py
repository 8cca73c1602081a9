"""The live fields of a record, read the way the models read them (see `watcher.live`).

When the record cache finds a record unchanged but for its live fields (`LiveFields`),
it asks the listing API's reader here for them, and only them: the same loose readers
as the models (`loose_float`, ...), the same key matching (any letter case, the exact
spelling first), the same fallbacks (`DataSynchronizationStatus.Delay` when `Delay` is
missing) and conversions (DescribeDtsJobs' migration delay in milliseconds). A unit test
holds the result equal to a full parse, for random live values and quirks.
"""

from __future__ import annotations

from typing import Any

from watcher.dts.dtsjobs import delay_seconds
from watcher.dts.models import loose_float, loose_int, loose_str
from watcher.dts.record_cache import pick
from watcher.live import with_live
from watcher.snapshot import JobState


def _delay(raw: dict[str, Any]) -> float | int | None:
    """`Delay`, else DataSynchronizationStatus' (the same in both APIs' records)."""
    delay = loose_float(pick(raw, "Delay"))
    if delay is None:
        status = pick(raw, "DataSynchronizationStatus")
        if isinstance(status, dict):
            return loose_int(pick(status, "Delay"))
    return delay


def _performance(raw: dict[str, Any]) -> tuple[float | None, float | None]:
    """(rps, flow) of `Performance`, read as the one model of both APIs reads them
    (`RPS`/`FLOW` in any case: the exact spelling first, as `models.Performance`)."""
    performance = pick(raw, "Performance")
    if not isinstance(performance, dict):
        return None, None
    return loose_float(pick(performance, "RPS")), loose_float(pick(performance, "FLOW"))


class LegacyLive:
    """A DescribeSynchronizationJobs record's: `Delay`, `Performance`."""

    keys = ("Delay", "Performance", "DataSynchronizationStatus")
    nested = None

    def refresh(self, raw: dict[str, Any], cached: JobState) -> JobState:
        delay = _delay(raw)
        seconds = int(delay) if delay is not None and delay >= 0 else None
        return with_live(cached, seconds, cached.checkpoint, *_performance(raw))


class DtsJobsLive:
    """A DtsJobList entry's, and its ReverseJob's: `Delay`, `Checkpoint`, `Performance`."""

    keys = ("Delay", "Checkpoint", "Performance", "DataSynchronizationStatus")
    nested = "ReverseJob"

    def refresh(self, raw: dict[str, Any], cached: tuple[JobState, ...]) -> tuple[JobState, ...]:
        forward = _dts_job(raw, cached[0])
        if len(cached) == 1:
            return cached if forward is cached[0] else (forward,)
        # Two jobs: the entry's ReverseJob was an object, and is (nothing else moved).
        reverse = _dts_job(pick(raw, "ReverseJob"), cached[1])
        if forward is cached[0] and reverse is cached[1]:
            return cached
        return (forward, reverse)


def _dts_job(raw: dict[str, Any], job: JobState) -> JobState:
    return with_live(
        job,
        delay_seconds(_delay(raw), job.job_type),
        loose_str(pick(raw, "Checkpoint")),
        *_performance(raw),
    )


LEGACY_LIVE = LegacyLive()
DTS_JOBS_LIVE = DtsJobsLive()
