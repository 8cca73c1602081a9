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
- InvalidSecurityToken.Expired makes the credentials provider re-read its source, once.
- Other 4xx (bad signature, unknown key, no permission) fail fast: retrying cannot help.
  The error carries the API's Code, Message and RequestId.
- Requests per shard are paced by a rate limiter well under DTS's documented 20 per
  second per account per region; shards are read concurrently, bounded.

A *shard* is one account's region, read with its account's credentials and listing API
(`watcher.dts.apis`), named here by its label (the region itself for the default account:
`region` below); it is counted, paced and failed alone: one never blinds another.

I/O goes through an httpx transport: the client's own HTTP/1.1 one, one per shard
(`watcher.dts.connections`), or an injected one, and time through injectable `sleep`,
`now` and `random` functions, so every path is testable without a network or real waits.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import httpx

from watcher.dts import signing
from watcher.dts.apis import Listing, ShardSource, listing_api
from watcher.dts.connections import Http11Transport
from watcher.dts.credentials import Credentials, CredentialsError, CredentialsProvider
from watcher.dts.dtsjobs import ApiRefusal
from watcher.dts.exchange import DtsError as DtsError  # where it has always been imported from
from watcher.dts.exchange import exchange, failed
from watcher.dts.models import PageParse
from watcher.dts.pacing import PACE, RateLimiter
from watcher.dts.page_cache import Answer, Page, PageCache, answer
from watcher.dts.paging import ListingDrift, assemble, check_page, first_page
from watcher.dts.record_cache import CachedJobs, JobCache
from watcher.dts.tls import tls_context
from watcher.logs import get_logger
from watcher.settings import DtsSettings
from watcher.settings.common import is_loopback
from watcher.snapshot import DEFAULT_ACCOUNT, JobState, RegionOutcome, Shard, Snapshot

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
        shards: Sequence[ShardSource] | None = None,
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
        if shards is None:  # the default account, as `dts` says
            api = listing_api(settings, settings.api, settings.job_types)
            shards = [
                ShardSource(Shard(DEFAULT_ACCOUNT, region), api, credentials)
                for region in settings.regions
            ]
        self._shards = {source.label: source for source in shards}
        pace = settings.rate_limit * PACE
        self._limiters = {label: RateLimiter(pace, clock, sleep) for label in self._shards}
        # The page size each shard's API accepted (an index into its `page_sizes`).
        self._size_index: dict[str, int] = {}
        # A transport per shard, each with its own connections (`connections`), used
        # without an httpx client around it (`exchange`): httpcore's pool and the client's
        # layers (cookies, redirects, auth) cost most of a steady cycle's CPU beyond the
        # floor. One TLS context. An injected `transport` (tests) serves every shard.
        context = tls_context(settings.tls_ca_file)
        self._http: dict[str, httpx.AsyncBaseTransport] = {
            label: transport
            or Http11Transport(context, max_connections=settings.max_concurrent_pages)
            for label in self._shards
        }
        plain = settings.endpoint and settings.endpoint.startswith("http://")
        if plain and not is_loopback(settings.endpoint or ""):
            log.warning(
                "dts.plain_http",
                endpoint=settings.endpoint,
                risk="requests, signatures and STS tokens travel unencrypted",
            )
        # Per shard and listing, its last complete read's jobs (JobCache); pages (PageCache).
        self._parsed: dict[tuple[str, str], CachedJobs] = {}
        self._pages = PageCache()

    async def __aenter__(self) -> DtsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for http in self._http.values():
            await http.aclose()

    # -- one cycle ------------------------------------------------------------------------

    @property
    def shards(self) -> list[ShardSource]:
        return list(self._shards.values())

    async def fetch(
        self,
        on_page: PageHook | None = None,
        deadline: float | None = None,
        only: Collection[str] | None = None,
    ) -> Snapshot:
        """Read every configured shard (or those of `only`, by label: the shards this
        replica holds, with several); never raises for DTS or network faults.

        `on_page(region, jobs)` is called with each page as it arrives, once it agrees
        with the first page of its listing on the total: a consistent page, though the
        listing may yet turn out incomplete (a later page failing).

        `deadline`: seconds the whole read may take; a shard not read completely by then
        is incomplete (`CycleDeadline`), the others are what they are.
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
                    self._outcome(
                        region,
                        0,
                        0,
                        (f"not read within the cycle's deadline ({deadline:g}s)", "CycleDeadline"),
                    ),
                )

        labels = [label for label in self._shards if only is None or label in only]
        async with anyio.create_task_group() as tg:
            for label in labels:
                tg.start_soon(one, label)
        jobs = [job for label in labels for job in results[label][0]]
        return Snapshot.of(jobs, (results[label][1] for label in labels), taken_at)

    async def fetch_region(
        self, region: str, on_page: PageHook | None = None
    ) -> tuple[list[JobState], RegionOutcome]:
        """All jobs of one shard (by label: a region of the default account) and how the
        read went (never raises for DTS faults)."""
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
            except Exception as exc:  # whatever else: this shard's failure, not the cycle's
                error, code = f"unexpected {type(exc).__name__} while reading", "InternalError"
                log.error("dts.region_failed", region=region, code=code, error=type(exc).__name__)
                break
        requests = sum(n for (r, _), n in self.stats.requests.items() if r == region)
        outcome = self._outcome(
            region,
            pages,
            requests - requests_before,
            None if error is None else (error, code or "InternalError"),
            unusable if error is None else 0,
        )
        return (jobs if error is None else []), outcome

    def _outcome(
        self,
        region: str,
        pages: int,
        requests: int,
        failure: tuple[str, str] | None,
        unusable: int = 0,
    ) -> RegionOutcome:
        source = self._shards[region]
        return RegionOutcome(
            region=source.shard.region,
            error=failure[0] if failure else None,
            error_code=failure[1] if failure else None,
            pages=pages,
            requests=requests,
            account=source.shard.account,
            job_types=source.api.covers,
            unusable_records=unusable,
        )

    async def _read_listing(
        self, region: str, on_page: PageHook | None
    ) -> tuple[list[JobState], int, int]:
        """Every listing of the shard (one per job type with DescribeDtsJobs): (jobs,
        pages, unusable records), or ListingDrift at the first page that shows a listing
        moved (or lies)."""
        jobs: list[JobState] = []
        pages = unusable = 0
        for listing in self._shards[region].api.listings:
            found, count, skipped = await self._read_one(region, listing, on_page)
            jobs.extend(found)
            pages += count
            unusable += skipped
        return jobs, pages, unusable

    async def _first_page(
        self, region: str, listing: Listing, cache: JobCache
    ) -> tuple[PageParse, int]:
        """The first page and its page size: the largest the shard's API accepts."""

        async def read(size: int) -> PageParse:
            return await self._page(region, 1, cache, listing, size)

        sizes = self._shards[region].api.page_sizes
        page, size, self._size_index[region] = await first_page(
            region, sizes, self._size_index.get(region, 0), read
        )
        return page, size

    async def _read_one(
        self, region: str, listing: Listing, on_page: PageHook | None
    ) -> tuple[list[JobState], int, int]:
        api = self._shards[region].api
        cache = JobCache(self._parsed.get((region, listing.job_type)), api.record_keys, api.live)
        first, size = await self._first_page(region, listing, cache)
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
        check_page(first, 1, total, size)  # a short first page: no need to read on
        pages: dict[int, PageParse] = {1: first}
        if on_page is not None:
            on_page(region, first.jobs)
        if page_count > 1:
            gate = anyio.Semaphore(self.settings.max_concurrent_pages)
            failures: list[Exception] = []

            async def one(number: int, scope: anyio.CancelScope) -> None:
                async with gate:
                    try:
                        page = pages[number] = await self._page(
                            region, number, cache, listing, size
                        )
                        check_page(page, number, total, size)
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
        jobs = assemble(pages, total, size)
        # complete and consistent: reused next time
        self._parsed[(region, listing.job_type)] = cache.seen
        return jobs, page_count, sum(page.skipped for page in pages.values())

    # -- one page, with retries ----------------------------------------------------------

    async def read_page(
        self, region: str, number: int = 1, listing: Listing | None = None
    ) -> PageParse:
        """One page of one shard's listing (its first by default), with the usual retries
        and page-size fallback (`check-config --probe` uses it)."""
        listing = listing or self._shards[region].api.listings[0]
        if number == 1:
            api = self._shards[region].api
            cache = JobCache(keys=api.record_keys, live=api.live)
            return (await self._first_page(region, listing, cache))[0]
        return await self._page(region, number, None, listing)

    async def _page(
        self,
        region: str,
        number: int,
        cache: JobCache | None = None,
        listing: Listing | None = None,
        size: int | None = None,
    ) -> PageParse:
        source = self._shards[region]
        listing = listing or source.api.listings[0]
        size = size or source.api.page_sizes[0]
        params = {"RegionId": source.shard.region, **source.api.params(listing, number, size)}
        key = (region, listing.job_type, size, number)
        known = self._pages.expect(key, cache)
        got = await self._call(region, params, known)
        try:
            if got.body is None and known is not None:  # the very page read last time
                parsed = self._pages.reuse(known, got, cache)
            else:
                before = len(cache.seen) if cache is not None else 0
                # Only orjson's documents may use the cache (see JobCache).
                use = cache if got.exact else None
                parsed = source.api.parse(got.body or {}, source.shard, listing, use)
                self._pages.remember(key, got, parsed, use, before)
        except ApiRefusal as exc:  # DescribeDtsJobs: HTTP 200 with Success false
            raise DtsError(exc.message, code=exc.code, region=region) from None
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
                consequence="no job of this shard is judged absent this cycle",
            )
        return parsed

    async def _call(self, region: str, params: dict[str, str], known: Page | None) -> Answer:
        attempts = self.settings.max_attempts
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send(region, params, known)
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
                    page=params.get("PageNum") or params.get("PageNumber"),
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

    async def _send(self, region: str, params: dict[str, str], known: Page | None) -> Answer:
        credentials = await self._credentials_call(region)
        try:
            request = self._signed(region, params, credentials)
        except Exception as exc:  # a credential no signature or header can carry
            raise failed(
                self.stats.requests, region, "RequestNotSendable", type(exc).__name__
            ) from None
        # Paced last, as the request goes out: what DTS counts is arrivals.
        async with self._limiters[region].slot() as sent:
            response, content = await exchange(
                self._http[region], request, region, self.stats.requests, self.settings, sent
            )
        return answer(region, response, content, self.stats.requests, known)

    def _signed(
        self, region: str, params: dict[str, str], credentials: Credentials
    ) -> signing.SignedRequest:
        scheme, host = self._endpoint(region)
        return signing.sign_request(
            method="GET",
            host=host,
            scheme=scheme,
            action=self._shards[region].api.action,
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
        """Credentials from the provider; its failure fails the shard, not the cycle."""
        provider = self._shards[region].credentials
        try:
            if refresh:
                return await provider.refresh()
            return await provider.get()
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
        return "https", endpoint_host(self._shards[region].shard.region)
