"""Shards: one account's jobs in one region, listed and rate-limited on its own, and how
reading one went (`RegionOutcome`). `watcher.snapshot` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_ACCOUNT = "default"


class Shard(NamedTuple):
    """What is listed and rate-limited on its own: one account's jobs in one region.

    Its `label` names it where a plain string is wanted (the keys of a snapshot's
    outcomes, metrics, health events): the region alone for the default account, so
    everything looks as it did before accounts, else `account/region`.
    """

    account: str
    region: str

    @property
    def label(self) -> str:
        return shard_label(self.account, self.region)

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, label: str) -> Shard:
        """Inverse of `label` (account names and regions hold no "/")."""
        account, sep, region = label.rpartition("/")
        return cls(account if sep else DEFAULT_ACCOUNT, region)


def shard_label(account: str, region: str) -> str:
    return region if account == DEFAULT_ACCOUNT else f"{account}/{region}"


@dataclass(frozen=True, slots=True)
class RegionOutcome:
    """How reading one shard (an account's region) went. `error` is None exactly when it
    is complete; `job_types` are the job types its listings cover (the legacy listing
    shows synchronization jobs only), so only those can be proven gone by it.

    A complete listing that held records no job could be made of (`unusable_records`)
    still speaks for the jobs it showed, but cannot prove any job absent: the one that
    seems gone may be the record that could not be read."""

    region: str
    error: str | None = None  # short reason, e.g. "Throttling.User: ..." or "listing drift"
    error_code: str | None = None
    pages: int = 0
    requests: int = 0
    account: str = DEFAULT_ACCOUNT
    job_types: frozenset[str] = frozenset({"sync"})
    unusable_records: int = 0

    @property
    def complete(self) -> bool:
        return self.error is None

    @property
    def proves_absence(self) -> bool:
        return self.error is None and self.unusable_records == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.account, self.region)

    @property
    def label(self) -> str:
        return shard_label(self.account, self.region)

    def where(self) -> dict[str, str]:
        """`{"account": ..., "region": ...}` for the data of health events; the account
        only where it is not the default (the shapes stay as they were without accounts)."""
        if self.account == DEFAULT_ACCOUNT:
            return {"region": self.region}
        return {"account": self.account, "region": self.region}
