"""Where the DTS access key comes from.

For now: a static access key pair, optionally with an STS security token, from the
standard `ALIBABA_CLOUD_*` variables or the configuration (see `watcher.settings`).
A provider can be asked to `refresh()` when DTS says the token expired: the static
provider then re-reads its source once, which picks up a rotated token file or env.

The secret is kept in a SecretStr and never appears in a repr, a log line or an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import SecretStr

from watcher.settings import CredentialsSettings, load_settings


class CredentialsError(Exception):
    """No usable credentials; the message says which variables to set."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    expiration: datetime | None = None

    def __repr__(self) -> str:
        token = ", with STS token" if self.security_token else ""
        return f"Credentials(access_key_id={self.access_key_id!r}{token})"


class CredentialsProvider(Protocol):
    async def get(self) -> Credentials: ...

    async def refresh(self) -> Credentials: ...


def from_settings(section: CredentialsSettings) -> Credentials:
    if not section.access_key_id or section.access_key_secret is None:
        raise CredentialsError(
            "no DTS credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), "
            "or [credentials] in the config file"
        )
    return Credentials(
        access_key_id=section.access_key_id,
        access_key_secret=section.access_key_secret,
        security_token=section.security_token,
    )


class StaticProvider:
    """Credentials from configuration; `refresh` re-reads the configuration once."""

    def __init__(
        self,
        credentials: Credentials,
        reload: Callable[[], Credentials] | None = None,
    ) -> None:
        self._credentials = credentials
        self._reload = reload

    @classmethod
    def from_config(cls, section: CredentialsSettings, config_file: str | None) -> StaticProvider:
        def reload() -> Credentials:
            return from_settings(load_settings(config_file).credentials)

        return cls(from_settings(section), reload)

    async def get(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> Credentials:
        if self._reload is not None:
            self._credentials = self._reload()
        return self._credentials
