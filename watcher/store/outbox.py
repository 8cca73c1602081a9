"""The outbox's side of the store: what a row is, how an event becomes one, and the
arithmetic of acknowledging and chunking.

An event goes into the outbox as (id, subject, payload): its id (the `Nats-Msg-Id`),
its subject under the configured prefix, and its envelope as published
(`watcher.wire.Wire.payload`: within the size limit, endpoint details as configured). The
publisher sends those bytes (trimmed again if the server's limit proves lower).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from watcher.events import Event, encode
from watcher.snapshot import JobKey
from watcher.wire import Wire


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    id: str
    subject: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event JetStream refused for good, set aside in the state file."""

    seq: int
    id: str
    subject: str
    payload: bytes
    reason: str
    at: str


def rows(events: Iterable[Event], prefix: str, wire: Wire) -> Iterator[tuple[str, str, bytes]]:
    """(id, subject, payload) of each event, made as SQLite takes them. An event that
    cannot be trimmed to fit is saved whole: the publisher sets it aside, and says so."""
    return ((e.id, e.nats_subject(prefix), wire.payload(e) or encode(e)) for e in events)


def owner(event: Event) -> JobKey | None:
    """The job an event is about (None for the watcher's own)."""
    if event.region is None or event.job_id is None:
        return None
    data = event.data
    return JobKey(
        event.region, event.job_id, str(data.get("direction")), str(data.get("account", "default"))
    )


def chunks(owners: Sequence[JobKey | None], size: int, first: int) -> list[tuple[int, int]]:
    """Where to cut a cycle's events, given the job each is about: runs of about `first`,
    then `size` events, never between two events of one job; always at least one (maybe
    empty) run, as (start, end) pairs."""
    cuts = [0]
    for i in range(1, len(owners)):
        if i - cuts[-1] >= (first if len(cuts) == 1 else size) and owners[i] != owners[i - 1]:
            cuts.append(i)
    cuts.append(len(owners))
    return list(itertools.pairwise(cuts))


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)] (seqs sorted, distinct)."""
    found: list[tuple[int, int]] = []
    for seq in seqs:
        if found and found[-1][1] == seq - 1:
            found[-1] = (found[-1][0], seq)
        else:
            found.append((seq, seq))
    return found
