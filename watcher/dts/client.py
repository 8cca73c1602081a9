"""The DTS OpenAPI client: every page of every region, signed, paced and retried.

One `fetch()` returns a `Snapshot` whose per-region outcomes say, honestly, whether each
region was read completely. The rest of the watcher relies on that flag to never mistake
a failed page for jobs that vanished, so the rules here are strict:

- A region is complete only if every page was read, every page agreed on
  TotalRecordCount, the records read add up to it, and no job appeared twice. Anything
  else is "listing drift" (jobs created or deleted while we paged): the region is re-read
  a few times, then reported incomplete.
- Transient failures (Throttling.*, 5xx, timeouts, connection errors, a body that is not
  the expected JSON) are retried with exponential backoff and full jitter, honouring
  `x-acs-retry-after` (milliseconds). Every try is freshly signed (new nonce and date).
- Every request has a deadline for the whole exchange (`timeout`: connecting, sending,
  and reading the answer to its last byte) and a cap on the answer's decoded size
  (`max_response_bytes`, read as it streams in: see `watcher.dts.body`).
- Whatever goes wrong with one region (an answer that is not JSON, JSON nested too deep,
  a body that claims gzip and is not, a bug) fails that region for the cycle, never the
  cycle. A record the models cannot turn into a job is skipped and counted, and the
  region then proves no absence that cycle (`RegionOutcome.unusable_records`).
- What reaches a log, an event or a metric from upstream is bounded and never the text
  of a transport exception, which may quote our own headers (`watcher.dts.upstream`).
- InvalidSecurityToken.Expired makes the credentials provider re-read its source, once.
- Other 4xx (bad signature, unknown key, no permission) fail fast: retrying cannot help.
  The error carries the API's Code, Message and RequestId.
- Requests per region are paced by a rate limiter well under DTS's documented 20 per
  second per account per region; regions are read concurrently, bounded.

I/O goes through an injectable httpx transport, and time through injectable `sleep`,
`now` and `random` functions, so every path is testable without a network or real waits.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from watcher.dts import signing
from watcher.dts.credentials import Credentials, CredentialsError, CredentialsProvider
from watcher.dts.exchange import DtsError as DtsError  # where it has always been imported from
from watcher.dts.exchange import decode, exchange, failed
from watcher.dts.models import PageParse, parse_page
from watcher.dts.pacing import PACE, RateLimiter
from watcher.dts.record_cache import CachedJobs, JobCache
from watcher.dts.tls import tls_verify
from watcher.logs import get_logger
from watcher.settings import DtsSettings
from watcher.settings.common import is_loopback
from watcher.snapshot import JobKey, JobState, RegionOutcome, Snapshot

ACTION = "DescribeSynchronizationJobs"
# Regions DTS serves from the central endpoint rather than dts.<region>.aliyuncs.com
# (per Alibaba's "Request syntax" page for DTS).
CENTRAL_ENDPOINT = "dts.aliyuncs.com"
CENTRAL_REGIONS = frozenset(
    {"cn-wulanchabu", "cn-chengdu", "cn-beijing-finance-1", "cn-hangzhou-finance"}
)
_MAX_PAGES = 10_000  # 300,000 jobs in one region: past this, something is wrong
# Called with (region, jobs) for each consistent page as it arrives (`fetch(on_page=...)`).
PageHook = Callable[[str, "tuple[JobState, ...]"], None]
_MAX_RETRY_AFTER = 60.0

log = get_logger("watcher.dts")


def endpoint_host(region: str) -> str:
    if region in CENTRAL_REGIONS:
        return CENTRAL_ENDPOINT
    return f"dts.{region}.aliyuncs.com"


class ListingDrift(Exception):
    """The listing moved under us while paging; the reason says how."""


@dataclass
class ClientStats:
    """Counters since the client was created (metrics and logs read them)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (region, outcome)
    retries: Counter[str] = field(default_factory=Counter)  # by region
    pages: Counter[str] = field(default_factory=Counter)  # by region
    skipped_records: Counter[str] = field(default_factory=Counter)  # records without a usable id


