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
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
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
from watcher.store import Store

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
        store: Store,
        publisher: Publisher,
        status: Status,
        metrics: Metrics,
        now: Callable[[], datetime],
        silencing: Callable[[], Silencing] = lambda: NO_SILENCES,
    ) -> None:
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

    async def run(self) -> CycleResult:
        started = time.monotonic()
        if self._baseline is None:
            self._baseline, self._memory = await anyio.to_thread.run_sync(self.store.load)
        try:
            if self.settings.poll.emit == "page":
                snapshot, early, detection = await self._page_by_page(self._baseline)
            else:
                early = []
                snapshot = await self.client.fetch(deadline=self.settings.poll.cycle_timeout)
                detection = detect(
                    self._baseline,
                    snapshot,
                    self._memory,
                    self.rules,
                    self._now(),
                    silences=self._silencing(),
                )
            own = self._health_events(snapshot)
            crash_point("before_commit")
            await self._commit(detection, own)
        except BaseException:
            # Some of the cycle's transactions may be saved: start the next cycle from
            # what the store holds, not from what this one started with.
            self._baseline = None
            raise
        crash_point("after_commit")
        self._baseline, self._memory = detection.baseline, detection.memory
        events = [*early, *detection.events, *own]
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
        self, baseline: Snapshot | None
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
                    await anyio.to_thread.run_sync(
                        self.store.save_page, found.jobs, found.events, prefix
                    )
                    if found.events:
                        early.extend(found.events)
                        self.publisher.wake()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(judge)
                async with send:
                    snapshot = await self.client.fetch(
                        on_page=on_page, deadline=self.settings.poll.cycle_timeout
                    )
        except BaseExceptionGroup as group:  # a page not saved: the state's error, as itself
            failed = group.subgroup(StateError)
            if failed is None:
                raise
            raise _first(failed) from None
        return snapshot, early, pages.finish(snapshot, self._now(), self._silencing())

    async def _commit(self, detection: Detection, own: list[Event]) -> None:
        """Save the cycle, waking the publisher as each transaction lands: the first
        events of a storm go out while the rest are being written (`Store.commit_steps`)."""
        prefix = self.settings.nats.subject_prefix
        steps = self.store.commit_steps(
            detection, prefix, self.settings.state.events_per_transaction
        )
        while await anyio.to_thread.run_sync(next, steps, None) is not None:
            self.publisher.wake()  # those events are safe in the outbox: they may go out
            crash_point("between_commits")
        if own:
            await anyio.to_thread.run_sync(self.store.add_events, own, prefix)
            self.publisher.wake()

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
