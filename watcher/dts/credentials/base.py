"""What credentials are, and what gives them: the types every source shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from watcher.errors import CredentialsError

__all__ = [
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "CredentialsSource",
    "describe",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    expiration: datetime | None = None

    def __repr__(self) -> str:
        token = ", with STS token" if self.security_token else ""
        until = f", expires {self.expiration.isoformat()}" if self.expiration else ""
        return f"Credentials(access_key_id={self.access_key_id!r}{token}{until})"


class CredentialsProvider(Protocol):
    """What the DTS client uses: `get()` before every request (cheap when cached),
    `refresh()` once when DTS answers InvalidSecurityToken.Expired."""

    async def get(self) -> Credentials: ...

    async def refresh(self) -> Credentials: ...


class CredentialsSource(Protocol):
    """Something that can fetch credentials anew (an endpoint, a file); `Refreshing`
    decides when to call it."""

    def describe(self) -> str: ...

    async def fetch(self) -> Credentials: ...


def describe(provider: object) -> str:
    """Which source a provider reads, for logs (never a secret)."""
    method = getattr(provider, "describe", None)
    return str(method()) if callable(method) else type(provider).__name__
