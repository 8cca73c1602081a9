"""The record cache: jobs parsed from the previous listing of a region, reused when a
record comes back byte for byte the same (see `JobCache`)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from watcher.snapshot import JobState

_Key = tuple[str | None, str | None]  # the raw id and direction of a record
# (fingerprint of the raw record, what it gave: a JobState, or with DescribeDtsJobs the
# tuple of jobs of an entry, a two-way one's two halves)
_Cached = tuple[bytes, Any]
CachedJobs = dict[_Key, _Cached]  # what one listing leaves for the next
# The keys that name a record: the legacy listing's, DescribeDtsJobs' (`DTS_JOBS_KEYS`).
LEGACY_KEYS = ("SynchronizationJobId", "SynchronizationDirection")
DTS_JOBS_KEYS = ("DtsJobId", "DtsJobDirection")


class JobCache:
    """Jobs parsed from the previous listing of one region, reused when unchanged.

    Building a JobState through the models costs about 200 µs a job; a listing of
    10,000 jobs that did not change would spend two seconds of CPU every cycle saying so.
    So each record's raw JSON is fingerprinted (its compact serialization, hashed with
    SHA-256) and remembered with the JobState it gave; a record whose fingerprint matches
    the one remembered under the same id and direction gets the very same JobState back
    (immutable, so sharing it is safe, and detection and the store then recognise it by
    identity). Anything else is parsed as usual.

    Correct whatever moves: a changed field changes the fingerprint; a job that moves to
    another page is found by its id, not its place; a job that disappears is simply not
    carried into `seen`, which replaces the cache only after a complete listing. The
    fingerprint is order-sensitive, so a record that differs only in key order (which the
    case-insensitive key matching can care about) is parsed again rather than reused.

    Use one `JobCache(previous)` per attempt at listing a region; feed every page through
    `parse_page(..., cache=...)`; keep `seen` for the next listing once it was complete.
    Only documents decoded by orjson may be fed: it never yields NaN, infinities or
    lone surrogates, so equal fingerprints mean equal records.
    """

    __slots__ = ("keys", "previous", "seen")

    def __init__(
        self, previous: CachedJobs | None = None, keys: tuple[str, str] = LEGACY_KEYS
    ) -> None:
        self.previous: CachedJobs = previous if previous is not None else {}
        self.seen: CachedJobs = {}
        self.keys = keys

    def reuse(self, raw: dict[str, Any]) -> tuple[_Key, bytes | None, Any]:
        """(identity, fingerprint, what the record gave last time if it is unchanged)."""
        key = _raw_identity(raw, *self.keys)
        try:
            fingerprint = hashlib.sha256(orjson.dumps(raw)).digest()
        except orjson.JSONEncodeError:  # not from orjson after all: no reuse, no harm
            return key, None, None
        cached = self.previous.get(key)
        if cached is not None and cached[0] == fingerprint:
            self.seen[key] = cached
            return key, fingerprint, cached[1]
        return key, fingerprint, None

    def remember(
        self, key: _Key, fingerprint: bytes | None, job: JobState | tuple[JobState, ...]
    ) -> None:
        if fingerprint is not None:
            self.seen[key] = (fingerprint, job)


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
