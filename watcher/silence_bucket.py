"""Silences in a JetStream key-value bucket (`nats.silence_bucket`), shared by every
replica and every operator, surviving restarts.

One key per silence (its id), its value the silence as JSON (`Silence.to_json`). The
bucket is created when missing (by the watcher, or by the first `silence add`). There is
no local copy: the service follows the bucket live (`SilenceFollower`, a key-value watch:
a silence added now applies to the next event), and `silence expire` ends one at once by
setting its end to now. Ended silences stay in the bucket, as a record (`silence list
--expired` shows them).

When NATS cannot be reached, the service keeps the silences it last saw (their times
still apply) and says so in its log and status; it never makes one up. An entry that is
not a silence (someone wrote to the bucket by hand) is skipped and logged.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import nats
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from watcher import natsconn
from watcher.cluster.bucket import Bucket
from watcher.errors import PublishError, why
from watcher.logs import get_logger
from watcher.settings import NatsSettings
from watcher.silencing import Silence

log = get_logger("watcher.silences")

_DELETED = ("DEL", "PURGE")
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


class NoSuchSilence(LookupError):
    """`silence expire` named an id the bucket does not hold."""


async def _connect(settings: NatsSettings, *, attempts: int, **callbacks: Any) -> Any:
    """A connection (TLS or nothing, when TLS is configured: `watcher.natsconn`), bounded
    in time; `callbacks`: nats-py's (disconnected_cb, ...)."""

    async def quiet(exc: Exception) -> None:  # failures are reported by the caller
        pass

    try:
        with anyio.fail_after(settings.connect_timeout * 2 + 1):
            return await natsconn.connect(
                settings, error_cb=quiet, max_reconnect_attempts=attempts, **callbacks
            )
    except TimeoutError:
        raise PublishError(f"cannot connect to NATS at {settings.display_url}: timed out") from None
    except Exception as exc:  # nats-py raises a variety of OS and protocol errors
        raise PublishError(
            f"cannot connect to NATS at {settings.display_url}: {why(exc)}"
        ) from None


async def _bucket(js: Any, settings: NatsSettings, *, create: bool) -> Any | None:
    """The bucket, created when missing if `create` (else None when missing)."""
    name = settings.silence_bucket
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            return None
    config = KeyValueConfig(
        bucket=name,
        description="dts-watcher silences (dts-watcher silence add|list|expire)",
        history=5,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )
    kv = await js.create_key_value(config)
    log.info("silences.bucket_created", bucket=name)
    return kv


async def read_all(js: Any, bucket: str, within: float = 10.0) -> tuple[dict[str, Silence], int]:
    """Every silence in the bucket (by id), and how many entries were not silences.

    A snapshot counted from the consumer's own numbers (`Bucket.read_all`), not ended by
    nats-py's end-of-history marker: that marker can come before the very entries it
    ends, when they all reached the client before the watch was set up (seen once under
    load: a `silence list` without a silence just written)."""
    found: dict[str, Silence] = {}
    bad = 0
    for entry in await Bucket(js, None, bucket, 0.0).read_all(within):
        if entry.tombstone or not entry.value:
            continue
        try:
            found[entry.key] = Silence.from_json(entry.value)
        except ValueError as exc:
            log.warning("silences.bad_entry", key=entry.key, error=str(exc))
            bad += 1
    return found, bad


async def _stop(watcher: Any) -> None:
    try:
        await watcher.stop()
    except Exception as exc:  # the connection may be gone already
        log.debug("silences.watch_stop_failed", error=why(exc))


def _apply(found: dict[str, Silence], entry: Any) -> int:
    """One bucket entry into `found`; 1 if it was not a silence (logged), else 0."""
    if entry.operation in _DELETED or entry.value is None:
        found.pop(entry.key, None)
        return 0
    try:
        silence = Silence.from_json(entry.value)
    except ValueError as exc:
        found.pop(entry.key, None)
        log.warning("silences.bad_entry", key=entry.key, error=str(exc))
        return 1
    found[entry.key] = silence
    return 0