class DtsClient:
    def __init__(
        self,
        settings: DtsSettings,
        credentials: CredentialsProvider,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.stats = ClientStats()
        self._credentials = credentials
        self._sleep = sleep
        self._now = now
        self._clock = clock
        self._rand = rand
        pace = settings.rate_limit * PACE
        self._limiters = {region: RateLimiter(pace, clock, sleep) for region in settings.regions}
        limits = httpx.Limits(
            max_connections=settings.max_concurrent_regions * settings.max_concurrent_pages,
            max_keepalive_connections=settings.max_concurrent_regions
            * settings.max_concurrent_pages,
        )
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=settings.timeout,
            limits=limits,
            trust_env=False,
            verify=tls_verify(settings.tls_ca_file),
        )
        plain = settings.endpoint and settings.endpoint.startswith("http://")
        if plain and not is_loopback(settings.endpoint or ""):
            log.warning(
                "dts.plain_http",
                endpoint=settings.endpoint,
                risk="requests, signatures and STS tokens travel unencrypted",
            )
        # Per region, the jobs of its last complete listing (see JobCache).
        self._parsed: dict[str, CachedJobs] = {}

    async def __aenter__(self) -> DtsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one cycle ------------------------------------------------------------------------

    async def fetch(
        self, on_page: PageHook | None = None, deadline: float | None = None
    ) -> Snapshot:
        """Read every configured region; never raises for DTS or network faults.

        `on_page(region, jobs)` is called with each page as it arrives, once it agrees
        with the first page of its listing on the total: a consistent page, though the
        listing may yet turn out incomplete (a later page failing).

        `deadline`: seconds the whole read may take; a region not read completely by
        then is incomplete (`CycleDeadline`), the others are what they are.
        """
        taken_at = self._now()
        results: dict[str, tuple[list[JobState], RegionOutcome]] = {}
        gate = anyio.Semaphore(self.settings.max_concurrent_regions)
        ends = None if deadline is None else anyio.current_time() + deadline

        async def one(region: str) -> None:
            with anyio.CancelScope(deadline=math.inf if ends is None else ends):
                async with gate:
                    results[region] = await self.fetch_region(region, on_page)
            if region not in results:
                log.error("dts.region_failed", region=region, code="CycleDeadline")
                results[region] = (
                    [],
                    RegionOutcome(
                        region=region,
                        error=f"not read within the cycle's deadline ({deadline:g}s)",
                        error_code="CycleDeadline",
                    ),
                )

        async with anyio.create_task_group() as tg:
            for region in self.settings.regions:
                tg.start_soon(one, region)
        jobs = [job for region in self.settings.regions for job in results[region][0]]
        return Snapshot.of(jobs, (results[r][1] for r in self.settings.regions), taken_at)

    async def fetch_region(
        self, region: str, on_page: PageHook | None = None
    ) -> tuple[list[JobState], RegionOutcome]:
        """All jobs of one region and how the read went (never raises for DTS faults)."""
        requests_before = sum(n for (r, _), n in self.stats.requests.items() if r == region)
        pages = unusable = 0
        error: str | None = None
        code: str | None = None
        jobs: list[JobState] = []
        for attempt in range(self.settings.drift_rereads + 1):
            try:
                jobs, pages, unusable = await self._read_listing(region, on_page)
                error = code = None
                break
            except ListingDrift as drift:
                error, code = f"listing changed while reading: {drift}", "ListingDrift"
                log.warning("dts.listing_drift", region=region, attempt=attempt + 1, why=str(drift))
            except DtsError as exc:
                error, code = str(exc), exc.code
                log.error(
                    "dts.region_failed",
                    region=region,
                    code=exc.code,
                    message=exc.api_message,
                    request_id=exc.request_id,
                    http_status=exc.status,
                )
                break
            except Exception as exc:  # whatever else: this region's failure, not the cycle's
                error, code = f"unexpected {type(exc).__name__} while reading", "InternalError"
                log.error("dts.region_failed", region=region, code=code, error=type(exc).__name__)
                break
        requests = sum(n for (r, _), n in self.stats.requests.items() if r == region)
        outcome = RegionOutcome(
            region=region,
            error=error,
            error_code=code,
            pages=pages,
            requests=requests - requests_before,
            unusable_records=unusable if error is None else 0,
        )
        return (jobs if error is None else []), outcome

    async def _read_listing(
        self, region: str, on_page: PageHook | None
    ) -> tuple[list[JobState], int, int]:
        """(jobs, pages, unusable records) of one complete, consistent listing, or raise
        ListingDrift at the first page that shows the listing moved (or lies)."""
        size = self.settings.page_size
        cache = JobCache(self._parsed.get(region))
        first = await self._page(region, 1, cache)
        total = first.total_record_count
        if total is None or total < 0:
            raise DtsError(
                "response has no TotalRecordCount", code="MalformedResponse", region=region
            )
        page_count = max(1, math.ceil(total / size))
        if page_count > _MAX_PAGES:
            raise DtsError(
                f"TotalRecordCount {total} is implausible", code="MalformedResponse", region=region
            )
        pages: dict[int, PageParse] = {1: first}
        _check_page(first, 1, total, size)  # a short first page: no need to read on
        if on_page is not None:
            on_page(region, first.jobs)
        if page_count > 1:
            gate = anyio.Semaphore(self.settings.max_concurrent_pages)
            failures: list[Exception] = []

            async def one(number: int, scope: anyio.CancelScope) -> None:
                async with gate:
                    try:
                        page = pages[number] = await self._page(region, number, cache)
                        _check_page(page, number, total, size)
                        if on_page is not None:
                            on_page(region, page.jobs)
                    except (DtsError, ListingDrift) as exc:
                        # one failed or short page fails the listing: stop the rest
                        failures.append(exc)
                        scope.cancel()

            async with anyio.create_task_group() as tg:
                for number in range(2, page_count + 1):
                    tg.start_soon(one, number, tg.cancel_scope)
            if failures:
                raise failures[0]
        jobs = _assemble(pages, total, size)
        self._parsed[region] = cache.seen  # complete and consistent: reused next time
        return jobs, page_count, sum(page.skipped for page in pages.values())

    # -- one page, with retries ----------------------------------------------------------

    async def read_page(self, region: str, number: int = 1) -> PageParse:
        """One page of one region, with the usual retries (`check-config --probe` uses it)."""
        return await self._page(region, number)

    async def _page(self, region: str, number: int, cache: JobCache | None = None) -> PageParse:
        params = self._params(region, number)
        body, exact = await self._call(region, params)
        try:
            # Only orjson's documents may use the cache (see JobCache).
            parsed = parse_page(body, region, cache if exact else None)
        except Exception as exc:  # a model bug must not take the cycle down
            raise DtsError(
                f"response could not be interpreted: {type(exc).__name__}",
                code="MalformedResponse",
                region=region,
            ) from exc
        self.stats.pages[region] += 1
        if parsed.skipped:
            self.stats.skipped_records[region] += parsed.skipped
            log.warning(
                "dts.records_skipped",
                region=region,
                page=number,
                count=parsed.skipped,
                consequence="no job of this region is judged absent this cycle",
            )
        return parsed

    def _params(self, region: str, number: int) -> dict[str, str]:
        s = self.settings
        params = {"RegionId": region, "PageSize": str(s.page_size), "PageNum": str(number)}
        if s.job_name:
            params["SynchronizationJobName"] = s.job_name
        if s.resource_group_id:
            params["ResourceGroupId"] = s.resource_group_id
        for index, (key, value) in enumerate(sorted(s.tags.items()), start=1):
            params[f"Tag.{index}.Key"] = key
            params[f"Tag.{index}.Value"] = value
        return params

    async def _call(self, region: str, params: dict[str, str]) -> tuple[dict[str, Any], bool]:
        attempts = self.settings.max_attempts
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send(region, params)
            except DtsError as exc:
                if exc.code == "InvalidSecurityToken.Expired" and not refreshed:
                    refreshed = True
                    log.warning("dts.token_expired", region=region, request_id=exc.request_id)
                    await self._credentials_call(region, refresh=True)
                    attempt -= 1  # a refresh is not a failed try
                    continue
                if not exc.retryable or attempt >= attempts:
                    raise
                wait = self._backoff(attempt, exc.retry_after)
                self.stats.retries[region] += 1
                log.warning(
                    "dts.retry",
                    region=region,
                    page=params.get("PageNum"),
                    attempt=attempt,
                    code=exc.code,
                    request_id=exc.request_id,
                    wait_seconds=round(wait, 3),
                )
                await self._sleep(wait)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER)
        growth: float = self.settings.backoff_initial * 2.0 ** (attempt - 1)
        ceiling = min(self.settings.backoff_max, growth)
        return self._rand() * ceiling

    async def _send(self, region: str, params: dict[str, str]) -> tuple[dict[str, Any], bool]:
        credentials = await self._credentials_call(region)
        try:
            request = self._signed(region, params, credentials)
        except Exception as exc:  # a credential no signature or header can carry
            raise failed(
                self.stats.requests, region, "RequestNotSendable", type(exc).__name__
            ) from None
        # Paced last, right before the request goes out: what DTS counts is arrivals.
        await self._limiters[region].acquire()
        response, content = await exchange(
            self._http, request, region, self.stats.requests, self.settings
        )
        return decode(region, response, content, self.stats.requests)

    def _signed(
        self, region: str, params: dict[str, str], credentials: Credentials
    ) -> signing.SignedRequest:
        scheme, host = self._endpoint(region)
        return signing.sign_request(
            method="GET",
            host=host,
            scheme=scheme,
            action=ACTION,
            params=params,
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret.get_secret_value(),
            security_token=(
                credentials.security_token.get_secret_value()
                if credentials.security_token
                else None
            ),
            now=self._now(),
            nonce=uuid.uuid4().hex,
        )

    async def _credentials_call(self, region: str, refresh: bool = False) -> Credentials:
        """Credentials from the provider; its failure fails the region, not the cycle."""
        try:
            if refresh:
                return await self._credentials.refresh()
            return await self._credentials.get()
        except CredentialsError as exc:  # its message is safe by contract
            reason = str(exc)
        except Exception as exc:  # anything else: its type, never its text
            reason = type(exc).__name__
        raise DtsError(
            f"credentials unavailable: {reason}", code="CredentialsUnavailable", region=region
        )

    def _endpoint(self, region: str) -> tuple[str, str]:
        if self.settings.endpoint:
            scheme, _, host = self.settings.endpoint.partition("://")
            return scheme, host
        return "https", endpoint_host(region)


