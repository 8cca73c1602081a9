"""The cycle page by page, with a listing that ends while pages wait to be judged.

The client here is a stand-in below the I/O boundary: it hands the cycle its pages and
returns, closing the listing before the judging task has even started, which is the
order a fast listing (a few small pages) produces. Every job must still be judged and
saved, the cycle must not fail.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.cycle import Cycle
from watcher.metrics import Metrics
from watcher.publish import Publisher
from watcher.settings import Settings
from watcher.snapshot import JobState, RegionOutcome, Snapshot
from watcher.status import Status
from watcher.store import Store

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: str) -> JobState:
    return JobState("cn-hangzhou", job_id, "Forward", job_id, "Synchronizing", delay_seconds=1)


class QuickListing:
    """All pages at once, then the listing is over."""

    def __init__(self, pages: list[tuple[JobState, ...]]) -> None:
        self.pages = pages

    async def fetch(
        self, on_page: Callable[[str, tuple[JobState, ...]], None] | None = None, **_: Any
    ) -> Snapshot:
        for page in self.pages:
            if on_page is not None:
                on_page("cn-hangzhou", page)
        jobs = [j for page in self.pages for j in page]
        return Snapshot.of(jobs, [RegionOutcome("cn-hangzhou", pages=len(self.pages))])


async def test_a_listing_that_ends_before_its_pages_are_judged(tmp_path: Path) -> None:
    settings = Settings(poll={"emit": "page"}, state={"path": tmp_path / "s.sqlite3"})
    pages = [(job("a"), job("b")), (job("c"),), (job("d"),)]
    with Store.open(settings.state.file) as store:
        status = Status()
        cycle = Cycle(
            settings,
            QuickListing(pages),  # type: ignore[arg-type]
            store,
            Publisher(settings.nats, store),
            status,
            Metrics(status),
            lambda: NOW,
        )
        result = await cycle.run()
        baseline, _ = store.load()
    assert result.complete
    assert sorted(e.data["job_id"] for e in result.events if e.kind == "discovered") == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert len(baseline) == 4
