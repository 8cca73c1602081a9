"""Live fields: what moves in a job from one poll to the next while it runs.

On a real account every running job's delay moves between two polls, and with
DescribeDtsJobs its checkpoint too, and its throughput with them. Nothing else does,
mostly. These are kept apart where it pays:

- the record cache (`watcher.dts.record_cache`) fingerprints a record without them and,
  when nothing else in it changed, reads only them again into the job it remembers
  (`with_live`) instead of building the whole job through the tolerant models;
- the store (`watcher.store`) does not rewrite a job's row when only they moved and the
  rules remember the same (`same_but_live`): the rules judge a live field afresh at each
  poll, and a stale one in the saved row is judged against the next poll after a restart
  as it would be after a poll that could not be read.
"""

from __future__ import annotations

import operator
from dataclasses import fields

from watcher.snapshot import JobState

LIVE_FIELDS = ("delay_seconds", "checkpoint", "rps", "flow_mbps")

_ORDER = tuple(f.name for f in fields(JobState))
_ALL = operator.attrgetter(*_ORDER)
_AT = tuple(_ORDER.index(name) for name in LIVE_FIELDS)
_STABLE_OF = operator.attrgetter(*(name for name in _ORDER if name not in LIVE_FIELDS))
_NEW = object.__new__
_PUT = tuple(getattr(JobState, name).__set__ for name in _ORDER)  # the slots' setters


def with_live(
    job: JobState,
    delay_seconds: int | None,
    checkpoint: str | None,
    rps: float | None,
    flow_mbps: float | None,
) -> JobState:
    """`job` with these `LIVE_FIELDS`: `job` itself when they are the same (equal, and of
    the same sign: 0.0 and -0.0 are equal numbers but not the same JSON), else a copy
    sharing every other field's object."""
    if (
        _same(delay_seconds, job.delay_seconds)
        and checkpoint == job.checkpoint
        and _same(rps, job.rps)
        and _same(flow_mbps, job.flow_mbps)
    ):
        return job
    values = list(_ALL(job))
    for index, value in zip(_AT, (delay_seconds, checkpoint, rps, flow_mbps), strict=True):
        values[index] = value
    # JobState(*values), without __init__'s frozen-field dance (half the cost; a moving
    # cycle makes one per job): each slot set through its descriptor.
    copy = _NEW(JobState)
    for put, value in zip(_PUT, values, strict=True):
        put(copy, value)
    return copy


def same_but_live(a: JobState, b: JobState) -> bool:
    """Whether two jobs are equal but for their `LIVE_FIELDS` (tuples compare their items
    by identity first: what did not change is shared)."""
    return a is b or _STABLE_OF(a) == _STABLE_OF(b)


def same_live(a: JobState, b: JobState) -> bool:
    """Whether the `LIVE_FIELDS` of two jobs are equal (as `==` of the jobs sees them)."""
    return (
        a.delay_seconds == b.delay_seconds
        and a.checkpoint == b.checkpoint
        and a.rps == b.rps
        and a.flow_mbps == b.flow_mbps
    )


def _same(a: float | None, b: float | None) -> bool:
    return a == b and (a != 0 or str(a) == str(b))
