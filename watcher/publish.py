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
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig

from watcher.errors import PublishError, why
from watcher.events import CONTENT_TYPE
from watcher.faults import crash_point
from watcher.logs import get_logger
from watcher.settings import NatsSettings
from watcher.store import OutboxEntry, Store

log = get_logger("watcher.publish")

__all__ = ["PublishError", "PublishStats", "Publisher", "connect_options"]

_IDLE_DRAIN = 5.0  # seconds between drains when nobody wakes the publisher
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


@dataclass
class PublishStats:
    published: int = 0  # events acknowledged and removed from the outbox
    failures: int = 0  # drains that ended with events not acknowledged


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py connect() arguments from our settings (secrets passed, never logged)."""
    options: dict[str, Any] = {
        "servers": settings.servers,
        "name": "dts-watcher",
        "connect_timeout": settings.connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
    }
    if settings.user:
        options["user"] = settings.user
    if settings.password:
        options["password"] = settings.password.get_secret_value()
    if settings.token:
        options["token"] = settings.token.get_secret_value()
    if settings.nkey_seed_file:
        options["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.creds_file:
        options["user_credentials"] = str(settings.creds_file)
    if settings.tls_ca_file or settings.tls_cert_file:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file:
            context.load_cert_chain(
                str(settings.tls_cert_file),
                str(settings.tls_key_file) if settings.tls_key_file else None,
            )
        options["tls"] = context
    return options


class _Flight:
    """Publishes sent in one drain, and what their answers said."""

    __slots__ = ("acked", "all_answered", "errors", "pending", "room")

    def __init__(self) -> None:
        self.acked: list[int] = []  # seqs JetStream acknowledged, not yet forgotten
        self.errors: dict[int, str] = {}  # seq -> why JetStream refused it
        self.pending = 0  # sent, not answered yet
        self.room = asyncio.Event()  # set when answers free half the window
        self.all_answered = asyncio.Event()


class Publisher:
    def __init__(
        self,
        settings: NatsSettings,
        store: Store,
        *,
        max_in_flight: int = 1024,
        on_drained: Callable[[int, float], None] | None = None,
    ) -> None:
        """`on_drained(count, seconds)`: after each drain that acknowledged events."""
        self.settings = settings
        self.store = store
        self.stats = PublishStats()
        self.on_drained = on_drained
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
        self._waiting: dict[str, tuple[_Flight, int]] = {}
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

        options = connect_options(self.settings)
        self._last_error = None
        try:
            # nats-py retries the first connection as long as later ones (forever, here),
            # so bound it ourselves: the outbox waits and the caller retries later.
            with anyio.fail_after(self.settings.connect_timeout * 2 + 1):
                nc = await nats.connect(
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    **options,
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
        log.info("nats.connected", server=str(nc.connected_url.netloc if nc.connected_url else ""))
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
        subjects = [f"{self.settings.subject_prefix}.>"]
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
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
                await js.add_stream(config)
            except Exception as exc:
                raise PublishError(f"cannot create stream {name}: {why(exc)}") from None
            log.info("nats.stream_created", stream=name, subjects=subjects)
        except Exception as exc:
            raise PublishError(f"cannot look up stream {name}: {why(exc)}") from None
        else:
            have = list(info.config.subjects or [])
            if not any(s in have for s in (*subjects, ">")):
                raise PublishError(
                    f"stream {name} exists but does not capture {subjects[0]} "
                    f"(its subjects: {have}); fix the stream or choose another name"
                )
            window = info.config.duplicate_window or 0
            if window < 120:
                log.warning("nats.duplicate_window_short", stream=name, seconds=window)
        self._stream_checked = True

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
        flight = _Flight()
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
                    self._tokens += 1
                    token = f"{self._inbox}{self._tokens}"
                    self._waiting[token] = (flight, entry.seq)
                    tokens.append(token)
                    flight.pending += 1
                    sent += 1
                    headers = {"Nats-Msg-Id": entry.id, "Content-Type": CONTENT_TYPE}
                    await nc.publish(entry.subject, entry.payload, reply=token, headers=headers)
                    if n % 128 == 127:
                        await anyio.lowlevel.checkpoint()  # nats-py's flusher sends these
                entries = await self._read(batch, after=entries[-1].seq)
                total += await self._forget(flight)
        except TimeoutError:
            log.warning("nats.publish_stalled", sent=sent, in_flight=flight.pending)
        except Exception as exc:
            log.warning("nats.publish_failed", error=why(exc), sent=sent)
        if flight.pending:
            flight.all_answered.clear()
            with anyio.move_on_after(timeout):
                await flight.all_answered.wait()
        for token in tokens:  # whatever was not answered by now counts as not acknowledged
            self._waiting.pop(token, None)
        total += await self._forget(flight)
        failed = sent - total
        if failed:
            for seq, error in flight.errors.items():
                log.debug("nats.ack_failed", seq=seq, error=error)
            self.stats.failures += 1
            self._stream_checked = False
            raise PublishError(f"{failed} of {sent} events not acknowledged")
        return total

    async def _forget(self, flight: _Flight) -> int:
        """Remove what JetStream acknowledged from the outbox; how many that was."""
        acked, flight.acked = flight.acked, []
        if acked:
            crash_point("after_publish")
            await anyio.to_thread.run_sync(self.store.acknowledge, acked)
            self.stats.published += len(acked)
        return len(acked)

    async def _on_answer(self, msg: Any) -> None:
        """A JetStream answer to one of our publishes: a PubAck, an error, or 503."""
        waiting = self._waiting.pop(msg.subject, None)
        if waiting is None:
            return  # answered after its drain gave up on it
        flight, seq = waiting
        status = msg.headers.get("Status") if msg.headers else None
        if status == "503":
            flight.errors[seq] = "NoStreamResponseError: no stream captures the subject"
        else:
            try:
                answer = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                answer = {"error": {"description": f"not a PubAck: {msg.data[:80]!r}"}}
            if isinstance(answer, dict) and "error" not in answer:
                flight.acked.append(seq)
            else:
                error = answer.get("error") if isinstance(answer, dict) else answer
                flight.errors[seq] = f"APIError: {error}"
        flight.pending -= 1
        if flight.pending <= self._max_in_flight // 2:  # resume in bursts, not per answer
            flight.room.set()
        if flight.pending == 0:
            flight.all_answered.set()

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
            except PublishError as exc:
                depth = await anyio.to_thread.run_sync(self.store.outbox_depth)
                log.warning("publish.deferred", reason=str(exc), outbox_depth=depth)
                await anyio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            with anyio.move_on_after(_IDLE_DRAIN):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def timed_drain(self) -> int:
        """`drain`, reported to `on_drained` when it acknowledged something."""
        began = time.monotonic()
        count = await self.drain()
        if count and self.on_drained is not None:
            self.on_drained(count, time.monotonic() - began)
        return count

    async def flush(self, within: float) -> bool:
        """Drain now, for at most `within` seconds; True if the outbox is empty after."""
        with anyio.move_on_after(within):
            try:
                await self.timed_drain()
            except PublishError as exc:
                log.warning("publish.deferred", reason=str(exc))
        return await anyio.to_thread.run_sync(self.store.outbox_depth) == 0

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
