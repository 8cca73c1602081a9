"""What the cycle and the publisher ask of the state: two small protocols.

The SQLite `Store` (one process, the default) has them all; with several replicas the
shared state in JetStream (`watcher.cluster.state.ClusterState`) has them too. Either
way the promise is the outbox's: a job's new state and the events it caused are saved
together, before anything of them is published; an event leaves the outbox only once
JetStream acknowledged it.

The calls are synchronous: the cycle and the publisher make them in worker threads
(`anyio.to_thread`), except `pending_nowait`, `outbox_depth` and `add_events` for the
watcher's own events, which may come from the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from watcher.detect import Detection
from watcher.events import Event
from watcher.rules import JobMemory, Memory
from watcher.snapshot import JobKey, JobState, Snapshot
from watcher.store.outbox import OutboxEntry
from watcher.wire import Wire

__all__ = ["Outbox", "State", "StateStore"]


class State(Protocol):
    """The cycle's side: the baseline and memory, and saving what a cycle found."""

    wire: Wire  # how events become outbox payloads (limits, endpoint details)

    def load(self) -> tuple[Snapshot, Memory]:
        """The baseline and rule memory as last saved."""
        ...

    def commit_steps(
        self, detection: Detection, subject_prefix: str, chunk: int = 1000
    ) -> Iterator[int]:
        """Save a cycle's new baseline, memory and events, in steps of about `chunk`
        events (a job's state always with its events); yield the events saved so far
        after each step."""
        ...

    def save_page(
        self,
        jobs: Mapping[JobKey, tuple[JobState, JobMemory | None]],
        events: Sequence[Event],
        subject_prefix: str,
    ) -> bool:
        """Save jobs judged from one page with the events they caused; False if nothing
        changed."""
        ...

    def add_events(self, events: Sequence[Event], subject_prefix: str) -> None:
        """Queue events that are not part of a cycle (the watcher's own)."""
        ...


class Outbox(Protocol):
    """The publisher's side: the events waiting for JetStream."""

    wire: Wire

    def pending(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry]:
        """The oldest events not yet acknowledged (past `after`), in order."""
        ...

    def pending_nowait(self, limit: int = 1000, after: int = 0) -> list[OutboxEntry] | None:
        """`pending`, or None at once if it would have to wait."""
        ...

    def acknowledge(self, seqs: Sequence[int]) -> None:
        """Forget events JetStream acknowledged."""
        ...

    def dead_letter(self, seq: int, reason: str) -> None:
        """Set an event JetStream refuses for good aside, with why."""
        ...

    def outbox_depth(self) -> int: ...


class StateStore(State, Outbox, Protocol):
    """Both sides, and what the service reads and closes."""

    def dead_letter_count(self) -> int: ...

    def close(self) -> None: ...
