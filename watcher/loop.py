"""The service: wire the parts together and run cycles until told to stop.

One cycle: fetch a snapshot (client) -> detect changes (pure) -> commit baseline, memory
and events (store: each job's state with its events) -> log each event -> wake the
publisher, which drains the outbox into JetStream. With `poll.emit = "page"`, each page
is judged, saved and published as it arrives, and only what needs the whole listing
(absence) waits for its end. Polling and publishing are separate tasks, so an
unreachable NATS never stops the watcher from watching: events wait in the outbox.

Cycles never overlap: the next one is scheduled from the start of the previous one
(interval, plus or minus a jitter), and if a cycle overruns, the next starts right after.
SIGTERM or SIGINT lets the cycle in flight finish, flushes the outbox (bounded wait),
publishes `stopped`, and returns.
"""

from __future__ import annotations

import gc
import math
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel

from watcher import __version__
from watcher.detect import Detection, Memory, PageByPage, Rules, detect
from watcher.dts.client import DtsClient
from watcher.dts.credentials import provider_from_settings
from watcher.events import Event, Severity, format_time, watcher_event
from watcher.faults import crash_point
from watcher.http import HttpServeError, serve_http
from watcher.logs import get_logger
from watcher.metrics import Metrics
from watcher.publish import Publisher, PublishError
from watcher.settings import Settings, settings_digest
from watcher.snapshot import JobState, Snapshot
from watcher.source_health import SourceHealth, track
from watcher.store import Store

log = get_logger("watcher.loop")
event_log = get_logger("watcher.events")
_LOG_SLICE = 16  # event log lines written between two chances for the publisher to run
_LOG_DEFERRAL = 2.0  # seconds a cycle's log lines may wait, in all, for the publisher


_UNFREEZE_EVERY = 100  # cycles between full garbage collections
_settled = 0


def settle_heap() -> None:
    """After each cycle of the service: collect what the cycle left, then freeze the
    rest (`gc.freeze`), so that later collections skip it.

    The baseline of 10,000 jobs is some 400,000 objects that live for many cycles. A
    full collection walks them all (0.2 to 0.4 s of CPU on 2 cores), and a storm, which
    makes tens of thousands of new objects, used to trigger one in the middle of its
    publishing (the benchmark caught the first transaction of a storm taking 371 ms
    instead of 12). Frozen objects are still freed as soon as nothing refers to them
    (the old baseline's jobs, replaced); only reference cycles among them would wait,
    so every `_UNFREEZE_EVERY` cycles everything is unfrozen and collected in full.
    Freezing is process-wide: a program that embeds `Watcher.run` shares the effect.
    """
    global _settled
    _settled += 1
    if _settled % _UNFREEZE_EVERY == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def rules_from(settings: Settings) -> Rules:
    r = settings.rules
    return Rules.from_thresholds(
        r.delay_thresholds,
        delay_hysteresis=r.delay_hysteresis,
        delay_for_cycles=r.delay_for_cycles,
        announce_existing=r.announce_existing,
        removed_after=r.removed_after,
    )


@dataclass
class CycleResult:
    snapshot: Snapshot
    events: list[Event]
    complete: bool
    duration: float

    @property
    def reasons(self) -> dict[str, str]:
        return self.snapshot.incomplete_reasons


@dataclass
class Counters:
    cycles: int = 0
    incomplete_cycles: int = 0
    events: dict[str, int] = field(default_factory=dict)
    last_complete: datetime | None = None


