"""The record cache: jobs parsed from the previous listing of a region, reused when a
record comes back the same, or the same but for its live fields (see `JobCache`)."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import orjson

from watcher.snapshot import JobState

_Key = tuple[str | None, str | None]  # the raw id and direction of a record
# (fingerprint of the raw record without its live fields, what it gave: a JobState, or
# with DescribeDtsJobs the tuple of jobs of an entry, a two-way one's two halves)
_Cached = tuple[bytes, Any]
CachedJobs = dict[_Key, _Cached]  # what one listing leaves for the next
# The keys that name a record: the legacy listing's, DescribeDtsJobs' (`DTS_JOBS_KEYS`).
LEGACY_KEYS = ("SynchronizationJobId", "SynchronizationDirection")
DTS_JOBS_KEYS = ("DtsJobId", "DtsJobDirection")


class LiveFields(Protocol):
    """What moves in a record from one poll to the next on a running job (its delay, its
    checkpoint, its throughput), and how the job it gave takes the new values.

    `keys` are the top-level keys holding them, in the API's own spelling; `nested`, a
    key whose object is a record of its own (DescribeDtsJobs' ReverseJob), whose `keys`
    are live too. `refresh(raw, cached)` gives what a full parse of `raw` would give,
    knowing that `raw` equals the record `cached` came from but for those keys: `cached`
    itself when their values are the same, else `cached` with the live fields replaced.
    """

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def nested(self) -> str | None: ...

    def refresh(self, raw: dict[str, Any], cached: Any) -> Any: ...


class JobCache:
    """Jobs parsed from the previous listing of one region, reused when unchanged.

    Building a JobState through the models costs about 200 µs a job; a listing of
    10,000 jobs that did not change would spend two seconds of CPU every cycle saying so.
    So each record's raw JSON is fingerprinted (its compact serialization, hashed with
    SHA-256) and remembered with the JobState it gave; a record whose fingerprint matches
    the one remembered under the same id and direction gets the very same JobState back
    (immutable, so sharing it is safe, and detection and the store then recognise it by
    identity). Anything else is parsed as usual.

    On a live account, though, every running job's delay (and checkpoint, and
    throughput) moves between two polls. So the fingerprint leaves out the `live` fields
    (`LiveFields`, given by the listing API), and a record whose fingerprint matches has
    only those read again, cheaply, into the JobState remembered (`LiveFields.refresh`):
    the very same object when they did not move either. A record whose stable part
    changed goes through the full, tolerant models.

    Correct whatever moves: a changed field changes the fingerprint (the live ones are
    read afresh every time); a job that moves to another page is found by its id, not its
    place; a job that disappears is simply not carried into `seen`, which replaces the
    cache only after a complete listing. The fingerprint is order-sensitive, so a record
    that differs only in key order (which the case-insensitive key matching can care
    about) is parsed again rather than reused; a live field spelled otherwise than the
    API spells it stays in the fingerprint (such a record is parsed again when it moves).

    Use one `JobCache(previous)` per attempt at listing a region; feed every page through
    `parse_page(..., cache=...)`; keep `seen` for the next listing once it was complete.
    Only documents decoded by orjson may be fed: it never yields NaN, infinities or
    lone surrogates, so equal fingerprints mean equal records.
    """

    __slots__ = ("keys", "live", "previous", "seen")

    def __init__(
        self,
        previous: CachedJobs | None = None,
        keys: tuple[str, str] = LEGACY_KEYS,
        live: LiveFields | None = None,
    ) -> None:
        self.previous: CachedJobs = previous if previous is not None else {}
        self.seen: CachedJobs = {}
        self.keys = keys
        self.live = live

    def reuse(self, raw: dict[str, Any]) -> tuple[_Key, bytes | None, Any]:
        """(identity, fingerprint, what the record gives if only its live fields can
        have moved since the last listing: the job(s) remembered, refreshed)."""
        key = _raw_identity(raw, *self.keys)
        try:
            fingerprint = hashlib.sha256(orjson.dumps(self._stable(raw))).digest()
        except orjson.JSONEncodeError:  # not from orjson after all: no reuse, no harm
            return key, None, None
        cached = self.previous.get(key)
        if cached is None or cached[0] != fingerprint:
            return key, fingerprint, None
        found = cached[1] if self.live is None else self.live.refresh(raw, cached[1])
        self.seen[key] = cached if found is cached[1] else (fingerprint, found)
        return key, fingerprint, found

    def remember(
        self, key: _Key, fingerprint: bytes | None, job: JobState | tuple[JobState, ...]
    ) -> None:
        if fingerprint is not None:
            self.seen[key] = (fingerprint, job)

    def _stable(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The record without its live fields (the same object when it has none)."""
        live = self.live
        if live is None:
            return raw
        stable = raw
        for name in live.keys:
            if name in stable:
                if stable is raw:
                    stable = raw.copy()
                del stable[name]
        nested = live.nested
        if nested is not None and isinstance(inner := stable.get(nested), dict):
            kept = {k: v for k, v in inner.items() if k not in live.keys}
            if len(kept) != len(inner):
                if stable is raw:
                    stable = raw.copy()
                stable[nested] = kept
        return stable


def pick(raw: dict[str, Any], name: str) -> Any:
    """`raw[name]` as the models read it (`ApiModel`): in any letter case, the exact
    spelling first, else the first other one; None when absent."""
    value = raw.get(name, _ABSENT)
    if value is not _ABSENT:
        return value
    lowered = name.lower()
    for key, value in raw.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


_ABSENT: Any = object()


def _raw_identity(raw: dict[str, Any], id_key: str, direction_key: str) -> _Key:
    """Where to look a record up in the cache (only a hint: the fingerprint decides)."""
    job_id, direction = raw.get(id_key), raw.get(direction_key)
    if job_id is None:  # keys in another letter case: look for them the slow way
        for key, value in raw.items():
            lowered = key.lower() if isinstance(key, str) else ""
            if lowered == id_key.lower():
                job_id = value
            elif lowered == direction_key.lower() and direction is None:
                direction = value
    return (
        job_id if isinstance(job_id, str) else None,
        direction if isinstance(direction, str) else None,
    )
