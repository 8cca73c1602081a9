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

With several replicas (`cluster.enabled`, `watcher.replica`) the task group also holds
the replica's part: the leases' rounds and the writer of the shared state; the cycles
read only the shards this replica holds, their state in JetStream (no state file). On
SIGTERM the cycle in flight finishes, every shard is handed over (`shard_released`),
then `stopped`.

When the state file fails under it (`watcher.store.failures`): one that cannot be written
right now (disk full, read-only) turns `/readyz` false with the reason, is logged once
(`state.write_failed`, and `state.recovered` when a cycle saves again) and retried each
cycle, the outbox still drained; nothing is lost, since a change not saved is detected
again. One that became unusable (corrupt rows, the file deleted or replaced) is reported
once (`state.unusable`), the outbox flushed as far as NATS allows, and `run` raises it:
the command exits 2 with the same words as at start-up, where the operator must act.
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
from watcher.errors import ConfigError, StateError, StateUnusable, StateWriteError
from watcher.events import Severity, watcher_event
from watcher.heap import Heap
from watcher.http import HttpServeError, serve_http
from watcher.logs import get_logger
from watcher.metrics import Metrics
from watcher.publish import Publisher
from watcher.replica import Replica
from watcher.settings import Settings, settings_digest
from watcher.signals import stop_on_signal
from watcher.silence_bucket import SilenceFollower
from watcher.silencing import Silence, Silencing
from watcher.snapshot import Snapshot
from watcher.source_health import SourceHealth
from watcher.status import Status
from watcher.store import OutboxEntry, StateStore, Store

log = get_logger("watcher.service")
_SHUTDOWN_FLUSH = 10.0  # seconds the outbox may take to drain when stopping
STOP_GRACE = 10.0  # seconds the cycle in flight may take to finish once told to stop
_LEAVE = 20.0  # seconds a replica may take to hand its shards over when stopping
STALE_INTERVALS = 10  # default `health.stale_after`: this many poll intervals

