"""The simulator's page seam: the plain renderer and the benchmarks' cache agree byte for byte.

`dts_sim.render.render_page` is what a Simulator serves by default; `benchmarks.simcache.
CachedPages` is what the benchmarks plug in to serve 10,000 jobs cheaply. Whatever the jobs
go through (steps, run-time changes, drift, a reset), both must give the same bytes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.simcache import CachedPages
from dts_sim import JobSpec, ScenarioState, parse_scenario
from dts_sim.render import DTS_JOBS_ACTION, Filters, render_page

SCENARIO = """
quirks = ["wrapped_lists"]

[[jobs]]
id = "dtsa"
region = "cn-hangzhou"
name = "orders -> warehouse"
tags = { env = "prod", team = "orders" }
resource_group = "rg-1"

[[jobs]]
id = "dtsb"
region = "cn-hangzhou"
status = "Failed"
quirks = ["numbers_as_json", "lowercase_keys"]
tags = { env = "staging" }

[[jobs]]
id = "dtsb"
direction = "Reverse"
region = "cn-hangzhou"
status = "Suspending"

[[generate]]
region = "cn-hangzhou"
count = 40
status = ["Synchronizing", "Initializating", "NotStarted"]
delay = [0, 75]
tags = { team = "gen" }

[[generate]]
region = "cn-beijing"
id_prefix = "dtsbj"
count = 12
quirks = ["empty_strings", "extra_fields"]

[[generate]]
region = "cn-hangzhou"
id_prefix = "dtsmig"
count = 25
job_type = "migration"
status = ["Migrating", "Finished", "MigrationFailed"]
delay = [0, 3]

[[jobs]]
id = "dtssub"
region = "cn-hangzhou"
job_type = "subscribe"
status = "Normal"
account = "other"

[[steps]]
note = "a delay and a failure"
set = { dtsa = { delay = 420 }, dtsgen007 = { status = "Failed", error_message = "boom" } }

[[steps]]
note = "a job comes, one goes"
add = [{ id = "dtsnew", region = "cn-beijing", name = "new orders", tags = { env = "prod" } }]
remove = ["dtsgen002", "dtsbj003"]

