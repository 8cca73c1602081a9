"""The benchmark workload: many realistic DTS jobs over several regions.

"Realistic" means what a large account's listing looks like, not the simulator's bare
defaults: tags, two to four schemas with included and excluded tables, the sixteen usual
precheck items, endpoints on both sides, a tenth of the instances two-way (a Forward and
a Reverse job sharing an id), and a spread of statuses and delays. Nothing is failed or
over a delay threshold at the start, so the storm step ("every job fails at once") gives
exactly one `status_changed` event per job.

Everything is derived from a seed, so two processes building the same workload (the
simulator process and the measure-2 snapshots) get the same jobs.
"""

from __future__ import annotations

import random
from typing import Any

from dts_sim import JobSpec, ObjectSpec, Scenario, StepSpec

REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1")
PAGE_SIZE = 30
STORM_STEP = 1  # the scenario step that fails every job

# (status, weight): most jobs synchronize; none start in a failure status.
_STATUSES = (
    ("Synchronizing", 94),
    ("Finished", 3),
    ("Suspending", 1),
    ("Initializating", 1),
    ("NotStarted", 1),
)
_TEAMS = ("orders", "payments", "crm", "inventory", "search", "billing", "risk", "growth")
_ENVS = ("prod", "staging", "prod", "prod")


def regions_for(count: int) -> list[str]:
    if count <= len(REGIONS):
        return list(REGIONS[:count])
    return [*REGIONS, *(f"cn-bench-{i}" for i in range(count - len(REGIONS)))]


def split(jobs: int, regions: list[str]) -> dict[str, int]:
    """How many jobs each region gets (as even as possible)."""
    base, extra = divmod(jobs, len(regions))
    return {region: base + (1 if i < extra else 0) for i, region in enumerate(regions)}


def shards_for(accounts: int, regions: int) -> list[tuple[str, str]]:
    """(account, region) shards: the default account's regions, or with several accounts
    each one's (`bench1`, `bench2`, ...), reached through its RAM role."""
    names = ["default"] if accounts <= 1 else [f"bench{i + 1}" for i in range(accounts)]
    return [(name, region) for name in names for region in regions_for(regions)]


def _objects(rng: random.Random, team: str, n: int) -> list[ObjectSpec]:
    out = []
    for s in range(rng.randint(2, 4)):
        schema = f"{team}_{n % 97}_db{s}"
        include = [f"t_{team}_{k}" for k in range(rng.randint(2, 6))]
        exclude = [f"tmp_{team}_{k}" for k in range(rng.randint(0, 1))]
        out.append(
            ObjectSpec(
                schema_name=schema, new_schema=f"{schema}_copy", include=include, exclude=exclude
            )
        )
    return out


def build_jobs(jobs: int, regions: list[str], seed: int = 7, accounts: int = 1) -> list[JobSpec]:
    """`jobs` JobSpecs spread over `regions` (two-way instances count as two jobs), in
    the default account, or over several (`shards_for`)."""
    rng = random.Random(seed)
    statuses = [s for s, _ in _STATUSES]
    weights = [w for _, w in _STATUSES]
    out: list[JobSpec] = []
    shards = shards_for(accounts, len(regions)) if accounts > 1 else []
    labels = [f"{a}/{r}" for a, r in shards] or regions
    for r, (label, count) in enumerate(split(jobs, labels).items()):
        account, _, region = label.rpartition("/")
        made = 0
        n = 0
        while made < count:
            n += 1
            team = _TEAMS[n % len(_TEAMS)]
            job_id = f"dtsb{r:02d}{n:06d}"
            status = rng.choices(statuses, weights)[0]
            common: dict[str, Any] = {
                "id": job_id,
                "region": region,
                "account": account or "default",
                "status": status,
                "delay": rng.randint(0, 20) if status == "Synchronizing" else 0,
                "pay_type": "PrePaid" if n % 3 == 0 else "PostPaid",
                "job_class": rng.choice(("small", "medium", "large", "xlarge")),
                "tags": {
                    "env": _ENVS[n % len(_ENVS)],
                    "team": team,
                    "app": f"{team}-svc-{n % 13}",
                },
                "objects": _objects(rng, team, n),
            }
            two_way = n % 10 == 0 and count - made >= 2
            out.append(JobSpec(name=f"{team} {n} -> warehouse", **common))
            made += 1
            if two_way:
                out.append(JobSpec(name=f"{team} {n} -> warehouse", direction="Reverse", **common))
                made += 1
    return out


def scenario(jobs: int, regions: list[str], seed: int = 7, accounts: int = 1) -> Scenario:
    """The benchmark scenario: the jobs, and step 1 in which every one of them fails."""
    specs = build_jobs(jobs, regions, seed, accounts)
    storm = {
        str(spec.key): {"status": "Failed", "error_message": "DTS-070211: Connect Source DB failed"}
        for spec in specs
    }
    return Scenario(
        name=f"bench-{jobs}",
        description=f"{jobs} realistic jobs over {len(regions)} regions"
        + (f" of {accounts} accounts" if accounts > 1 else ""),
        regions=list(regions),
        jobs=specs,
        steps=[StepSpec(note="every job fails at once", changes=storm)],
    )


DTS_JOBS_PAGE_SIZE = 100  # the simulator accepts DescribeDtsJobs' largest documented size
LEGACY_API = "DescribeSynchronizationJobs"


def pages_per_region(jobs: int, regions: list[str], api: str = LEGACY_API) -> dict[str, int]:
    """The minimum number of requests a complete listing needs, per region: with
    DescribeDtsJobs, the synchronization jobs' pages plus one (empty) page each for the
    migration and change tracking listings."""
    if api == LEGACY_API:
        return {region: max(1, -(-n // PAGE_SIZE)) for region, n in split(jobs, regions).items()}
    # DescribeDtsJobs lists a two-way instance as one entry (the Reverse job nested)
    entries = dict.fromkeys(regions, 0)
    for spec in build_jobs(jobs, regions):
        entries[spec.region] += spec.direction == "Forward"
    return {region: max(1, -(-n // DTS_JOBS_PAGE_SIZE)) + 2 for region, n in entries.items()}


def minimum_text(api: str) -> str:
    if api == LEGACY_API:
        return "ceil(jobs/30)"
    return "ceil(entries/100) + 2 empty listings"
