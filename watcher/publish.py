"""Publishing: drain the store's outbox into JetStream, never losing or doubling an event.

The contract with the store is simple: an outbox entry is deleted only after JetStream
acknowledged it (PubAck). Whatever goes wrong in between (NATS down, a timeout, a lost
ack, the process killed), the entry is still there and is sent again later with the same
`Nats-Msg-Id`, which JetStream's duplicate window turns into a no-op if the first copy
had in fact been stored.

Publishes are pipelined (`publish_async`) with a bounded number in flight, and sent in
outbox order over one connection, so JetStream stores the events of a job in the order
they were produced.

The connection is made lazily and re-made when lost; the stream is created when missing
(subjects `<prefix>.>`, a duplicate window of at least two minutes) and re-checked after
any failure, so a NATS restart that lost the stream is repaired on the next drain.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import anyio
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig

from watcher.faults import crash_point
from watcher.logs import get_logger
from watcher.settings import NatsSettings
from watcher.store import OutboxEntry, Store

log = get_logger("watcher.publish")


class PublishError(Exception):
    """JetStream is unreachable or refused; the outbox keeps everything for later."""


@dataclass
class PublishStats:
    published: int = 0
    failures: int = 0
    stream_created: int = 0


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


class Publisher:
    def __init__(self, settings: NatsSettings, store: Store, *, max_in_flight: int = 512) -> None:
        self.settings = settings
        self.store = store
        self.stats = PublishStats()
        self._max_in_flight = max_in_flight
        self._nc: NatsClient | None = None
        self._js: Any = None
        self._stream_checked = False
        self._lock = anyio.Lock()
        self._closing = False
        self._last_error: str | None = None

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
            why = _why(exc)
            if why != self._last_error:  # once per distinct error, not once per retry
                log.warning("nats.error", error=why)
            self._last_error = why

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
                f"cannot connect to NATS at {self.settings.display_url}: {_why(exc)}"
            ) from None
        log.info("nats.connected", server=str(nc.connected_url.netloc if nc.connected_url else ""))
        self._nc = nc
        self._js = nc.jetstream(timeout=self.settings.publish_timeout)
        self._stream_checked = False
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
                raise PublishError(f"cannot create stream {name}: {_why(exc)}") from None
            self.stats.stream_created += 1
            log.info("nats.stream_created", stream=name, subjects=subjects)
        except Exception as exc:
            raise PublishError(f"cannot look up stream {name}: {_why(exc)}") from None
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
        """
        async with self._lock:
            total = 0
            while True:
                entries = await anyio.to_thread.run_sync(self.store.pending, batch)
                if not entries:
                    return total
                await self.ensure_stream()
                acked = await self._publish_batch(entries)
                crash_point("after_publish")
                await anyio.to_thread.run_sync(self.store.acknowledge, acked)
                total += len(acked)
                self.stats.published += len(acked)
                if len(acked) < len(entries):
                    self.stats.failures += 1
                    self._stream_checked = False
                    raise PublishError(
                        f"{len(entries) - len(acked)} of {len(entries)} events not acknowledged"
                    )

    async def _publish_batch(self, entries: list[OutboxEntry]) -> list[int]:
        js = self._js
        window = asyncio.Semaphore(self._max_in_flight)
        futures: list[asyncio.Future[Any]] = []
        try:
            for entry in entries:
                await window.acquire()
                headers = {"Nats-Msg-Id": entry.id, "Content-Type": "application/cloudevents+json"}
                future = await js.publish_async(
                    entry.subject,
                    entry.payload,
                    headers=headers,
                    wait_stall=self.settings.publish_timeout,
                )
                future.add_done_callback(lambda _: window.release())
                futures.append(future)
        except Exception as exc:
            log.warning("nats.publish_failed", error=_why(exc), sent=len(futures))
        acked: list[int] = []
        if futures:
            _, pending = await asyncio.wait(futures, timeout=self.settings.publish_timeout)
            for future in pending:
                future.cancel()
        for entry, future in zip(entries, futures, strict=False):
            if future.done() and not future.cancelled() and future.exception() is None:
                acked.append(entry.seq)
            elif future.done() and not future.cancelled():
                log.debug("nats.ack_failed", event_id=entry.id, error=_why(future.exception()))
        return acked

    async def close(self, flush_timeout: float = 5.0) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            try:
                with anyio.fail_after(flush_timeout):
                    await self._nc.drain()
            except Exception as exc:
                log.debug("nats.close_error", error=_why(exc))
                await self._nc.close()
        self._nc = None


def _why(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
