"""One cycle: fetch a snapshot, judge it, commit what was found. The service repeats it.

    client.fetch() ──► Snapshot ──► detect() ──► events ──► store (state + outbox, one
                                    (pure)                   transaction per chunk)
                                                              └─► publisher.wake()

With `poll.emit = "page"` (the default), each consistent page is judged, saved and handed
to the publisher as it arrives (`PageByPage`), and only what needs the whole listing
(absence) waits for its end; with `"listing"`, everything waits for the whole listing.
Either way a job's new state and the events it caused are saved together before anything
is published (the outbox), and the cycle's own health events (`cycle_incomplete`,
`source_unavailable`, `source_recovered`) follow its job events.

`Cycle` keeps the baseline and rule memory between runs; after a failed commit it reloads
them from the store, so the next cycle starts from what was really saved. The silences
and maintenance windows known at the moment of each judgement (`silencing()`, which the
service keeps current from the silence bucket) go into detection as data, so the events
saved carry their `silenced` attribute.

With several replicas (`watcher.replica`) a cycle reads only the shards `shards()` names
(those this replica holds, their state in `watcher.cluster.state`); when that set changes
it starts again from the state as saved, and with none it only counts itself (a replica
holding nothing is idle, not blind). `reading` says which shards the cycle in flight
reads (a shard handed over waits for it: `finished`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.lowlevel

from watcher.detect import Detection, Memory, PageByPage, Rules, detect
from watcher.dts.client import DtsClient
from watcher.errors import StateError
from watcher.events import Event, watcher_event
from watcher.faults import crash_point
from watcher.logs import get_logger
from watcher.metrics import Metrics
from watcher.publish import Publisher
from watcher.settings import Settings
from watcher.silencing import NO_SILENCES, Silencing
from watcher.snapshot import DEFAULT_ACCOUNT, JobState, RegionOutcome, Snapshot
from watcher.source_health import track
from watcher.status import Status
from watcher.store import State

log = get_logger("watcher.cycle")
event_log = get_logger("watcher.events")
_LOG_SLICE = 16  # event log lines written between two chances for the publisher to run
LOG_DEFERRAL = 2.0  # seconds a cycle's log lines may wait, in all, for the publisher


@dataclass
class CycleResult:
    snapshot: Snapshot
    events: list[Event]
    complete: bool
    duration: float

    @property
    def reasons(self) -> dict[str, str]:
        return self.snapshot.incomplete_reasons


class Cycle:
    def __init__(
        self,
        settings: Settings,
        client: DtsClient,
        store: State,
        publisher: Publisher,
        status: Status,
        metrics: Metrics,
        now: Callable[[], datetime],
        silencing: Callable[[], Silencing] = lambda: NO_SILENCES,
        shards: Callable[[], Collection[str] | None] = lambda: None,
    ) -> None:
        """`shards()`: the labels of the shards to read this cycle (None: all)."""
        self.settings = settings
        self.client = client
        self.store = store
        self.publisher = publisher
        self.status = status
        self.metrics = metrics
        self.rules = Rules(settings.rules)
        self._now = now
        self._silencing = silencing
        self._baseline: Snapshot | None = None
        self._memory = Memory()
        self._shards = shards
        self._read: frozenset[str] | None = None  # the shards the baseline is of
        self.reading: frozenset[str] = frozenset()  # those the cycle in flight reads
        self._done: anyio.Event | None = None

    async def finished(self, shard: str) -> None:
        """Return once no cycle in flight reads `shard`."""
        while shard in self.reading and self._done is not None:
            await self._done.wait()

    async def run(self) -> CycleResult:
        wanted = self._shards()
        shards = None if wanted is None else frozenset(wanted)
        if shards != self._read:
            self._baseline, self._read = None, shards  # another set: from the saved state
        if shards is not None and not shards:
            return await self._idle()
        self.reading, self._done = shards or frozenset(), anyio.Event()
        try:
            return await self._run(shards)
        finally:
            self.reading = frozenset()
            self._done.set()

    async def _idle(self) -> CycleResult:
        """Several replicas, none of the shards held here: nothing to read, nothing
        missed; the state is read again when shards come."""
        self._baseline, self._memory = await anyio.to_thread.run_sync(self.store.load)
        self.status.baseline, self.status.memory = self._baseline, self._memory
        self.status.count_cycle(True, self._now())
        return CycleResult(Snapshot(jobs={}), [], True, 0.0)

    async def _run(self, shards: frozenset[str] | None) -> CycleResult:
        started = time.monotonic()
        if self._baseline is None:
            self._baseline, self._memory = await anyio.to_thread.run_sync(self.store.load)
        try:
            if self.settings.poll.emit == "page":
                snapshot, early, detection = await self._page_by_page(self._baseline, shards)
            else:
                early = []
                snapshot = await self.client.fetch(
                    deadline=self.settings.poll.cycle_timeout, only=shards
                )
                detection = detect(
                    self._baseline,
                    snapshot,
                    self._memory,
                    self.rules,
                    self._now(),
                    silences=self._silencing(),
                )
            own = self._health_events(snapshot)
            crash_point("before_commit", bool(detection.events or own))
            # The cycle's own events are saved with its end (its cycle count, and with
            # several replicas each shard's read health they follow from).
            await self._commit(detection._replace(events=[*detection.events, *own]))
        except BaseException:
            # Some of the cycle's transactions may be saved: start the next cycle from
            # what the store holds, not from what this one started with.
            self._baseline = None
            raise
        events = [*early, *detection.events, *own]
        crash_point("after_commit", bool(events))
        self._baseline, self._memory = detection.baseline, detection.memory
        await log_events(events, self.publisher.wait_idle)
        duration = time.monotonic() - started
        self._account(snapshot, detection, events, duration)
        return CycleResult(snapshot, events, snapshot.complete, duration)

    def _account(
        self, snapshot: Snapshot, detection: Detection, events: list[Event], duration: float
    ) -> None:
        now = self._now()
        self.status.baseline = detection.baseline
        self.status.memory = detection.memory
        self.status.count_cycle(snapshot.complete, now)
        self.status.count_events([event.type for event in events])
        self.metrics.observe_cycle(duration, snapshot.complete, now)
        self.metrics.observe_events(events)
        self.metrics.observe_held(detection.held)
        log.info(
            "cycle.done",
            complete=snapshot.complete,
            jobs=len(detection.baseline),
            events=len(events),
            duration_seconds=round(duration, 3),
            **({"incomplete": snapshot.incomplete_reasons} if not snapshot.complete else {}),
        )

    async def _page_by_page(
        self, baseline: Snapshot | None, shards: frozenset[str] | None
    ) -> tuple[Snapshot, list[Event], Detection]:
        """Judge each consistent page as it arrives (`PageByPage`), save what moved with
        its events and wake the publisher, while the rest of the listing is read; then
        judge what no page did. Returns the snapshot, the events already saved, and the
        rest of the cycle's detection."""
        pages = PageByPage(baseline, self._memory, self.rules)
        early: list[Event] = []
        prefix = self.settings.nats.subject_prefix
        send, receive = anyio.create_memory_object_stream[tuple[JobState, ...]](math.inf)

        def on_page(region: str, page: tuple[JobState, ...]) -> None:
            send.send_nowait(page)

        async def judge() -> None:
            async with receive:
                async for page in receive:
                    batch = [*page]
                    while True:  # whatever else arrived meanwhile: one transaction
                        try:
                            batch.extend(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):  # none yet, or no more
                            break
                    found = pages.judge(batch, self._now(), self._silencing())
                    self.metrics.observe_held(found.held)
                    if not found.jobs and not found.events:
                        continue  # the steady case: no transaction, no thread
                    crash_point("before_commit", bool(found.events))
                    await anyio.to_thread.run_sync(
                        self.store.save_page, found.jobs, found.events, prefix
                    )
                    crash_point("between_commits", bool(found.events))  # the rest not yet
                    if found.events:
                        early.extend(found.events)
                        self.publisher.wake()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(judge)
                async with send:
                    snapshot = await self.client.fetch(
                        on_page=on_page, deadline=self.settings.poll.cycle_timeout, only=shards
                    )
        except BaseExceptionGroup as group:  # a page not saved: the state's error, as itself
            failed = group.subgroup(StateError)
            if failed is None:
                raise
            raise _first(failed) from None
        return snapshot, early, pages.finish(snapshot, self._now(), self._silencing())

    async def _commit(self, detection: Detection) -> None:
        """Save the cycle, waking the publisher as each transaction lands: the first
        events of a storm go out while the rest are being written (`Store.commit_steps`)."""
        prefix = self.settings.nats.subject_prefix
        steps = self.store.commit_steps(
            detection, prefix, self.settings.state.events_per_transaction
        )
        while (saved := await anyio.to_thread.run_sync(next, steps, None)) is not None:
            self.publisher.wake()  # those events are safe in the outbox: they may go out
            crash_point("between_commits", saved > 0)

    def _health_events(self, snapshot: Snapshot) -> list[Event]:
        """cycle_incomplete for this cycle, and source_unavailable / source_recovered."""
        now = self._now()
        events: list[Event] = []
        if not snapshot.complete:
            # Keyed by shard label: the region for the default account, else
            # `account/region` (with `account` and `region` in the value).
            regions = {
                name: {"error_code": r.error_code, "error": r.error, **_where(r)}
                for name, r in sorted(snapshot.regions.items())
                if not r.complete
            }
            events.append(watcher_event("cycle_incomplete", "warning", now, {"regions": regions}))
        said, self.status.health = track(
            self.status.health, snapshot, self.settings.health.unavailable_after, now
        )
        events += [watcher_event(kind, severity, now, data) for kind, severity, data in said]
        return events

    def announce(self, event: Event) -> None:
        """Queue one of the service's own events (started, stopped, heartbeat)."""
        self.store.add_events([event], self.settings.nats.subject_prefix)
        self.said(event)

    def said(self, event: Event) -> None:
        """One of the service's own events was saved: count it, log it, publish it."""
        self.status.count_events([event.type])
        self.metrics.observe_events([event])
        event_log.info("event", **event.log_fields())
        self.publisher.wake()


def _where(outcome: RegionOutcome) -> dict[str, str]:
    return {} if outcome.account == DEFAULT_ACCOUNT else outcome.where()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def log_events(
    events: Sequence[Event],
    publisher_idle: Callable[[], Awaitable[None]],
    deferral: float = LOG_DEFERRAL,
) -> None:
    """One JSON log line per event, after the publisher had its turn.

    A line costs ~80 µs (the structlog and logging chain): written all at once, before
    the publisher could run, a storm's lines would hold every event back from JetStream
    until the last one. So they go in slices, each once the publisher is through with
    the outbox (`publisher_idle` returns), for at most `deferral` seconds in all: when
    NATS is slow or down, the cycle (and the next poll) must not wait on it.
    """
    logger = event_log.bind()  # one bound logger for the lot, not one per line
    deadline = time.monotonic() + deferral
    for start in range(0, len(events), _LOG_SLICE):
        if start:
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await publisher_idle()
            await anyio.lowlevel.checkpoint()
        for event in events[start : start + _LOG_SLICE]:
            logger.info("event", **event.log_fields())
