"""The service: wire the parts together, run cycles until told to stop, shut down cleanly.

`open_watcher(settings)` builds everything from settings (credentials, state, client,
publisher) and closes it all on the way out; `Watcher.run()` is the service itself, one
task group holding:

- the cycles (`watcher.cycle.Cycle`), one at a time: the next is scheduled from the start
  of the previous one (interval, plus or minus a jitter); one that overruns is followed
  at once by the next, and one that crashes is logged and followed by the next;
- the publisher's loop (`Publisher.run`), apart from the cycles, so an unreachable NATS
  never stops the watcher from watching;
- the silence follower (`SilenceFollower.run`): the silence bucket, followed live, with
  the maintenance windows of the settings, is what the cycles mark events silenced by;
- the heartbeat, the HTTP endpoint (`/healthz`, `/readyz`, `/metrics`) and the signals.

SIGTERM or SIGINT lets the cycle in flight finish if it can within `STOP_GRACE` seconds
(else it is abandoned: whatever it had not committed is read again by the next run, so
nothing is lost), publishes `stopped`, flushes the outbox (bounded wait) and returns.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from watcher import __version__
from watcher.cycle import Cycle, CycleResult
from watcher.dts.client import DtsClient
from watcher.dts.wiring import client_for
from watcher.events import Severity, watcher_event
from watcher.heap import Heap
from watcher.http import HttpServeError, serve_http
from watcher.logs import get_logger
from watcher.metrics import Metrics
from watcher.publish import Publisher
from watcher.settings import Settings, settings_digest
from watcher.signals import stop_on_signal
from watcher.silence_bucket import SilenceFollower
from watcher.silencing import Silence, Silencing
from watcher.snapshot import Snapshot
from watcher.status import Status
from watcher.store import Store

log = get_logger("watcher.service")
_SHUTDOWN_FLUSH = 10.0  # seconds the outbox may take to drain when stopping
STOP_GRACE = 10.0  # seconds the cycle in flight may take to finish once told to stop
STALE_INTERVALS = 10  # default `health.stale_after`: this many poll intervals

__all__ = ["CycleResult", "Watcher", "open_watcher"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Watcher:
    def __init__(
        self,
        settings: Settings,
        client: DtsClient,
        store: Store,
        publisher: Publisher,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.publisher = publisher
        self.status = Status(
            client=client.stats,
            publishing=publisher.stats,
            outbox_depth=store.outbox_depth,
            nats_connected=lambda: publisher.connected,
            stale_after=settings.health.stale_after or STALE_INTERVALS * settings.poll.interval,
        )
        self._silencing = Silencing(windows=settings.rules.maintenance)
        self.silences = SilenceFollower(settings.nats, on_change=self._silences_changed)
        self.status.silencing = self.silencing
        self.status.silences_followed = lambda: self.silences.synced and not self.silences.error
        self.status.now = now
        self.metrics = Metrics(self.status)
        publisher.on_drained = self.metrics.observe_publish
        self._cycle = Cycle(
            settings, client, store, publisher, self.status, self.metrics, now, self.silencing
        )
        self.status.rules = self._cycle.rules
        self._heap = Heap(settings.poll.gc_freeze)
        self._cycle_scope: anyio.CancelScope | None = None
        self._now = now

    @property
    def baseline(self) -> Snapshot | None:
        """The last known state of every tracked job (None before the first cycle)."""
        return self.status.baseline

    async def cycle(self) -> CycleResult:
        """One cycle (see `watcher.cycle`)."""
        return await self._cycle.run()

    def silencing(self) -> Silencing:
        """The silences (as last seen in the bucket) and the maintenance windows."""
        return self._silencing

    def _silences_changed(self, silences: tuple[Silence, ...]) -> None:
        self._silencing = self._silencing.with_silences(silences)

    async def read_silences(self, within: float) -> bool:
        """Read the silence bucket once (`run` follows it instead); False if it could
        not be read (events are then not marked by its silences)."""
        return await self.silences.load(within)

    async def flush(self, within: float) -> bool:
        """Drain the outbox now, for at most `within` seconds; True if it is empty after."""
        return await self.publisher.flush(within)

    async def run(self, stop: anyio.Event | None = None, *, handle_signals: bool = True) -> None:
        """The service, until `stop` is set (or SIGTERM/SIGINT with `handle_signals`)."""
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
        async with anyio.create_task_group() as tg:
            http = self.settings.http
            if http.port:
                await tg.start(serve_http, self.status, self.metrics, http.host, http.port)
            self._announce("started", "info", self._identity())
            if handle_signals:
                tg.start_soon(stop_on_signal, stop, _log_signal)
            tg.start_soon(self.publisher.run)
            tg.start_soon(self._grace_on_stop, stop)
            tg.start_soon(self.silences.run)
            # The first cycle's events are marked by the silences too: wait for the
            # bucket's first read (or its failure), within the NATS connect timeout.
            with anyio.move_on_after(self.settings.nats.connect_timeout):
                await self.silences.tried.wait()
            if self.settings.health.heartbeat_interval > 0:
                tg.start_soon(self._heartbeat, self.settings.health.heartbeat_interval)
            await self._cycles(stop)
            log.info("service.stopping")
            self._announce("stopped", "info", self._identity())
            if not await self.flush(within=_SHUTDOWN_FLUSH):
                log.warning("service.outbox_not_empty", outbox_depth=self.store.outbox_depth())
            tg.cancel_scope.cancel()

    async def _cycles(self, stop: anyio.Event) -> None:
        interval, jitter = self.settings.poll.interval, self.settings.poll.jitter
        while not stop.is_set():
            began = time.monotonic()
            try:
                await self._cycle_until_stopped(stop)
            except Exception:  # one broken cycle must not end the service
                log.exception("cycle.crashed")
            self._heap.settle()
            delay = interval * (1 + jitter * (2 * random.random() - 1))
            with anyio.move_on_after(max(0.0, began + delay - time.monotonic())):
                await stop.wait()

    async def _cycle_until_stopped(self, stop: anyio.Event) -> None:
        """One cycle; once `stop` is set it has STOP_GRACE seconds left (`_grace_on_stop`),
        then it is cancelled, a request in flight included, and the service stops."""
        with anyio.CancelScope() as scope:
            if stop.is_set():
                scope.deadline = anyio.current_time() + STOP_GRACE
            self._cycle_scope = scope
            try:
                await self.cycle()
            finally:
                self._cycle_scope = None
        if scope.cancelled_caught:
            log.warning("cycle.abandoned", reason="stopping", grace_seconds=STOP_GRACE)

    async def _grace_on_stop(self, stop: anyio.Event) -> None:
        await stop.wait()
        scope = self._cycle_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + STOP_GRACE)

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            self._announce("heartbeat", "info", self.status.heartbeat())

    def _identity(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "settings_digest": settings_digest(self.settings),
            # the shards: the regions themselves without accounts, else account/region
            "regions": [source.label for source in self.client.shards],
        }

    def _announce(self, kind: str, severity: Severity, data: dict[str, Any]) -> None:
        self._cycle.announce(watcher_event(kind, severity, self._now(), data))


def _log_signal(name: str) -> None:
    log.info("service.signal", signal=name)


@asynccontextmanager
async def open_watcher(
    settings: Settings,
    config_file: str | None = None,
    *,
    now: Callable[[], datetime] | None = None,
    **client_options: Any,
) -> AsyncIterator[Watcher]:
    """Build a Watcher from settings and close everything it opened on the way out.

    Raises CredentialsError or StateError before anything runs if those are unusable.
    `now` is the watcher's clock: when it observed what (event times) and whether
    temporary credentials are still valid. The client signs requests with its own clock
    (`client_options["now"]`, the real one by default), which must agree with DTS's.
    """
    clock = now or _utcnow
    client = client_for(settings, config_file, now=clock, **client_options)
    try:
        store = await anyio.to_thread.run_sync(Store.open, settings.state.file)
    except BaseException:
        await client.aclose()
        raise
    try:
        publisher = Publisher(settings.nats, store)
        async with client:
            try:
                yield Watcher(settings, client, store, publisher, now=clock)
            finally:
                with anyio.CancelScope(shield=True):
                    await publisher.close()
    finally:
        store.close()
