"""The listing APIs: what the client asks each one, and how a page's body becomes jobs.

The client's core (signing, retries, pacing, paging, drift checks: `watcher.dts.client`)
is the same for both; what differs is here:

| | DescribeSynchronizationJobs (legacy) | DescribeDtsJobs |
|---|---|---|
| listings per shard | one (synchronization jobs only) | one per configured job type |
| paging | `PageNum`, `PageSize` 10/20/30 | `PageNumber`, `PageSize`: 100 tried first |
| job type | always `sync` | `JobType` sent on every call (DTS means MIGRATION without it) |
| filters | name, tags, resource group (by DTS) | resource group (by DTS); name, tags (here) |

DescribeDtsJobs' largest page size is documented twice, differently (30 in the SDK, 100
on a help page): `page_sizes` is (100, 30), and the client falls back to the next size
when DTS refuses one with an InvalidParameter error, on that listing's first page (so no
listing is lost), and keeps the size that worked for the shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from watcher.dts.credentials import CredentialsProvider
from watcher.dts.dtsjobs import REQUEST_JOB_TYPE, parse_dts_jobs_page
from watcher.dts.live import DTS_JOBS_LIVE, LEGACY_LIVE
from watcher.dts.models import PageParse, parse_page
from watcher.dts.record_cache import DTS_JOBS_KEYS, LEGACY_KEYS, JobCache, LiveFields
from watcher.settings import DtsSettings
from watcher.snapshot import JobState, Shard

LEGACY = "DescribeSynchronizationJobs"
DTS_JOBS = "DescribeDtsJobs"
DTS_JOBS_PAGE_SIZES = (100, 30)


@dataclass(frozen=True, slots=True)
class Listing:
    """One listing of a shard: the job type it shows (our name)."""

    job_type: str


class ListingApi(Protocol):
    @property
    def listings(self) -> tuple[Listing, ...]: ...

    @property
    def page_sizes(self) -> tuple[int, ...]:
        """The largest first; the client falls back along them."""
        ...

    @property
    def action(self) -> str: ...

    @property
    def covers(self) -> frozenset[str]:
        """The job types a complete read of every listing can prove gone."""
        ...

    @property
    def record_keys(self) -> tuple[str, str]:
        """The keys naming a record in a page (the record cache's, see JobCache)."""
        ...

    @property
    def live(self) -> LiveFields:
        """What moves in a record from one poll to the next (the record cache's)."""
        ...

    def params(self, listing: Listing, number: int, size: int) -> dict[str, str]:
        """The call's parameters, besides RegionId."""
        ...

    def parse(
        self, body: dict[str, Any], shard: Shard, listing: Listing, cache: JobCache | None
    ) -> PageParse:
        """One page's body as jobs (raises ApiRefusal, or anything for a body it cannot
        read: the client turns that into MalformedResponse)."""
        ...


class LegacyApi:
    """DescribeSynchronizationJobs: synchronization jobs, as the watcher always read them."""

    def __init__(self, settings: DtsSettings) -> None:
        self.settings = settings
        self.action = LEGACY
        self.listings: tuple[Listing, ...] = (Listing("sync"),)
        self.covers = frozenset({"sync"})
        self.page_sizes: tuple[int, ...] = (settings.page_size,)
        self.record_keys = LEGACY_KEYS
        self.live: LiveFields = LEGACY_LIVE

    def params(self, listing: Listing, number: int, size: int) -> dict[str, str]:
        s = self.settings
        params = {"PageSize": str(size), "PageNum": str(number)}
        if s.job_name:
            params["SynchronizationJobName"] = s.job_name
        if s.resource_group_id:
            params["ResourceGroupId"] = s.resource_group_id
        for index, (key, value) in enumerate(sorted(s.tags.items()), start=1):
            params[f"Tag.{index}.Key"] = key
            params[f"Tag.{index}.Value"] = value
        return params

    def parse(
        self, body: dict[str, Any], shard: Shard, listing: Listing, cache: JobCache | None
    ) -> PageParse:
        return parse_page(body, shard.region, cache, shard.account)


class DtsJobsApi:
    """DescribeDtsJobs: one listing per job type (`dts.job_types`)."""

    def __init__(self, settings: DtsSettings, job_types: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.action = DTS_JOBS
        self.page_sizes: tuple[int, ...] = DTS_JOBS_PAGE_SIZES
        self.record_keys = DTS_JOBS_KEYS
        self.live: LiveFields = DTS_JOBS_LIVE
        wanted = [t.lower() for t in (job_types if job_types is not None else settings.job_types)]
        names = {"sync": "sync", "migration": "migration", "subscribe": "subscribe"}
        self.listings: tuple[Listing, ...] = tuple(Listing(names[t]) for t in wanted)
        self.covers = frozenset(listing.job_type for listing in self.listings)
        self._needle = settings.job_name.lower() if settings.job_name else None
        self._tags = dict(settings.tags)

    def params(self, listing: Listing, number: int, size: int) -> dict[str, str]:
        params = {
            "PageSize": str(size),
            "PageNumber": str(number),
            # Always sent: without it DTS lists migration jobs only.
            "JobType": REQUEST_JOB_TYPE[listing.job_type],
        }
        if self.settings.resource_group_id:
            params["ResourceGroupId"] = self.settings.resource_group_id
        return params

    def parse(
        self, body: dict[str, Any], shard: Shard, listing: Listing, cache: JobCache | None
    ) -> PageParse:
        keep = self._keep if self._needle or self._tags else None
        return parse_dts_jobs_page(body, shard.region, listing.job_type, shard.account, keep, cache)

    def _keep(self, job: JobState) -> bool:
        """The name (a case-insensitive part of it) and tag filters, as the legacy listing
        applies them on DTS's side."""
        if self._needle is not None and self._needle not in job.job_name.lower():
            return False
        tags = dict(job.tags)
        return all(tags.get(key) == value for key, value in self._tags.items())


@dataclass(frozen=True)
class ShardSource:
    """What the client reads one shard with: its account's credentials and listing API."""

    shard: Shard
    api: ListingApi
    credentials: CredentialsProvider

    @property
    def label(self) -> str:
        return self.shard.label


def listing_api(settings: DtsSettings, api: str, job_types: Sequence[str] | None) -> ListingApi:
    """The API object for `api` (a `dts.api` value)."""
    if api == DTS_JOBS:
        return DtsJobsApi(settings, job_types)
    return LegacyApi(settings)
