"""Publishing: drain the store's outbox into JetStream, never losing or doubling an event.

The contract with the store is simple: an outbox entry is deleted only after JetStream
acknowledged it (PubAck). Whatever goes wrong in between (NATS down, a timeout, a lost
ack, the process killed), the entry is still there and is sent again later with the same
`Nats-Msg-Id`, which JetStream's duplicate window turns into a no-op if the first copy
had in fact been stored.

Publishes are pipelined with a bounded number in flight, and sent in outbox order over
one connection, so JetStream stores the events of a job in the order they were produced.
They are plain NATS publishes with a reply subject under our own inbox, which is all a
JetStream publish is: the stream answers each on its reply subject with a PubAck (or an
error). Matching those answers to outbox entries here, without a future and a timer per
message as nats-py's `publish_async` keeps, halves the CPU a storm of events costs.

The connection is made lazily and re-made when lost; the stream is created when missing
(subjects `<prefix>.>`, a duplicate window of at least two minutes) and re-checked after
any failure, so a NATS restart that lost the stream is repaired on the next drain.

`run()` is the publisher's own loop in the service: drain whenever woken (`wake()`, after
each commit) or every few seconds, and back off with jitter while NATS refuses, so an
unreachable NATS never stops the watcher from watching: events wait in the outbox.

One event must never hold back the rest. What JetStream would refuse for good is found
before it is sent: a subject no server takes (an outbox row of an older version), a
payload over the server's `max_payload` or the stream's `max_msg_size` (trimmed to fit
first, `watcher.wire`; set aside only if it still cannot). So is an event JetStream
refuses twice for its size. Such an event is moved to the state file's `dead_letters`
table with the reason (`on_dead_letter` tells the service, which counts it and announces
`event_dead_lettered`), and the drain goes on. Any other refusal (a full stream that
discards new messages, say) stops the drain with JetStream's own words, in the log, in
`problem` (`/readyz`) and in the error; the events wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig

from watcher import natsconn
from watcher.errors import PublishError, StateError, why
from watcher.events import CONTENT_TYPE
from watcher.faults import crash_point
from watcher.logs import get_logger
from watcher.natsconn import connect_options
from watcher.pubacks import Flight, suspect
from watcher.settings import NatsSettings
from watcher.store import Outbox, OutboxEntry
from watcher.streamcheck import stream_problems
from watcher.subjects import publishable
from watcher.wire import HEADROOM, rebound

log = get_logger("watcher.publish")

__all__ = ["PublishError", "PublishStats", "Publisher", "connect_options"]

_IDLE_DRAIN = 5.0  # seconds between drains when nobody wakes the publisher
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


@dataclass
class PublishStats:
    published: int = 0  # events acknowledged and removed from the outbox
    failures: int = 0  # drains that ended with events not acknowledged
    dead_lettered: int = 0  # events JetStream refused for good, set aside


class Publisher:
    def __init__(
        self,
        settings: NatsSettings,
        store: Outbox,
        *,
        max_in_flight: int = 1024,
        on_drained: Callable[[int, float], None] | None = None,
    ) -> None:
        """`on_drained(count, seconds)`: after each drain that acknowledged events;
        `on_dead_letter(entry, reason)`: after an event was set aside."""
        self.settings = settings
        self.store = store
        self.stats = PublishStats()
        self.on_drained = on_drained
        self.on_dead_letter: Callable[[OutboxEntry, str], None] | None = None
        self.problem: str | None = None  # why the last drain failed (None: it did not)
        self._limit = min(store.wire.limit, settings.max_event_bytes)
        self._refused_size: set[int] = set()  # seqs JetStream refused once for their size
        self._stream_said: set[str] = set()  # stream problems already logged
        self._wake = anyio.Event()
        self._max_in_flight = max_in_flight
        self._nc: NatsClient | None = None
        self._js: Any = None
        self._stream_checked = False
        self._lock = anyio.Lock()
        self._closing = False
        self._last_error: str | None = None
        # Reply subjects of in-flight publishes: <inbox>.<token> -> (flight, outbox seq).
        self._inbox = ""
        self._tokens = 0
        self._waiting: dict[str, tuple[Flight, int]] = {}
        self._idle = anyio.Event()  # set while no drain is publishing
        self._idle.set()

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def _connection(self) -> Any:
        if self._nc is not None and not self._nc.is_closed:
            if not self._nc.is_connected:
                raise PublishError("NATS connection lost, reconnecting")
            return self._js
        self._nc = None

        async def on_error(exc: Exception) -> None:
            reason = why(exc)
            if reason != self._last_error:  # once per distinct error, not once per retry
                log.warning("nats.error", error=reason)
            self._last_error = reason

        async def on_disconnect() -> None:
            if not self._closing:
                log.warning("nats.disconnected")

        async def on_reconnect() -> None:
            log.info("nats.reconnected")
            self._stream_checked = False

        self._last_error = None
        try:
            # nats-py retries the first connection as long as later ones (forever, here),
            # so bound it ourselves: the outbox waits and the caller retries later.
            with anyio.fail_after(self.settings.connect_timeout * 2 + 1):
                nc = await natsconn.connect(
                    self.settings,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                )
        except TimeoutError:
            raise PublishError(
                f"cannot connect to NATS at {self.settings.display_url}: "
                f"{self._last_error or 'timed out'}"
            ) from None
        except Exception as exc:  # nats-py raises a variety of OS and protocol errors
            raise PublishError(
                f"cannot connect to NATS at {self.settings.display_url}: {why(exc)}"
            ) from None
        log.info(
            "nats.connected",
            server=str(nc.connected_url.netloc if nc.connected_url else ""),
            tls=natsconn.encrypted(nc),
            max_payload=nc.max_payload,
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=self.settings.publish_timeout)
        self._stream_checked = False
        # One subscription receives every PubAck; nats-py renews it after a reconnect.
        self._inbox = f"{nc.new_inbox()}."
        self._waiting.clear()
        await nc.subscribe(f"{self._inbox}*", cb=self._on_answer)
        return self._js

    async def ensure_stream(self) -> None:
        js = await self._connection()
        if self._stream_checked:
            return
        name = self.settings.stream
        prefix = self.settings.subject_prefix
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            info = await self._create_stream(js, name, [f"{prefix}.>"])
        except Exception as exc:
            raise PublishError(f"cannot look up stream {name}: {why(exc)}") from None
        problems = stream_problems(info, prefix)
        refusals = [p for p in problems if p.level == "refuses"]
        if refusals:
            raise PublishError(f"stream {name} {refusals[0]}")
        for problem in problems:
            if problem.text not in self._stream_said:  # once per problem, not per drain
                self._stream_said.add(problem.text)
                log.warning("nats.stream_config", stream=name, problem=problem.text)
        self._learn_limit(info.config.max_msg_size)
        self._stream_checked = True

    async def _create_stream(self, js: Any, name: str, subjects: list[str]) -> Any:
        config = StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            duplicate_window=self.settings.duplicate_window,
            max_age=self.settings.stream_max_age or None,
            max_bytes=self.settings.stream_max_bytes,
            num_replicas=self.settings.stream_replicas,
            description="dts-watcher events (CloudEvents 1.0)",
        )
        try:
            info = await js.add_stream(config)
        except Exception as exc:
            raise PublishError(f"cannot create stream {name}: {why(exc)}") from None
        log.info("nats.stream_created", stream=name, subjects=subjects)
        return info

    def _learn_limit(self, max_msg_size: int | None) -> None:
        """The largest payload both the server and the stream take (headers aside), and
        the store's size limit for new events with it."""
        limits = [self.settings.max_event_bytes]
        if self._nc is not None and self._nc.max_payload > 0:
            limits.append(self._nc.max_payload - HEADROOM)
        if max_msg_size is not None and max_msg_size > 0:
            limits.append(max_msg_size - HEADROOM)
        self._limit = max(1, min(limits))
        self.store.wire.limit = self._limit

    async def drain(self, batch: int = 1000) -> int:
        """Publish everything in the outbox; return how many were acknowledged.

        Raises PublishError if NATS is unreachable or refuses; what was not acknowledged
        stays in the outbox.

        The outbox is read `batch` entries at a time and published as one stream: the
        next entries go out while the answers to the previous ones come back (at most
        `max_in_flight` unanswered), and what was acknowledged is forgotten after each
        read, so a crash re-publishes at most about two batches (JetStream's duplicate
        window absorbs them).
        """
        async with self._lock:
            self._idle = anyio.Event()
            try:
                entries = await self._read(batch, after=0)
                if not entries:
                    return 0
                await self.ensure_stream()
                return await self._stream(entries, batch)
            finally:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return when no drain is publishing (at once when none is).

        Work that can wait (the cycle's log lines) waits here, so that a storm of events
        reaches JetStream first. Each wait for JetStream is bounded by the publish
        timeout, so this is too.
        """
        await self._idle.wait()

    async def _read(self, batch: int, after: int) -> list[OutboxEntry]:
        entries = self.store.pending_nowait(batch, after=after)
        if entries is None:  # a commit holds the store: wait for it in a worker thread
            entries = await anyio.to_thread.run_sync(self.store.pending, batch, after)
        return entries

    async def _stream(self, entries: list[OutboxEntry], batch: int) -> int:
        nc = self._nc
        assert nc is not None
        timeout = self.settings.publish_timeout
        flight = Flight()
        tokens: list[str] = []
        sent = total = 0
        try:
            while entries and not flight.errors:
                for n, entry in enumerate(entries):
                    if flight.pending >= self._max_in_flight:
                        flight.room.clear()
                        with anyio.fail_after(timeout):
                            await flight.room.wait()
                    if flight.errors:
                        break  # JetStream refused one: send no more after it
                    payload = entry.payload
                    if len(payload) > self._limit or suspect(entry.subject):
                        fitted = await self._fit(entry)
                        if fitted is None:
                            continue  # set aside
                        payload = fitted
                    self._tokens += 1
                    token = f"{self._inbox}{self._tokens}"
                    headers = {"Nats-Msg-Id": entry.id, "Content-Type": CONTENT_TYPE}
                    try:
                        await nc.publish(entry.subject, payload, reply=token, headers=headers)
                    except (nats.errors.MaxPayloadError, nats.errors.BadSubjectError) as exc:
                        await self._set_aside(entry, f"NATS refuses it: {why(exc)}")
                        continue
                    self._waiting[token] = (flight, entry.seq)
                    tokens.append(token)
                    flight.pending += 1
                    sent += 1
                    if n % 128 == 127:
                        await anyio.lowlevel.checkpoint()  # nats-py's flusher sends these
                entries = await self._read(batch, after=entries[-1].seq)
                total += await self._forget(flight)
        except TimeoutError:
            log.warning("nats.publish_stalled", sent=sent, in_flight=flight.pending)
        except PublishError:
            raise
        except Exception as exc:
            log.warning("nats.publish_failed", error=why(exc), sent=sent)
        if flight.pending:
            flight.all_answered.clear()
            with anyio.move_on_after(timeout):
                await flight.all_answered.wait()
        for token in tokens:  # whatever was not answered by now counts as not acknowledged
            self._waiting.pop(token, None)
        total += await self._forget(flight)
        total += await self._too_big(flight)
        failed = sent - total
        if failed:
            self.stats.failures += 1
            self._stream_checked = False
            raise PublishError(self._refusal(flight, failed, sent))
        return total

    async def _fit(self, entry: OutboxEntry) -> bytes | None:
        """The payload to send, trimmed to the limit if need be; None when the entry can
        never be published (it is then set aside)."""
        reason = publishable(entry.subject)
        payload = entry.payload
        if reason is None and len(payload) > self._limit:
            fitted = await anyio.to_thread.run_sync(rebound, payload, self._limit)
            if fitted is None:
                reason = (
                    f"its {len(payload)} bytes cannot be trimmed to the {self._limit} the "
                    "server and the stream take"
                )
            payload = fitted or payload
        if reason is None:
            return payload
        await self._set_aside(entry, reason)
        return None

    async def _set_aside(self, entry: OutboxEntry, reason: str) -> None:
        """Move an entry JetStream can never take to `dead_letters`, and say so."""
        await anyio.to_thread.run_sync(self.store.dead_letter, entry.seq, reason)
        self.stats.dead_lettered += 1
        self._refused_size.discard(entry.seq)
        log.error(
            "publish.dead_lettered",
            event_id=entry.id,
            subject=entry.subject[:200],
            bytes=len(entry.payload),
            reason=reason,
        )
        if self.on_dead_letter is not None:
            self.on_dead_letter(entry, reason)

    async def _too_big(self, flight: Flight) -> int:
        """Events the stream refused for their size: trimmed to its max_msg_size at the
        next drain (the stream is looked at again); refused again, set aside. How many
        were set aside."""
        aside = 0
        for seq, error in flight.too_big.items():
            if seq not in self._refused_size:
                self._refused_size.add(seq)
                continue
            entries = await anyio.to_thread.run_sync(self.store.pending, 1, seq - 1)
            if entries and entries[0].seq == seq:
                why_not = f"the stream refuses it as too large, even trimmed: {error}"
                await self._set_aside(entries[0], why_not)
                aside += 1
        return aside

    def _refusal(self, flight: Flight, failed: int, sent: int) -> str:
        """Why a drain ended with events not acknowledged, in JetStream's own words."""
        refused = flight.errors
        if refused:
            error = next(iter(refused.values()))
            log.warning(
                "nats.refused", stream=self.settings.stream, refused=len(refused), error=error
            )
            return (
                f"JetStream refused {len(refused)} event(s) (stream {self.settings.stream}): "
                f"{error}"
            )
        if flight.too_big:
            return (
                f"stream {self.settings.stream} refused {len(flight.too_big)} event(s) as too "
                "large: they are trimmed to its max_msg_size and sent again"
            )
        return (
            f"{failed} of {sent} events not acknowledged within {self.settings.publish_timeout:g}s"
        )

    async def _forget(self, flight: Flight) -> int:
        """Remove what JetStream acknowledged from the outbox; how many that was."""
        acked, flight.acked = flight.acked, []
        if acked:
            crash_point("after_publish")
            try:
                await anyio.to_thread.run_sync(self.store.acknowledge, acked)
            except StateError as exc:  # published; sent again later, JetStream dedupes
                raise PublishError(f"acknowledged events stay in the outbox: {exc}") from None
            self.stats.published += len(acked)
            if self._refused_size:
                self._refused_size.difference_update(acked)
        return len(acked)

    async def _on_answer(self, msg: Any) -> None:
        """A JetStream answer to one of our publishes: a PubAck, an error, or 503."""
        waiting = self._waiting.pop(msg.subject, None)
        if waiting is None:
            return  # answered after its drain gave up on it
        flight, seq = waiting
        flight.answer(seq, msg, self._max_in_flight)

    # -- the service's loop ------------------------------------------------------------

    def wake(self) -> None:
        """New events are in the outbox: drain now, not at the next idle round."""
        self._wake.set()

    async def run(self) -> None:
        """Drain the outbox whenever woken, until cancelled; back off while NATS fails."""
        backoff = _BACKOFF_FIRST
        while True:
            try:
                await self.timed_drain()
                backoff = _BACKOFF_FIRST
            except (PublishError, StateError) as exc:
                log.warning("publish.deferred", reason=str(exc), outbox_depth=self.depth())
                await anyio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            with anyio.move_on_after(_IDLE_DRAIN):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def timed_drain(self) -> int:
        """`drain`, reported to `on_drained` when it acknowledged something; `problem`
        says why it failed, until one succeeds."""
        began = time.monotonic()
        try:
            count = await self.drain()
        except (PublishError, StateError) as exc:
            self.problem = str(exc)
            raise
        self.problem = None
        if count and self.on_drained is not None:
            self.on_drained(count, time.monotonic() - began)
        return count

    def depth(self) -> int | None:
        """The outbox depth, None if the state cannot be read."""
        try:
            return self.store.outbox_depth()
        except StateError:
            return None

    async def flush(self, within: float) -> bool:
        """Drain now, for at most `within` seconds; True if the outbox is empty after."""
        with anyio.move_on_after(within):
            try:
                await self.timed_drain()
            except (PublishError, StateError) as exc:
                log.warning("publish.deferred", reason=str(exc))
        return await anyio.to_thread.run_sync(self.depth) == 0

    async def close(self, flush_timeout: float = 5.0) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            try:
                with anyio.fail_after(flush_timeout):
                    await self._nc.drain()
            except Exception as exc:
                log.debug("nats.close_error", error=why(exc))
                await self._nc.close()
        self._nc = None