def _check_page(page: PageParse, number: int, total: int, size: int) -> None:
    """Raise ListingDrift as soon as one page disagrees with the listing's first."""
    if page.total_record_count != total:
        raise ListingDrift(
            f"TotalRecordCount moved between pages: page {number} says "
            f"{page.total_record_count}, page 1 said {total}"
        )
    expected = min(size, total - (number - 1) * size)
    if page.raw_count != expected:
        raise ListingDrift(f"page {number} had {page.raw_count} records, expected {expected}")


def _assemble(pages: dict[int, PageParse], total: int, size: int) -> list[JobState]:
    """Join pages into one listing, or raise ListingDrift if they do not add up."""
    totals = {p.total_record_count for p in pages.values()}
    if len(totals) > 1:
        raise ListingDrift(f"TotalRecordCount moved between pages: {sorted(totals, key=str)}")
    records = sum(p.raw_count for p in pages.values())
    if records != total:
        raise ListingDrift(f"read {records} records, TotalRecordCount says {total}")
    for number, page in pages.items():
        expected = min(size, total - (number - 1) * size)
        if page.raw_count != expected:
            raise ListingDrift(f"page {number} had {page.raw_count} records, expected {expected}")
    seen: set[JobKey] = set()
    jobs: list[JobState] = []
    for number in sorted(pages):
        for job in pages[number].jobs:
            if job.key in seen:
                raise ListingDrift(f"job {job.key} appeared twice")
            seen.add(job.key)
            jobs.append(job)
    return jobs
