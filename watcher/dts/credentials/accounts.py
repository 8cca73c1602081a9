"""Whose key reads each account (`[[accounts]]`): a provider per account.

- `role_arn`: the role's temporary key, assumed with STS AssumeRole from the base
  credentials (the chain of `provider_from_settings`) and renewed before it expires;
- `profile`: that profile of the CLI's config file (`credentials.profile_file`, else
  `~/.aliyun/config.json`);
- neither: the base credentials themselves.

The base provider is built once, and only if an account needs it, so accounts that all
use profiles need no base credentials. A provider that cannot even be built (a profile
that is not in the file) fails its account's shards only, with that reason, every cycle:
one account's failure never blinds another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from watcher.dts.credentials.assume import AssumeRoleSource
from watcher.dts.credentials.base import (
    Credentials,
    CredentialsError,
    CredentialsProvider,
    describe,
    utcnow,
)
from watcher.dts.credentials.chain import provider_from_settings
from watcher.dts.credentials.oidc import sts_endpoint
from watcher.dts.credentials.profile import ProfileProvider, default_profile_file
from watcher.dts.credentials.refreshing import Refreshing
from watcher.dts.tls import tls_verify
from watcher.logs import get_logger
from watcher.settings import AccountSettings, Settings

log = get_logger("watcher.credentials")


class Unusable:
    """A provider that cannot be used, and says why, on every call."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def describe(self) -> str:
        return f"unusable: {self._reason}"

    async def get(self) -> Credentials:
        raise CredentialsError(self._reason)

    async def refresh(self) -> Credentials:
        raise CredentialsError(self._reason)


def account_providers(
    settings: Settings,
    config_file: str | None = None,
    *,
    base: CredentialsProvider | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utcnow,
) -> dict[str, CredentialsProvider]:
    """A credentials provider for each watched account, by name (`base`: the base
    credentials, if already built). Raises CredentialsError only when no account is
    configured and the base credentials are unusable (as without accounts)."""
    accounts = settings.watched_accounts()
    if not settings.accounts:
        provider = base or provider_from_settings(settings, config_file, now=now)
        return {accounts[0].name: provider}
    cached: list[CredentialsProvider] = [base] if base is not None else []

    def base_provider() -> CredentialsProvider:
        if not cached:
            try:
                cached.append(provider_from_settings(settings, config_file, now=now))
            except CredentialsError as exc:
                cached.append(Unusable(f"the base credentials: {exc}"))
        return cached[0]

    out: dict[str, CredentialsProvider] = {}
    for account in accounts:
        out[account.name] = _provider(settings, account, base_provider, transport, now)
        log.info("credentials.account", account=account.name, source=describe(out[account.name]))
    return out


def _provider(
    settings: Settings,
    account: AccountSettings,
    base: Callable[[], CredentialsProvider],
    transport: httpx.AsyncBaseTransport | None,
    now: Callable[[], datetime],
) -> CredentialsProvider:
    section = settings.credentials
    verify = tls_verify(settings.dts.tls_ca_file)
    timeout = section.fetch_timeout
    if account.role_arn is not None:
        source = AssumeRoleSource(
            base(),
            account.role_arn,
            account=account.name,
            endpoint=sts_endpoint(section.sts_endpoint, section.sts_region),
            session_name=section.role_session_name,
            duration=section.role_session_duration,
            transport=transport,
            now=now,
            verify=verify,
        )
        return Refreshing(source, now=now, timeout=timeout)
    if account.profile is not None:
        path = section.profile_file or default_profile_file()
        if path is None or not path.expanduser().is_file():
            return Unusable(
                f"account {account.name!r}: profile {account.profile!r} is asked for but the "
                f"profile file {path} does not exist"
            )
        try:
            profile = ProfileProvider(
                path.expanduser(),
                account.profile,
                metadata_url=section.ecs_metadata_url,
                imdsv1_disabled=section.imdsv1_disabled,
                sts_endpoint=sts_endpoint(section.sts_endpoint, section.sts_region),
                transport=transport,
                now=now,
                verify=verify,
            )
        except CredentialsError as exc:
            return Unusable(f"account {account.name!r}: {exc}")
        return Refreshing(profile, now=now, timeout=timeout)
    return base()