class SilenceBucket:
    """The silences, as operators change them (`dts-watcher silence add|list|expire`)."""

    def __init__(self, kv: Any | None, js: Any, name: str) -> None:
        self._kv = kv
        self._js = js
        self._name = name

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: NatsSettings, *, create: bool) -> AsyncIterator[SilenceBucket]:
        """Connect; raises PublishError when NATS cannot be reached."""
        nc = await _connect(settings, attempts=2)
        try:
            try:
                kv = await _bucket(nc.jetstream(), settings, create=create)
            except Exception as exc:
                raise PublishError(
                    f"cannot open the silence bucket {settings.silence_bucket}: {why(exc)}"
                ) from None
            yield cls(kv, nc.jetstream(), settings.silence_bucket)
        finally:
            await nc.close()

    async def add(self, silence: Silence) -> None:
        assert self._kv is not None, "opened with create=True"
        await self._kv.create(silence.id, silence.to_json())

    async def all(self) -> list[Silence]:
        if self._kv is None:
            return []
        found, _ = await read_all(self._js, self._name)
        return sorted(found.values(), key=lambda s: (s.start, s.id))

    async def expire(self, silence_id: str, now: datetime) -> Silence:
        """End a silence now (one that has not started yet never will)."""
        if self._kv is None:
            raise NoSuchSilence(silence_id)
        try:
            entry = await self._kv.get(silence_id)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.InvalidKeyError):
            raise NoSuchSilence(silence_id) from None
        silence = Silence.from_json(entry.value)
        if silence.ended(now):
            return silence
        ended = Silence(
            silence.id,
            silence.match,
            min(silence.start, now),
            now,
            silence.author,
            silence.comment,
        )
        await self._kv.update(silence_id, ended.to_json(), last=entry.revision)
        return ended


class SilenceFollower:
    """Follows the bucket for the service: `silences` is what it holds now.

    `run()` is the service's task (until cancelled): connect, create the bucket when
    missing, read it and watch it; on any failure keep what was last seen and try again
    with backoff. `load()` reads it once (`dts-watcher once`).
    """

    def __init__(
        self, settings: NatsSettings, on_change: Callable[[tuple[Silence, ...]], None] | None = None
    ) -> None:
        self.settings = settings
        self.silences: tuple[Silence, ...] = ()
        self.synced = False  # the whole bucket was read at least once
        self.error: str | None = None  # why the bucket cannot be followed right now
        self.bad_entries = 0
        self.tried = anyio.Event()  # set once a first read succeeded or failed
        self._on_change = on_change

    def _set(self, found: dict[str, Silence]) -> None:
        self.silences = tuple(found.values())
        if self._on_change is not None:
            self._on_change(self.silences)

    async def load(self, within: float) -> bool:
        """Read the bucket once; False (and the reason in `error`) if it could not be."""
        try:
            with anyio.fail_after(within):
                nc = await _connect(self.settings, attempts=1)
                try:
                    js = nc.jetstream()
                    await _bucket(js, self.settings, create=True)
                    found, self.bad_entries = await read_all(js, self.settings.silence_bucket)
                finally:
                    await nc.close()
        except Exception as exc:
            self._failed(exc)
            return False
        self._set(found)
        self.synced, self.error = True, None
        self.tried.set()
        return True

    async def run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            try:
                await self._follow()
            except Exception as exc:
                self._failed(exc)
            await anyio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _follow(self) -> None:
        async def disconnected() -> None:
            self._failed(PublishError("disconnected from NATS, reconnecting"))

        async def reconnected() -> None:
            log.info("silences.following", bucket=self.settings.silence_bucket)
            self.error = None  # the watch resumes where it was (an ordered consumer)

        nc = await _connect(
            self.settings,
            attempts=-1,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
        try:
            js = nc.jetstream()
            kv = await _bucket(js, self.settings, create=True)
            assert kv is not None
            # What the bucket holds now, counted (`read_all`); the watch then replays and
            # follows it. Should nats-py's end-of-history marker come early (see
            # `read_all`), the set published is this snapshot, never an empty one.
            found, _ = await read_all(js, self.settings.silence_bucket)
            watcher = await kv.watchall()
            caught_up = False
            try:
                async for entry in watcher:
                    if entry is None:
                        caught_up = True
                    else:
                        self.bad_entries += _apply(found, entry)
                    if caught_up:
                        self._set(found)
                        if not self.synced or self.error is not None:
                            log.info("silences.following", bucket=self.settings.silence_bucket)
                        self.synced, self.error = True, None
                        self.tried.set()
            finally:
                await _stop(watcher)
        finally:
            await nc.close()

    def _failed(self, exc: BaseException) -> None:
        reason = why(exc)
        if reason != self.error:  # once per distinct reason, not once per retry
            log.warning(
                "silences.unavailable",
                bucket=self.settings.silence_bucket,
                error=reason,
                kept=len(self.silences),
            )
        self.error = reason
        self.tried.set()