__all__ = ["CycleResult", "Watcher", "open_watcher"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Watcher:
    def __init__(
        self,
        settings: Settings,
        client: DtsClient,
        store: StateStore,
        publisher: Publisher,
        *,
        now: Callable[[], datetime] = _utcnow,
        replica: Replica | None = None,
    ) -> None:
        """`replica`: several replicas (`store` is then its shared state)."""
        self.settings = settings
        self.client = client
        self.store = store
        self.publisher = publisher
        self.replica = replica
        self.status = Status(
            client=client.stats,
            publishing=publisher.stats,
            outbox_depth=store.outbox_depth,
            nats_connected=lambda: publisher.connected,
            stale_after=settings.health.stale_after or STALE_INTERVALS * settings.poll.interval,
            publish_problem=lambda: publisher.problem,
            dead_letters=store.dead_letter_count,
        )
        self._silencing = Silencing(windows=settings.rules.maintenance)
        self.silences = SilenceFollower(settings.nats, on_change=self._silences_changed)
        self.status.silencing = self.silencing
        self.status.silences_followed = lambda: self.silences.synced and not self.silences.error
        self.status.now = now
        self.metrics = Metrics(self.status)
        publisher.on_drained = self.metrics.observe_publish
        publisher.on_dead_letter = self._dead_lettered
        self._cycle = Cycle(
            settings,
            client,
            store,
            publisher,
            self.status,
            self.metrics,
            now,
            self.silencing,
            replica.active if replica is not None else lambda: None,
        )
        self.status.rules = self._cycle.rules
        if replica is not None:
            self.status.cluster_problem = lambda: replica.problem
            self.status.shards_held = lambda: len(replica.active())
            replica.bind(
                health=lambda: self.status.health,
                set_health=self._set_health,
                said=self._cycle.said,
                wake_publisher=publisher.wake,
                finished=self._cycle.finished,
            )
        self._heap = Heap(settings.poll.gc_freeze)
        self._cycle_scope: anyio.CancelScope | None = None
        self._now = now

    def _set_health(self, health: SourceHealth) -> None:
        self.status.health = health

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
            # A port already in use, a cluster that refuses this replica: configuration
            # errors, raised as themselves.
            matched, rest = group.split((HttpServeError, ConfigError))
            if matched is not None and rest is None:
                raise _first(matched) from None
            raise

    async def _serve(self, stop: anyio.Event, handle_signals: bool) -> None:
        unusable: StateUnusable | None = None
        async with anyio.create_task_group() as tg:
            http = self.settings.http
            if http.port:
                await tg.start(serve_http, self.status, self.metrics, http.host, http.port)
            self._announce("started", "info", self._identity())
            if handle_signals:
                tg.start_soon(stop_on_signal, stop, _log_signal)
            tg.start_soon(self.publisher.run)
            if self.replica is not None:
                tg.start_soon(self.replica.run)
            tg.start_soon(self._grace_on_stop, stop)
            tg.start_soon(self.silences.run)
            # The first cycle's events are marked by the silences too: wait for the
            # bucket's first read (or its failure), within the NATS connect timeout.
            with anyio.move_on_after(self.settings.nats.connect_timeout):
                await self.silences.tried.wait()
            if self.settings.health.heartbeat_interval > 0:
                tg.start_soon(self._heartbeat, self.settings.health.heartbeat_interval)
            try:
                await self._cycles(stop)
            except StateUnusable as exc:
                log.error("state.unusable", reason=str(exc))
                unusable = exc
            log.info("service.stopping")
            if self.replica is not None:
                await self.replica.leave(within=_LEAVE)
            if unusable is None:
                self._announce("stopped", "info", self._identity())
            await self._settled()
            if not await self.flush(within=_SHUTDOWN_FLUSH):
                log.warning("service.outbox_not_empty", outbox_depth=self.publisher.depth())
            tg.cancel_scope.cancel()
        if unusable is not None:
            raise unusable

    async def _cycles(self, stop: anyio.Event) -> None:
        interval, jitter = self.settings.poll.interval, self.settings.poll.jitter
        while not stop.is_set():
            began = time.monotonic()
            try:
                await self._cycle_until_stopped(stop)
                self._state_saved()
            except StateUnusable:
                raise
            except StateWriteError as exc:
                self._state_not_saved(exc)
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

    async def _settled(self) -> None:
        """Several replicas: the service's own events just said are in the shared state."""
        if self.replica is not None and not await self.replica.state.settle(_SHUTDOWN_FLUSH):
            log.warning("service.events_not_saved")

    def _state_not_saved(self, exc: StateWriteError) -> None:
        """A cycle could not be saved: not ready, said once per distinct reason."""
        if self.status.state_problem != str(exc):
            log.warning("state.write_failed", reason=str(exc))
        self.status.state_problem = str(exc)

    def _state_saved(self) -> None:
        if self.status.state_problem is not None:
            log.info("state.recovered", was=self.status.state_problem)
            self.status.state_problem = None

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                data = self.status.heartbeat()  # two quick SQLite reads, on this thread
            except StateError as exc:
                log.warning("heartbeat.skipped", reason=str(exc))
                continue
            self._announce("heartbeat", "info", data)

    def _dead_lettered(self, entry: OutboxEntry, reason: str) -> None:
        """An event was set aside (`watcher.publish`): announce it, unless it was itself
        such an announcement (which would go round and round)."""
        if entry.subject.endswith(".watcher.event_dead_lettered"):
            return
        kind = entry.subject.rsplit(".", 1)[-1]
        scope = "watcher" if ".watcher." in entry.subject else "job"
        data = {
            "event_id": entry.id,
            "event_type": f"dts.{scope}.{kind}"[:100],
            "subject": entry.subject[:300],
            "bytes": len(entry.payload),
            "reason": reason[:1000],
        }
        self._announce("event_dead_lettered", "critical", data)

    def _identity(self) -> dict[str, Any]:
        identity = {
            "version": __version__,
            "settings_digest": settings_digest(self.settings),
            # the shards: the regions themselves without accounts, else account/region
            "regions": [source.label for source in self.client.shards],
        }
        if self.replica is not None:
            identity["member"] = self.replica.member
        return identity

    def _announce(self, kind: str, severity: Severity, data: dict[str, Any]) -> None:
        """Queue one of the service's own events; a state that cannot take it is logged
        (the cycles report it), never raised into the service's task group."""
        try:
            self._cycle.announce(watcher_event(kind, severity, self._now(), data))
        except StateError as exc:
            log.warning("event.not_saved", kind=kind, reason=str(exc))


def _log_signal(name: str) -> None:
    log.info("service.signal", signal=name)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


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
    replica: Replica | None = None
    store: StateStore
    try:
        if settings.cluster.enabled:  # the state is the cluster's: no state file
            replica = Replica(settings, [source.shard for source in client.shards])
            store = replica.state
        else:
            store = await anyio.to_thread.run_sync(Store.open, settings.state.file)
    except BaseException:
        await client.aclose()
        raise
    store.wire.limit = settings.nats.max_event_bytes
    store.wire.endpoint_details = settings.events.endpoint_details
    try:
        publisher = Publisher(settings.nats, store)
        async with client:
            try:
                yield Watcher(settings, client, store, publisher, now=clock, replica=replica)
            finally:
                with anyio.CancelScope(shield=True):
                    await publisher.close()
    finally:
        store.close()
