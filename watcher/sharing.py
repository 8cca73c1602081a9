"""One object for equal parts of many jobs (`shared(job)`).

Ten thousand jobs carry ten thousand copies of the same sixteen precheck items, the same
finished initialization stages, the same tag pairs, table names, engine names: built
afresh by every parse, and by every load of the state, they were most of a tracked
job's memory (measure 8 of the benchmarks: resident memory per job at 100,000 jobs).
`shared(job)` gives the job back with each of those parts replaced by the one object
already held for an equal part, if any: precheck (and each of its items), the two
initialization stages, the endpoints' repeated values, tags, synchronization objects
(and table names), and the short texts many jobs repeat. Immutable values only,
so sharing them is safe, and detection and the store then compare them by identity.

Equal means equal to the JSON: a part holding a float is matched with its sign (0.0 and
-0.0 are equal numbers), so a shared part always writes the same JSON as the one it
replaces. What differs from job to job (ids, addresses, times) is left alone: a table
entry for it would cost more than it saves.

The table is bounded: it keeps what was looked up within the last two generations of
`_GENERATION` parts, and lets the rest go (what is shared stays shared).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, TypeVar

from watcher.snapshot import (
    Endpoint,
    InitStage,
    JobState,
    Precheck,
    PrecheckItem,
    SyncObject,
)

_T = TypeVar("_T")
_GENERATION = 200_000  # new parts held before the oldest unused ones are let go


class _Table:
    """Parts by key, in two generations: a part looked up again moves to the current
    one; once the current one has taken `_GENERATION` new parts, the previous is let go
    (its parts still held by jobs stay shared by them; the table just forgets them)."""

    __slots__ = ("_current", "_previous")

    def __init__(self) -> None:
        self._current: dict[Any, Any] = {}
        self._previous: dict[Any, Any] = {}

    def get(self, key: Any, value: _T) -> _T:
        """The part held under `key`, else `value` (then held, unless None)."""
        held: _T | None = self._current.get(key)
        if held is not None:
            return held
        found: _T = self._previous.get(key, value)
        if found is not None:
            self._current[key] = found
            if len(self._current) >= _GENERATION:
                self._previous, self._current = self._current, {}
        return found


_TABLE = _Table()


def _exact(number: float | None) -> Any:
    """A float as the key of its JSON text (its sign too)."""
    return None if number is None else (number, str(number))


def text(value: str | None) -> str | None:
    """A short text many jobs repeat (a status, an engine, a table name)."""
    if value is None or len(value) > 64:
        return value
    return sys.intern(value)


def _item(item: PrecheckItem) -> PrecheckItem:
    return _TABLE.get(item, item)


def _precheck(value: Precheck | None) -> Precheck | None:
    if value is None:
        return None
    items = tuple([_item(item) for item in value.items])
    key = (Precheck, value.status, _exact(value.percent), items)
    return _TABLE.get(key, Precheck(text(value.status), value.percent, items))


def _stage(value: InitStage | None) -> InitStage | None:
    if value is None:
        return None
    key = (InitStage, value.status, _exact(value.percent), value.progress, value.error_message)
    return _TABLE.get(key, value)


def _endpoint(value: Endpoint | None) -> Endpoint | None:
    if value is None:
        return None
    return Endpoint(
        instance_id=value.instance_id,
        instance_type=text(value.instance_type),
        engine_name=text(value.engine_name),
        ip=value.ip,
        port=_TABLE.get((int, value.port), value.port),
        user_name=text(value.user_name),
    )


def _objects(value: tuple[SyncObject, ...]) -> tuple[SyncObject, ...]:
    if not value:
        return ()
    parts = tuple([_object(o) for o in value])
    return _TABLE.get(parts, parts)


def _object(value: SyncObject) -> SyncObject:
    held = _TABLE.get(value, None)  # the table's own keys are normalized objects
    if held is not None:
        return held
    norm = SyncObject(
        text(value.schema_name),
        text(value.new_schema_name),
        tuple([text(t) or "" for t in value.table_includes]),
        tuple([text(t) or "" for t in value.table_excludes]),
    )
    return _TABLE.get(norm, norm)


def _tags(value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    held = _TABLE.get(value, None)
    if held is not None:
        return held
    norm = tuple([(text(k) or "", text(v) or "") for k, v in value])
    return _TABLE.get(norm, norm)


def shared(job: JobState) -> JobState:
    """`job` with its parts replaced by those already held for equal ones (itself when
    there is nothing to share)."""
    return replace(
        job,
        status=text(job.status) or "",
        job_class=text(job.job_class),
        pay_type=text(job.pay_type),
        precheck=_precheck(job.precheck),
        structure_init=_stage(job.structure_init),
        data_init=_stage(job.data_init),
        source=_endpoint(job.source),
        destination=_endpoint(job.destination),
        tags=_tags(job.tags),
        objects=_objects(job.objects),
    )
