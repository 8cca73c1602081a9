"""Renewing temporary keys before they expire (see `Refreshing`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import anyio

from watcher.dts.credentials.answers import checked
from watcher.dts.credentials.base import (
    Credentials,
    CredentialsError,
    CredentialsSource,
    utcnow,
)
from watcher.logs import get_logger

log = get_logger("watcher.credentials")

# STS issues temporary keys for at most 12 hours (the ECS role's last 6): an expiration
# further out is not believed, so a key that says "year 9999" is still renewed in time.
MAX_LIFETIME = timedelta(hours=12)
FETCH_TIMEOUT = 20.0  # seconds one fetch may take in all (`credentials.fetch_timeout`)


class Refreshing:
    """Caches a source's credentials and renews them before they expire.

    `get()` is a clock read while the key is fresh. Once less than max(`min_margin`,
    `fraction` of its lifetime) remains (never more than half the lifetime), the next
    `get()` renews it, one renewal at a time: concurrent callers wait for that one. If a
    renewal fails while the key is still valid, the key is kept, a warning is logged and
    the renewal is retried `retry_after` later; once it has expired, `get()` raises
    CredentialsError. Keys without an expiration (static ones) are renewed only by
    `refresh()`, which always fetches (DTS said the token expired), unless a concurrent
    caller just did.

    Each fetch has a deadline (`timeout`, for all of it: a metadata service or STS that
    drips its answer, a token file that never ends), what it issues is checked like
    configured keys are (`answers.checked`), and an expiration more than `MAX_LIFETIME`
    away is capped there, with a warning.
    """

    def __init__(
        self,
        source: CredentialsSource,
        *,
        now: Callable[[], datetime] = utcnow,
        min_margin: timedelta = timedelta(minutes=5),
        fraction: float = 0.2,
        retry_after: timedelta = timedelta(seconds=30),
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._source = source
        self._timeout = timeout
        self._now = now
        self._min_margin = min_margin
        self._fraction = fraction
        self._retry_after = retry_after
        self._cached: Credentials | None = None
        self._renew_at: datetime | None = None  # None: only on refresh()
        self._generation = 0
        self._lock = anyio.Lock()

    @property
    def source(self) -> CredentialsSource:
        return self._source

    @property
    def renew_at(self) -> datetime | None:
        """When the next `get()` will renew the cached key (None: not before `refresh()`)."""
        return self._renew_at

    def describe(self) -> str:
        return self._source.describe()

    def __repr__(self) -> str:
        return f"Refreshing({self._source!r}, cached={self._cached!r})"

    async def get(self) -> Credentials:
        cached = self._cached
        if cached is not None and not self._due():
            return cached
        async with self._lock:
            cached = self._cached
            if cached is not None and not self._due():
                return cached  # renewed by the caller we waited for
            return await self._renew()

    async def refresh(self) -> Credentials:
        seen = self._generation
        async with self._lock:
            if self._generation != seen and self._cached is not None:
                return self._cached  # renewed while we waited: that is the fresh key
            return await self._renew()

    def _due(self) -> bool:
        return self._renew_at is not None and self._now() >= self._renew_at

    async def _renew(self) -> Credentials:
        try:
            with anyio.fail_after(self._timeout):
                fresh = checked(await self._source.fetch(), self.describe())
            now = self._now()
            fresh = self._capped(fresh, now)
            if fresh.expiration is not None and fresh.expiration <= now:
                raise CredentialsError(
                    f"{self.describe()}: issued credentials that expired at "
                    f"{fresh.expiration.isoformat()} (is this machine's clock right?)"
                )
        except Exception as exc:
            return self._keep_or_raise(exc)
        self._cached = fresh
        self._generation += 1
        if fresh.expiration is None:
            self._renew_at = None
        else:
            lifetime = fresh.expiration - now
            margin = min(max(self._min_margin, lifetime * self._fraction), lifetime / 2)
            self._renew_at = fresh.expiration - margin
        log.info(
            "credentials.renewed",
            source=self.describe(),
            expires_at=fresh.expiration.isoformat() if fresh.expiration else None,
            renew_at=self._renew_at.isoformat() if self._renew_at else None,
        )
        return fresh

    def _capped(self, fresh: Credentials, now: datetime) -> Credentials:
        if fresh.expiration is None or fresh.expiration <= now + MAX_LIFETIME:
            return fresh
        log.warning(
            "credentials.expiration_capped",
            source=self.describe(),
            said=fresh.expiration.isoformat(),
            capped_at=(now + MAX_LIFETIME).isoformat(),
            why="STS issues temporary keys for at most 12 hours",
        )
        return replace(fresh, expiration=now + MAX_LIFETIME)

    def _keep_or_raise(self, exc: Exception) -> Credentials:
        if isinstance(exc, CredentialsError):
            error = exc
        elif isinstance(exc, TimeoutError):
            error = CredentialsError(f"{self.describe()}: no credentials within {self._timeout:g}s")
        else:
            error = CredentialsError(f"{self.describe()}: {type(exc).__name__}")
        now = self._now()
        cached = self._cached
        if cached is None or (cached.expiration is not None and cached.expiration <= now):
            if cached is not None:
                log.error(
                    "credentials.expired",
                    source=self.describe(),
                    expired_at=cached.expiration.isoformat() if cached.expiration else None,
                    error=str(error),
                )
            if error is exc:
                raise error
            raise error from exc
        retry = now + self._retry_after
        if cached.expiration is not None:
            retry = min(retry, cached.expiration)
        self._renew_at = retry
        log.warning(
            "credentials.renewal_failed",
            source=self.describe(),
            error=str(error),
            keeping_until=cached.expiration.isoformat() if cached.expiration else None,
            retry_at=retry.isoformat(),
        )
        return cached
