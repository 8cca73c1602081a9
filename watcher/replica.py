"""Several replicas (`cluster.enabled`): this replica's part, between the service and
`watcher.cluster`.

`Replica.run()` connects to NATS (retrying while it cannot), checks the surroundings
(JetStream; the leases and state buckets, made if missing; the events stream's replicas
and duplicate window: an error stops the start, a warning is logged), reads this
member's own entries, and takes part in the leases' rounds (`Coordinator`) until told
to leave. It is the rounds' `ShardHandler`:

- **acquired**: the shard's entries are read (`ClusterState.adopt`, in the background:
  a round must not wait for a big shard), its read health joins the status, and
  `shard_acquired` is saved in the shard's entry; from then on the cycles read it
  (`active`).
- **releasing** (handed over, or this replica leaving): the next cycles leave it out,
  the cycle in flight finishes, its cycle count and health are saved with
  `shard_released`, its waiting events are given a chance to reach JetStream (bounded),
  and it is forgotten; then the lease is deleted.
- **lost** (a renewal found it taken, or it expired): forgotten at once; `shard_released`
  (`reason` lost) goes into this member's own entry. Nothing more of it is written or
  published from here: every write checks the lease (`holds`) and the entry's revision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import nats.errors
import nats.js.errors

from watcher import natsconn
from watcher.cluster import Coordinator, Leases, checks, open_bucket, read_view
from watcher.cluster.bucket import open_state_bucket
from watcher.cluster.checks import Finding
from watcher.cluster.keys import shard_name
from watcher.cluster.state import ClusterState
from watcher.errors import ClusterError, StateError, why
from watcher.events import Event, Severity, watcher_event
from watcher.logs import get_logger
from watcher.settings import Settings
from watcher.shards import Shard, shard_label
from watcher.source_health import RegionHealth, SourceHealth

__all__ = ["Replica", "label_of", "name_of"]

log = get_logger("watcher.replica")
_FLUSH_ON_HANDOVER = 10.0  # seconds a shard handed over waits for its events to go out


def name_of(label: str) -> str:
    """The leases' name of a shard (`account/region`) from its label."""
    shard = Shard.parse(label)
    return shard_name(shard.account, shard.region)


def label_of(name: str) -> str:
    account, _, region = name.rpartition("/")
    return shard_label(account, region)


