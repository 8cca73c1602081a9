"""A DtsClient for the whole configuration: every watched account's shards, each with
its account's credentials and listing API (`[[accounts]]`, or the default account)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from watcher.dts.apis import ShardSource, listing_api
from watcher.dts.client import DtsClient
from watcher.dts.credentials import CredentialsProvider
from watcher.dts.credentials.accounts import account_providers
from watcher.dts.credentials.base import utcnow
from watcher.settings import Settings
from watcher.snapshot import Shard


def shard_sources(
    settings: Settings, providers: dict[str, CredentialsProvider]
) -> list[ShardSource]:
    """Every (account, region) to read, in the order configured."""
    out = []
    for account in settings.watched_accounts():
        api = listing_api(settings.dts, account.api or settings.dts.api, account.job_types)
        for region in account.regions:
            out.append(ShardSource(Shard(account.name, region), api, providers[account.name]))
    return out


def client_for(
    settings: Settings,
    config_file: str | None = None,
    *,
    now: Callable[[], datetime] = utcnow,
    **client_options: Any,
) -> DtsClient:
    """The client of every watched shard. Raises CredentialsError when the base
    credentials are unusable and no accounts are configured (as before accounts)."""
    providers = account_providers(settings, config_file, now=now)
    shards = shard_sources(settings, providers)
    return DtsClient(settings.dts, shards[0].credentials, shards=shards, **client_options)