[[steps]]
note = "renamed"
set = { dtsbj001 = { name = "renamed orders" } }
"""

FILTERS = [
    Filters("cn-hangzhou"),
    Filters("cn-beijing"),
    Filters("cn-shenzhen"),  # no jobs at all
    Filters("cn-hangzhou", name="ORDERS"),
    Filters("cn-hangzhou", tags=(("env", "prod"),)),
    Filters("cn-hangzhou", tags=(("team", None),)),
    Filters("cn-beijing", tags=(("env", None),)),
    Filters("cn-hangzhou", resource_group="rg-1"),
    # DescribeDtsJobs: each job type, a two-way job as one entry, another account
    Filters("cn-hangzhou", api=DTS_JOBS_ACTION, job_type="sync"),
    Filters("cn-hangzhou", api=DTS_JOBS_ACTION, job_type="migration"),
    Filters("cn-hangzhou", api=DTS_JOBS_ACTION, job_type="subscribe", account="other"),
    Filters("cn-hangzhou", api=DTS_JOBS_ACTION, job_type="subscribe"),  # not this account's
]


def pages_of(state: ScenarioState) -> Iterator[tuple[Filters, int, int]]:
    """Every page a client could ask for, and one past the end of each listing."""
    for filters in FILTERS:
        for size in (10, 20, 30):
            for page in range(1, len(state.jobs(filters.region)) // size + 3):
                yield filters, page, size


def assert_same_pages(state: ScenarioState, cache: CachedPages) -> int:
    served = 0
    for n, (filters, page, size) in enumerate(pages_of(state)):
        request_id = f"REQUEST-{n}"
        plain = render_page(state, filters, page, size, request_id)
        cached = cache(state, filters, page, size, request_id)
        assert cached == plain, (filters, page, size)
        assert json.loads(plain)["RequestId"] == request_id
        served += 1
    return served


def test_cached_pages_are_byte_identical_to_plain_ones_across_changes() -> None:
    scenario = parse_scenario(SCENARIO)
    state = ScenarioState(scenario)
    cache = CachedPages()  # one cache for everything below: its invalidation is tested
    assert assert_same_pages(state, cache) > 50
    assert assert_same_pages(state, cache)  # again, now from the cache
    for _ in scenario.steps:
        state.advance()
        assert_same_pages(state, cache)
    state.set_job("dtsgen010", {"delay": 5})
    state.set_job("dtsb/Reverse", {"status": "synchronizing", "quirks": ["lowercase_status"]})
    assert_same_pages(state, cache)
    state.add_job({"id": "dtslate", "region": "cn-hangzhou", "tags": {"env": "prod"}})
    state.remove_job("dtsgen020")
    assert_same_pages(state, cache)
    state.drift("cn-hangzhou", "add")  # a job in front of the region: every page shifts
    assert_same_pages(state, cache)
    state.drift("cn-hangzhou", "remove")
    state.drift("cn-beijing", "remove")
    assert_same_pages(state, cache)
    # Removed and added again: same spec, a new creation time, so new JSON.
    removed = state.remove_job("dtsa")
    assert_same_pages(state, cache)
    state.add_job(removed)
    assert_same_pages(state, cache)
    state.tick()  # every job's delay and checkpoint move
    assert_same_pages(state, cache)
    state.set_job("dtsgen011", {"stalled": True})
    state.tick(2)
    assert_same_pages(state, cache)
    reset = ScenarioState(scenario)  # what Simulator.reset() does
    assert_same_pages(reset, cache)
    reset.advance(2)
    assert_same_pages(reset, cache)


def live_fields(body: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {
        f"{e['DtsJobId']}": (e["Status"], e["Delay"], e["Checkpoint"]) for e in body["DtsJobList"]
    }


def test_a_tick_moves_every_delay_and_checkpoint_and_nothing_else() -> None:
    state = ScenarioState(parse_scenario(SCENARIO))
    listing = Filters("cn-hangzhou", api=DTS_JOBS_ACTION, job_type="migration")
    legacy = Filters("cn-beijing")
    seen = [json.loads(render_page(state, listing, 1, 100, "r"))]
    plain = [json.loads(render_page(state, legacy, 1, 30, "r"))]
    for _ in range(3):
        state.tick()
        seen.append(json.loads(render_page(state, listing, 1, 100, "r")))
        plain.append(json.loads(render_page(state, legacy, 1, 30, "r")))
    for before, after in itertools.pairwise(seen):
        old, new = live_fields(before), live_fields(after)
        assert old.keys() == new.keys() and len(old) == 25
        for job, (status, delay, checkpoint) in old.items():
            assert new[job][0] == status
            assert new[job][1] != delay and new[job][2] != checkpoint
    for before, after in itertools.pairwise(plain):
        jobs = [
            body["SynchronizationInstances"]["SynchronizationInstance"]  # wrapped_lists
            for body in (before, after)
        ]
        assert len(jobs[0]) == 12
        assert all(a["Delay"] != b["Delay"] for a, b in zip(*jobs, strict=True))
        same = [{k: v for k, v in j.items() if k != "Delay"} for j in jobs[0]]
        assert same == [{k: v for k, v in j.items() if k != "Delay"} for j in jobs[1]]


def test_the_cache_renders_a_job_again_only_when_it_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = ScenarioState(parse_scenario(SCENARIO))
    rendered: list[str] = []
    plain_render = state.render

    def counting(job: JobSpec) -> dict[str, Any]:
        rendered.append(str(job.key))
        return plain_render(job)

    monkeypatch.setattr(state, "render", counting)
    cache = CachedPages()
    first = Filters("cn-hangzhou")
    page = cache(state, first, 1, 10, "request-one")
    assert len(rendered) == 10
    assert cache(state, first, 1, 10, "request-two") == page.replace(b"-one", b"-two")
    assert len(rendered) == 10  # served from the cache
    changed = state.set_job("dtsa", {"delay": 99})
    body = json.loads(cache(state, first, 1, 10, "request-three"))
    assert rendered[10:] == ["dtsa"]  # only the changed job is rendered again
    (served,) = [
        job
        for job in body["SynchronizationInstances"]["SynchronizationInstance"]
        if job.get("SynchronizationJobId") == changed.id
    ]
    assert served["Delay"] == "99"