class Watcher:
    def __init__(
        self,
        settings: Settings,
        client: DtsClient,
        store: Store,
        publisher: Publisher,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.metrics.bind(self)
        self.client = client
        self.store = store
        self.publisher = publisher
        self.rules = rules_from(settings)
        self.counters = Counters()
        self._now = now
        self._baseline: Snapshot | None = None
        self._memory = Memory()
        self._health = SourceHealth()
        self._wake = anyio.Event()

    @property
    def baseline(self) -> Snapshot | None:
        """The last known state of every tracked job (None before the first cycle)."""
        return self._baseline

    # -- one cycle -------------------------------------------------------------------------

    async def cycle(self) -> CycleResult:
        started = time.monotonic()
        if self._baseline is None:
            self._baseline, self._memory = await anyio.to_thread.run_sync(self.store.load)
        try:
            if self.settings.poll.emit == "page":
                snapshot, early, detection = await self._fetch_page_by_page(self._baseline)
            else:
                early = []
                snapshot = await self.client.fetch()
                detection = detect(self._baseline, snapshot, self._memory, self.rules, self._now())
            own = self._health_events(snapshot)
            events = [*early, *detection.events, *own]
            crash_point("before_commit")
            await self._commit(detection, own)
        except BaseException:
            # Some of the cycle's transactions may be saved: start the next cycle from
            # what the store holds, not from what this one started with.
            self._baseline = None
            raise
        crash_point("after_commit")
        self._baseline, self._memory = detection.baseline, detection.memory
        self._count(snapshot, events)
        await self._log_events(events)
        duration = time.monotonic() - started
        self.metrics.observe_cycle(duration, snapshot.complete, self._now())
        self.metrics.observe_events(events)
        log.info(
            "cycle.done",
            complete=snapshot.complete,
            jobs=len(detection.baseline),
            events=len(events),
            duration_seconds=round(duration, 3),
            **({"incomplete": snapshot.incomplete_reasons} if not snapshot.complete else {}),
        )
        return CycleResult(snapshot, events, snapshot.complete, duration)

    async def _fetch_page_by_page(
        self, baseline: Snapshot | None
    ) -> tuple[Snapshot, list[Event], Detection]:
        """`poll.emit = "page"`: judge each consistent page as it arrives (see
        `PageByPage`), save what moved with its events and wake the publisher, while the
        rest of the listing is read; then judge what no page did. Returns the snapshot,
        the events already saved, and the rest of the cycle's detection."""
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
                        except anyio.WouldBlock:
                            break
                    found = pages.judge(batch, self._now())
                    if not found.jobs and not found.events:
                        continue  # the steady case: no transaction, no thread
                    await anyio.to_thread.run_sync(
                        self.store.save_page, found.jobs, found.events, prefix
                    )
                    if found.events:
                        early.extend(found.events)
                        self._wake.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(judge)
            async with send:
                snapshot = await self.client.fetch(on_page=on_page)
        return snapshot, early, pages.finish(snapshot, self._now())

    async def _log_events(self, events: list[Event]) -> None:
        """One JSON log line per event, after the publisher had its turn.

        A line costs ~80 µs (the structlog and logging chain): a storm of 10,000 events
        spends most of a second on them. Written all at once, before the publisher could
        run, they would hold every event back from JetStream until the last line; so they
        go in slices, each once the publisher is through with the outbox, and the events
        reach their consumers first, the log lines right behind. The lines wait for the
        publisher at most `_LOG_DEFERRAL` seconds in all: when NATS is slow or down, the
        cycle (and the next poll) must not wait on it.
        """
        logger = event_log.bind()  # one bound logger for the lot, not one per line
        deadline = time.monotonic() + _LOG_DEFERRAL
        for start in range(0, len(events), _LOG_SLICE):
            if start:
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await self.publisher.wait_idle()
                await anyio.lowlevel.checkpoint()
            for event in events[start : start + _LOG_SLICE]:
                logger.info("event", **event.log_fields())

    async def _commit(self, detection: Detection, extra: list[Event]) -> None:
        """Save the cycle, waking the publisher as each transaction lands: the first
        events of a storm go out while the rest are being written (`Store.commit_steps`)."""
        prefix = self.settings.nats.subject_prefix
        steps = self.store.commit_steps(
            detection, prefix, self.settings.state.events_per_transaction
        )
        while await anyio.to_thread.run_sync(next, steps, None) is not None:
            self._wake.set()  # those events are safe in the outbox: they may go out
            crash_point("between_commits")
        if extra:
            await anyio.to_thread.run_sync(self.store.add_events, extra, prefix)
            self._wake.set()

    def _health_events(self, snapshot: Snapshot) -> list[Event]:
        """cycle_incomplete for this cycle, and source_unavailable / source_recovered."""
        now = self._now()
        events: list[Event] = []
        if not snapshot.complete:
            regions = {
                name: {"error_code": r.error_code, "error": r.error}
                for name, r in sorted(snapshot.regions.items())
                if not r.complete
            }
            events.append(watcher_event("cycle_incomplete", "warning", now, {"regions": regions}))
        said, self._health = track(
            self._health, snapshot, self.settings.health.unavailable_after, now
        )
        events += [watcher_event(kind, severity, now, data) for kind, severity, data in said]
        return events

    def _count(self, snapshot: Snapshot, events: list[Event]) -> None:
        c = self.counters
        c.cycles += 1
        if snapshot.complete:
            c.last_complete = self._now()
        else:
            c.incomplete_cycles += 1
        for event in events:
            c.events[event.type] = c.events.get(event.type, 0) + 1

    # -- publishing ------------------------------------------------------------------------

    async def _drain(self) -> None:
        """One drain of the outbox, timed for the publish-latency metric."""
        began = time.monotonic()
        count = await self.publisher.drain()
        if count:
            self.metrics.observe_publish(count, time.monotonic() - began)

    async def flush(self, within: float) -> bool:
        """Drain the outbox now, for at most `within` seconds; True if it is empty after."""
        with anyio.move_on_after(within):
            try:
                await self._drain()
            except PublishError as exc:
                log.warning("publish.deferred", reason=str(exc))
        return await anyio.to_thread.run_sync(self.store.outbox_depth) == 0

    async def _publish_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._drain()
                backoff = 0.5
            except PublishError as exc:
                depth = await anyio.to_thread.run_sync(self.store.outbox_depth)
                log.warning("publish.deferred", reason=str(exc), outbox_depth=depth)
                await anyio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)
                continue
            with anyio.move_on_after(5.0):
                await self._wake.wait()
            self._wake = anyio.Event()

    # -- heartbeat -------------------------------------------------------------------------

    def heartbeat_data(self) -> dict[str, Any]:
        jobs = self._baseline.jobs.values() if self._baseline is not None else ()
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job.status] = by_status.get(job.status, 0) + 1
        c = self.counters
        return {
            "jobs": sum(by_status.values()),
            "jobs_by_status": dict(sorted(by_status.items())),
            "cycles": c.cycles,
            "incomplete_cycles": c.incomplete_cycles,
            "events_emitted": dict(sorted(c.events.items())),
            "outbox_depth": self.store.outbox_depth(),
            "last_complete_cycle": format_time(c.last_complete) if c.last_complete else None,
            "regions_unavailable": sorted(
                name for name, h in self._health.regions.items() if h.announced
            ),
            "nats_connected": self.publisher.connected,
        }

    async def _heartbeat_forever(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            self._emit_own("heartbeat", "info", self.heartbeat_data())

    # -- the service -----------------------------------------------------------------------

    async def run(self, stop: anyio.Event | None = None, *, handle_signals: bool = True) -> None:
        stop = stop or anyio.Event()
        try:
            await self._serve(stop, handle_signals)
        except BaseExceptionGroup as group:
            # A port already in use is a configuration error: raise it as itself.
            matched, rest = group.split(HttpServeError)
            if matched is not None and rest is None:
                raise matched.exceptions[0] from None
            raise

    async def _serve(self, stop: anyio.Event, handle_signals: bool) -> None:
        interval = self.settings.poll.interval
        jitter = self.settings.poll.jitter
        async with anyio.create_task_group() as tg:
            if self.settings.http.port:
                await tg.start(
                    serve_http, self, self.metrics, self.settings.http.host, self.settings.http.port
                )
            self._emit_own("started", "info", self._identity())
            if handle_signals:
                tg.start_soon(_stop_on_signal, stop)
            tg.start_soon(self._publish_forever)
            if self.settings.health.heartbeat_interval > 0:
                tg.start_soon(self._heartbeat_forever, self.settings.health.heartbeat_interval)
            while not stop.is_set():
                began = time.monotonic()
                try:
                    await self.cycle()
                except Exception:  # one broken cycle must not end the service
                    log.exception("cycle.crashed")
                settle_heap()
                delay = interval * (1 + jitter * (2 * random.random() - 1))
                wait = max(0.0, began + delay - time.monotonic())
                with anyio.move_on_after(wait):
                    await stop.wait()
            log.info("service.stopping")
            self._emit_own("stopped", "info", self._identity())
            flushed = await self.flush(within=10.0)
            if not flushed:
                log.warning("service.outbox_not_empty", outbox_depth=self.store.outbox_depth())
            tg.cancel_scope.cancel()

    def _identity(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "settings_digest": settings_digest(self.settings),
            "regions": list(self.settings.dts.regions),
        }

    def _emit_own(self, kind: str, severity: Severity, data: dict[str, Any]) -> None:
        event = watcher_event(kind, severity, self._now(), data)
        self.store.add_events([event], self.settings.nats.subject_prefix)
        self.counters.events[event.type] = self.counters.events.get(event.type, 0) + 1
        self.metrics.observe_events([event])
        event_log.info("event", **event.log_fields())
        self._wake.set()


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("service.signal", signal=signal.Signals(signum).name)
            stop.set()
            return


@asynccontextmanager
async def open_watcher(
    settings: Settings,
    config_file: str | None = None,
    *,
    now: Callable[[], datetime] | None = None,
    **client_options: Any,
) -> AsyncIterator[Watcher]:
    """Build a Watcher from settings and close everything it opened on the way out.

    `now` is the watcher's clock: when it observed what (event times) and whether
    temporary credentials are still valid. The client signs requests with its own clock
    (`client_options["now"]`, the real one by default), which must agree with DTS's.

    Raises CredentialsError or StateError before anything runs if those are unusable.
    """
    clock = now or _utcnow
    provider = provider_from_settings(settings, config_file, now=clock)
    store = await anyio.to_thread.run_sync(Store.open, settings.state.file)
    try:
        publisher = Publisher(settings.nats, store)
        async with DtsClient(settings.dts, provider, **client_options) as client:
            try:
                yield Watcher(settings, client, store, publisher, now=clock)
            finally:
                with anyio.CancelScope(shield=True):
                    await publisher.close()
    finally:
        store.close()
