"""Paging a listing: its first page at the largest page size the API accepts, and the
pages joined into one listing, or `ListingDrift` when they do not add up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from watcher.dts.models import PageParse
from watcher.errors import SourceError
from watcher.logs import get_logger
from watcher.snapshot import JobKey, JobState

log = get_logger("watcher.dts")


class ListingDrift(Exception):
    """The listing moved under us while paging; the reason says how."""


def check_page(page: PageParse, number: int, total: int, size: int) -> None:
    """Raise ListingDrift as soon as one page disagrees with the listing's first (its
    total, or how many records a page of this number must hold): a short page ends the
    read at once instead of reading on into pages that cannot be right."""
    if page.total_record_count != total:
        raise ListingDrift(
            f"TotalRecordCount moved between pages: page {number} says "
            f"{page.total_record_count}, page 1 said {total}"
        )
    expected = min(size, total - (number - 1) * size)
    if page.raw_count != expected:
        raise ListingDrift(f"page {number} had {page.raw_count} records, expected {expected}")


async def first_page(
    region: str,
    sizes: Sequence[int],
    index: int,
    read: Callable[[int], Awaitable[PageParse]],
) -> tuple[PageParse, int, int]:
    """`read(size)` of the first page, from `sizes[index]` on: when DTS refuses a size as
    an invalid parameter, the next smaller one is tried at once, so the listing is not
    lost. Returns the page, its size, and the index of the size to start from next time."""
    while True:
        size = sizes[min(index, len(sizes) - 1)]
        try:
            return await read(size), size, index
        except SourceError as exc:
            code = str(getattr(exc, "code", ""))
            said = f"{code} {getattr(exc, 'api_message', '')}".lower()
            refused = getattr(exc, "status", None) == 400 and (
                code.lower().startswith("invalidparameter") or "pagesize" in said
            )
            if not refused or index + 1 >= len(sizes):
                raise
            log.warning(
                "dts.page_size_refused",
                region=region,
                page_size=size,
                next_page_size=sizes[index + 1],
                code=code,
            )
            index += 1


def assemble(pages: dict[int, PageParse], total: int, size: int) -> list[JobState]:
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