class Replica:
    def __init__(self, settings: Settings, shards: list[Shard]) -> None:
        self.settings = settings
        self.member = settings.cluster.member
        self.shards = [shard.label for shard in shards]
        self.state = ClusterState(
            self.member,
            holds=self.holds,
            health=self._health_of,
            timeout=settings.nats.publish_timeout,
        )
        self.leases: Leases | None = None
        self.coordinator: Coordinator | None = None
        self.problem: str | None = "not joined to the cluster yet: connecting to NATS"
        self._active: set[str] = set()
        self._releasing: set[str] = set()
        self._loading: dict[str, anyio.Event] = {}
        self._health: Callable[[], SourceHealth] = SourceHealth
        self._set_health: Callable[[SourceHealth], None] = lambda health: None
        self._said: Callable[[Event], None] = lambda event: None
        self._wake_publisher: Callable[[], None] = lambda: None
        self._finished: Callable[[str], Any] | None = None
        self._nc: Any = None
        self._tg: Any = None
        self._rounds_over = anyio.Event()

    def bind(
        self,
        *,
        health: Callable[[], SourceHealth],
        set_health: Callable[[SourceHealth], None],
        said: Callable[[Event], None],
        wake_publisher: Callable[[], None],
        finished: Callable[[str], Any],
    ) -> None:
        """The service's parts this needs: the read health (status), how an event is
        counted and logged, the publisher's wake-up, the cycle's `finished`."""
        self._health, self._set_health = health, set_health
        self._said, self._wake_publisher, self._finished = said, wake_publisher, finished

    # --- what the others ask ---------------------------------------------------------

    def holds(self, label: str) -> bool:
        """This member's lease on the shard is certain right now (the fence)."""
        return self.leases is not None and self.leases.holds(name_of(label))

    def active(self) -> frozenset[str]:
        """The shards the next cycle reads: held, read in, not being handed over."""
        return frozenset(self._active - self._releasing)

    def _health_of(self, label: str) -> RegionHealth | None:
        return self._health().regions.get(label)

    def held(self) -> dict[str, str]:
        """Shard label -> since when this member holds it (RFC 3339)."""
        if self.leases is None:
            return {}
        return {label_of(n): self.leases.since(n) or "" for n in sorted(self.leases.held())}

    # --- the life of a replica ---------------------------------------------------------

    async def run(self) -> None:
        """Join, take part, until the service ends; ClusterError (exit 2) for what cannot
        work. What NATS cannot answer yet (a leader being elected) is tried again."""
        self._nc = await self._connect()
        try:
            await self._join()
            assert self.leases is not None
            names = map(name_of, self.shards)
            self.coordinator = Coordinator(self.leases, names, self, nc=self._nc)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self.state.run)
                await tg.start(self._rounds)
                self.problem = None
                log.info("cluster.ready", member=self.member, shards=len(self.shards))
                # Until the service ends: after `leave`, the writer still saves `stopped`.
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._nc.close()

    async def _join(self) -> None:
        """The checks, the buckets, then this member's own entry (`started` goes out
        before the shards' news) and those of members gone; retried while NATS cannot
        answer, at once fatal for what cannot work (ClusterError)."""
        js = self._nc.jetstream(timeout=self.settings.nats.publish_timeout)
        pause, said = 0.5, ""
        while True:
            try:
                if self.leases is None:
                    await self._prepare(js)
                assert self.leases is not None
                await self.state.start((await read_view(self.leases)).members)
                return
            except ClusterError:
                raise
            except Exception as exc:  # NATS or JetStream not answering yet: again
                reason = why(exc)
                self.problem = f"not joined to the cluster yet: {reason}"
                if reason != said:
                    log.warning("cluster.join_failed", error=reason, retry_in=pause)
                    said = reason
            await anyio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _rounds(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.coordinator is not None
        try:
            await self.coordinator.run(task_status=task_status)
        finally:
            self._rounds_over.set()

    async def _connect(self) -> Any:
        pause, said = 0.5, ""
        nats_settings = self.settings.nats
        while True:
            try:
                with anyio.fail_after(nats_settings.connect_timeout * 2 + 1):
                    return await natsconn.connect(
                        nats_settings, name=f"dts-watcher-cluster {self.member}"
                    )
            except Exception as exc:  # nats-py raises a variety of OS and protocol errors
                reason = why(exc) if not isinstance(exc, TimeoutError) else "timed out"
                self.problem = f"not joined to the cluster yet: cannot reach NATS ({reason})"
                if reason != said:
                    log.warning("cluster.connect_failed", error=reason, retry_in=pause)
                    said = reason
            await anyio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _prepare(self, js: Any) -> None:
        """The checks, and the two buckets."""
        cluster = self.settings.cluster
        checks.raise_errors(await checks.survey(js, self.settings.nats.display_url))
        leases, found = await open_bucket(js, cluster.bucket, cluster.lease_ttl, cluster.replicas)
        state, more = await open_state_bucket(js, cluster.state_bucket, cluster.replicas)
        found += more + await self._stream_findings(js, state.stream)
        checks.raise_errors(found)
        for finding in found:
            log.warning("cluster.surroundings", problem=finding.message)
        self.leases = Leases(leases, self.member)
        self.state.attach(state)

    async def _stream_findings(self, js: Any, bucket_stream: str) -> list[Finding]:
        """The events stream: one replica on a cluster, a duplicate window shorter than
        a lease TTL plus a cycle (the stream as it is; the settings, if not made yet)."""
        nats_settings, cluster = self.settings.nats, self.settings.cluster
        name = nats_settings.stream
        info = await js.stream_info(bucket_stream)
        clustered = bool(info.cluster is not None and info.cluster.name)
        try:
            stream = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            window, replicas = nats_settings.duplicate_window, nats_settings.stream_replicas
        else:
            window = stream.config.duplicate_window or 0.0
            replicas = stream.config.num_replicas or 1
        what = f"the events stream {name}"
        return checks.replicas(
            what, checks.STREAM_REPLICAS, replicas, clustered
        ) + checks.duplicate_window(
            name,
            window,
            cluster.lease_ttl,
            self.settings.poll.interval,
            setting=checks.DUPLICATE_WINDOW,
        )

    async def leave(self, within: float) -> None:
        """Hand every shard over and leave (at most `within` seconds)."""
        coordinator = self.coordinator
        if coordinator is not None and self._tg is not None:
            coordinator.stop()  # the rounds hand each shard over, then end
            with anyio.move_on_after(within) as scope:
                await self._rounds_over.wait()
            if scope.cancelled_caught:
                log.warning("cluster.leave_slow", held=sorted(self.held()))

    # --- the rounds' ShardHandler ------------------------------------------------------

    async def shard_acquired(self, shard: str) -> None:
        label = label_of(shard)
        if label in self._loading:
            return  # still being read (lost and taken again meanwhile): that read stands
        loaded = self._loading[label] = anyio.Event()
        if self._tg is None:
            await self._adopt(label, loaded)
        else:
            self._tg.start_soon(self._adopt, label, loaded)

    async def _adopt(self, label: str, loaded: anyio.Event) -> None:
        try:
            record = await self.state.adopt(label)
            if not self.holds(label):  # lost while it was read
                self.state.drop(label)
                return
            health = self._health().regions
            if record.health is not None:
                self._set_health(SourceHealth({**health, label: record.health}))
            event = self._event("shard_acquired", "info", label)
            await self.state.say([event], self.settings.nats.subject_prefix)
            self._said(event)
            self._wake_publisher()
            self._active.add(label)
            jobs = self.state.jobs_in(label)
            log.info("shard.watching", shard=label, cycle=record.cycle, jobs=jobs)
        except Exception as exc:  # NATS, a leader election, an unreadable bucket
            # Read again at the next round: the lease is given up, the shard free.
            log.warning("shard.not_read", shard=label, error=why(exc))
            self.state.drop(label)
            if self.leases is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await self.leases.release(name_of(label))
        finally:
            loaded.set()
            self._loading.pop(label, None)

    async def shard_releasing(self, shard: str) -> None:
        label = label_of(shard)
        self._releasing.add(label)
        try:
            loading = self._loading.get(label)
            if loading is not None:
                await loading.wait()
            if self._finished is not None:
                await self._finished(label)  # the cycle in flight
            if label not in self.state.loaded():
                return
            reason = "stopping" if self._stopping() else "handover"
            event = self._event("shard_released", "info", label, reason)
            try:
                await self.state.release(label, [event], self.settings.nats.subject_prefix)
                self._said(event)
            except StateError as exc:
                log.warning("shard.release_not_saved", shard=label, error=str(exc))
            self._wake_publisher()
            with anyio.move_on_after(_FLUSH_ON_HANDOVER):
                await self.state.flushed(label)
        finally:
            self._forget(label)

    def _stopping(self) -> bool:
        return self.coordinator is not None and self.coordinator.stopping

    async def shard_lost(self, shard: str) -> None:
        label = label_of(shard)
        self._forget(label)
        event = self._event("shard_released", "warning", label, "lost")
        self.state.add_events([event], self.settings.nats.subject_prefix)  # this member's entry
        self._said(event)

    def _forget(self, label: str) -> None:
        self._active.discard(label)
        self._releasing.discard(label)
        self.state.drop(label)
        health = self._health().regions
        if label in health:
            self._set_health(SourceHealth({k: v for k, v in health.items() if k != label}))

    def _event(self, kind: str, severity: Severity, label: str, reason: str | None = None) -> Event:
        shard = Shard.parse(label)
        data = {"account": shard.account, "region": shard.region, "member": self.member}
        if reason is not None:
            data["reason"] = reason
        return watcher_event(kind, severity, datetime.now(UTC), data)
