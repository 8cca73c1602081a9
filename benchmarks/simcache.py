"""A caching page source for the simulator, so it can serve the benchmarks' 10,000 jobs.

`Simulator(scenario, pages=CachedPages())`. The benchmarks ask for the same pages every
few seconds, and the plain `dts_sim.render.render_page` selects and renders every job of
a page on every request, which would make the simulator, not the watcher, what they
measure. Here:

- the selection for a set of filters is kept for as long as the jobs do not change
  (`ScenarioState.version`);
- each job's JSON is kept for as long as the job's spec (immutable) and its creation time
  are the same (and, once the state was ticked, its ticks: `ScenarioState.tick` moves
  every job's delay and checkpoint);
- each page's bytes are kept, split where the RequestId goes, for as long as the very same
  rendered jobs are on it and the total is the same. A change to one job re-renders only
  the page that shows it.

The bytes are exactly `render_page`'s (tests/unit/test_simulator_pages.py checks that).
Not thread-safe on its own: the simulator calls it with its lock held.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dts_sim import JobKey, JobSpec, ScenarioState
from dts_sim.render import DTS_JOBS_ACTION, Filters, json_bytes, page_body
from dts_sim.render_dtsjobs import Entry, dts_entries, dts_page_body

__all__ = ["CachedPages"]

# Stands in for the RequestId in cached page bodies.
_REQUEST_ID_SLOT = "@@dts-simulator-request-id@@"

_Page = tuple[int, tuple[dict[str, Any], ...], bytes, bytes]  # total, jobs' JSON, head, tail


class CachedPages:
    """A `dts_sim.render.PageSource` that caches selections, jobs' JSON and page bytes."""

    def __init__(self) -> None:
        self._state: ScenarioState | None = None  # what the caches were filled from
        self._version = -1
        self._selections: dict[Filters, list[Any]] = {}  # JobSpecs, or DescribeDtsJobs entries
        # job -> (the spec(s), creation time and ticks it was rendered from, its JSON)
        self._rendered: dict[
            tuple[str, JobKey], tuple[tuple[Any, ...], tuple[datetime, int], dict[str, Any]]
        ]
        self._rendered = {}
        self._pages: dict[tuple[Filters, int, int], _Page] = {}

    def __call__(
        self,
        state: ScenarioState,
        filters: Filters,
        page: int,
        page_size: int,
        request_id: str,
    ) -> bytes:
        head, tail = self._parts(state, filters, page, page_size)
        return head + request_id.encode() + tail

    def _parts(
        self, state: ScenarioState, filters: Filters, page: int, page_size: int
    ) -> tuple[bytes, bytes]:
        """A page's body, split where its RequestId goes."""
        if self._state is not state:  # a reset: nothing from before applies
            self._state = state
            self._version = -1
            self._rendered.clear()
            self._pages.clear()
        if self._version != state.version:
            self._selections.clear()
            self._version = state.version
        selected = self._selections.get(filters)
        if selected is None:
            selected = state.select_for(filters)
            if filters.api == DTS_JOBS_ACTION:  # a two-way job is one entry
                selected = dts_entries(selected)
            self._selections[filters] = selected
        start = (page - 1) * page_size
        jobs = selected[start : start + page_size]
        # `_render` answers with the same dict for as long as a job is unchanged, so the
        # identity of those dicts says whether the page is still valid.
        rendered = tuple(self._render(state, job) for job in jobs)
        key = (filters, page, page_size)
        cached = self._pages.get(key)
        if (
            cached is not None
            and cached[0] == len(selected)
            and len(cached[1]) == len(rendered)
            and all(a is b for a, b in zip(cached[1], rendered, strict=True))
        ):
            return cached[2], cached[3]
        if filters.api == DTS_JOBS_ACTION:
            payload = dts_page_body(
                jobs,  # type: ignore[arg-type]
                total=len(selected),
                page_number=page,
                request_id=_REQUEST_ID_SLOT,
                render=lambda entry: self._render(state, entry),
            )
        else:
            payload = page_body(
                jobs,  # type: ignore[arg-type]
                total=len(selected),
                page_number=page,
                request_id=_REQUEST_ID_SLOT,
                quirks=state.scenario.quirks,
                render=lambda job: self._render(state, job),
            )
        # DescribeDtsJobs' body has the RequestId first too.
        # RequestId comes before the jobs in the body, so the first occurrence is the slot.
        head, _, tail = json_bytes(payload).partition(_REQUEST_ID_SLOT.encode())
        self._pages[key] = (len(selected), rendered, head, tail)
        return head, tail

    def _render(self, state: ScenarioState, item: JobSpec | Entry) -> dict[str, Any]:
        """`state.render(job)` (or `render_dts(entry)`), cached until the job (or either
        half of the entry) changes. Do not mutate."""
        if isinstance(item, JobSpec):
            job, key, spec = item, ("legacy", item.key), (item,)
            render = state.render
        else:
            job, key, spec = item[0], ("dts", item[0].key), item
            render = state.render_dts  # type: ignore[assignment]
        if any(half is not None and half.stalled for half in spec):
            return render(item)  # type: ignore[arg-type]  # its delay grows with the clock
        created = state.created_at(job)
        # Ticked jobs (`ScenarioState.tick`) show another delay and checkpoint each tick.
        ticks = state.ticks if any(h is not None and state.moving(h) for h in spec) else 0
        cached = self._rendered.get(key)
        if (
            cached is not None
            and len(cached[0]) == len(spec)
            and all(a is b for a, b in zip(cached[0], spec, strict=True))
            and cached[1] == (created, ticks)
        ):
            return cached[2]
        rendered = render(item)  # type: ignore[arg-type]
        self._rendered[key] = (spec, (created, ticks), rendered)
        return rendered
