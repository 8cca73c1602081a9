"""The benchmark runner: six measures, each against a baseline measured in the same run.

Each pass runs them with one listing API: DescribeSynchronizationJobs (the legacy
default), then DescribeDtsJobs (`--api`, default both), whose rows are numbered `D1`,
`D3`, ...; the baselines stay the same (the floor reads the legacy listing), so the two
APIs' cost per cycle compare directly.

The workload is the simulator (its own process) serving realistic jobs over four
regions, the real nats-server, and the real watcher in processes of its own (see
`worker.py`), so CPU time and memory are the watcher's alone. Every figure is a ratio
against a baseline measured in the same invocation, so the machine's speed cancels out;
with `--runs N` each figure is the median of N runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stats, workload
from benchmarks.simproc import ROOT, SimProcess, clean_env

EVENTS_PER_TRANSACTION = 1000  # the watcher's default (state.events_per_transaction)
RATE_LIMIT = 20  # requests per second per region: DTS's own ceiling, the fastest allowed
INTERVAL = 1.0  # poll interval of measure 4
APIS = {"legacy": "DescribeSynchronizationJobs", "dtsjobs": "DescribeDtsJobs"}
# The listing API of the pass under way: every worker and service is configured with it.
_PASS = {"api": APIS["legacy"]}


@dataclass
class Config:
    jobs: int = 10_000
    regions: int = 4
    runs: int = 3
    only: frozenset[int] = frozenset(range(1, 10))
    quick: bool = False
    steady_cycles: int = 3  # measured steady cycles per run (measures 1 and 6)
    moving_cycles: int = 3  # measured cycles with every delay moving, per run (measure 7)
    scale_jobs: int = 100_000  # measure 8: jobs over `scale_accounts` x `scale_regions`
    scale_accounts: int = 2
    scale_regions: int = 5
    scale_cycles: int = 2  # measured steady, then moving, cycles per run of measure 8
    scale: int = 10  # measure 2: detect at jobs and at scale x jobs
    # measure 9: `benchmarks.cluster_replicas`' arguments (lease TTL and poll interval in
    # seconds, shards and jobs per shard, SIGKILLs, measured cycles of traffic)
    cluster: str = "--ttl 15 --interval 5 --regions 12 --jobs 50 --kills 3 --cycles 6"
    deepdiff_runs: int = 1  # ~80 s at 10,000 jobs: once, against the median of detect()'s
    latency_seconds: float = 20.0  # measure 4: changes made per run
    growth_cycles: int = 500  # measure 5
    growth_jobs: int = 1_000  # 500 cycles of 10,000 jobs: ~15 minutes of CPU alone
    profile: Path | None = None
    apis: tuple[str, ...] = tuple(APIS.values())

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        if args.quick:
            cfg = cls(
                jobs=300,
                runs=1,
                steady_cycles=2,
                moving_cycles=2,
                scale_jobs=1_000,
                scale_cycles=1,
                latency_seconds=2.0,
                growth_cycles=10,
                growth_jobs=300,
                cluster="--ttl 4 --interval 1 --regions 3 --jobs 5 --kills 1 --cycles 2",
                quick=True,
            )
        else:
            cfg = cls()
        if args.jobs is not None:
            cfg.jobs = args.jobs
            cfg.growth_jobs = min(cfg.growth_jobs, args.jobs)
        if args.runs is not None:
            cfg.runs = args.runs
        if args.scale_jobs is not None:
            cfg.scale_jobs = args.scale_jobs
        if args.only:
            cfg.only = frozenset(args.only)
        cfg.profile = args.profile
        if args.api != "both":
            cfg.apis = (APIS[args.api],)
        return cfg


@dataclass
class Row:
    number: str
    measure: str
    value: str
    baseline: str
    ratio: str
    target: str
    met: bool | None
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    api: str = APIS["legacy"]


# -- plumbing ---------------------------------------------------------------------------


def run_worker(mode: str, cfg: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run `benchmarks.worker MODE` in a fresh process; its last stdout line is JSON."""
    cfg = {"api": _PASS["api"], **cfg}
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", mode, json.dumps(cfg)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {mode} failed (exit {process.returncode}):\n{process.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def _drop_stream(url: str, name: str = "DTS_EVENTS") -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        with suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def drop_stream(url: str) -> None:
    """A clean slate: the watcher creates the stream again on its first publish."""
    asyncio.run(_drop_stream(url))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dts-bench-") as folder:
        yield Path(folder)


def _fmt_s(seconds: float) -> str:
    if math.isnan(seconds) or math.isinf(seconds):
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def _fmt_n(n: float) -> str:
    return f"{n:,.0f}"


# -- measures 1, 6 and 7: steady and moving cycles ------------------------------------------


def steady(cfg: Config, sim: SimProcess, nats_url: str) -> list[Row]:
    moving = cfg.moving_cycles if 7 in cfg.only else 0
    base = {
        "url": sim.url,
        "regions": sim.regions,
        "nats_url": nats_url,
        "rate_limit": RATE_LIMIT,
        "cycles": cfg.steady_cycles,
        "moving": moving,
        "warm": 1,
    }
    cpu: dict[str, list[float]] = {"steady": [], "moving": [], "async": [], "sync": []}
    shares: dict[str, list[dict[str, float]]] = {"steady": [], "moving": []}
    walls: list[float] = []
    per_cycle: list[dict[str, int]] = []
    max_rate: dict[str, int] = {}
    max_sent: dict[str, int] = {}  # the same from the watcher's own record of its sends
    complete = {"steady": True, "moving": True}
    for run in range(cfg.runs):
        results: dict[str, dict[str, Any]] = {}
        order = ["steady", "floor"] if run % 2 == 0 else ["floor", "steady"]
        for mode in order:
            with scratch() as folder:
                sim.reset()  # no ticks
                drop_stream(nats_url)
                sim.clear_requests()
                extra: dict[str, Any] = {"state_dir": str(folder)}
                if cfg.profile and mode == "steady" and run == 0:
                    extra.update(
                        profile=str(cfg.profile / f"steady-cycles{_api_tag()}.pyspy.txt"),
                        moving_profile=str(cfg.profile / f"moving-cycles{_api_tag()}.pyspy.txt"),
                        profile_idle=True,
                    )
                log(f"measure 1/6/7 run {run + 1}/{cfg.runs}: {mode}")
                results[mode] = run_worker(mode, {**base, **extra})
                for key in ("profile", "moving_profile"):
                    if key in extra:
                        _summary(Path(extra[key]), STEADY_FOCUS, main_thread=True)
                if mode == "steady":
                    requests = sim.requests()
        sim.reset()
        out = results["steady"]
        for part, cycles in (("steady", out["cycles"]), ("moving", out["moving_cycles"])):
            if cycles:
                cpu[part].append(stats.median(c["cpu"] for c in cycles))
                shares[part].append(_median_shares(cycles))
                complete[part] &= all(c["complete"] and c["events"] == 0 for c in cycles)
        cpu["async"].append(stats.median(c["cpu"] for c in results["floor"]["cycles"]))
        cpu["sync"].append(stats.median(c["cpu"] for c in results["floor"]["sync_cycles"]))
        walls.extend(c["wall"] for c in out["cycles"])
        # Measure 6: requests per measured steady cycle per region, and the busiest second.
        for c in out["cycles"]:
            counts: dict[str, int] = dict.fromkeys(sim.regions, 0)
            for r in requests:
                if c["start"] <= r["at"] <= c["end"] and r["region"] in counts:
                    counts[r["region"]] += 1
            per_cycle.append(counts)
        for region in sim.regions:
            times = [r["at"] for r in requests if r["region"] == region]
            max_rate[region] = max(max_rate.get(region, 0), stats.max_in_window(times))
            sent = stats.max_in_window(out["sent"].get(region, []))
            max_sent[region] = max(max_sent.get(region, 0), sent)

    rows: list[Row] = []
    if 1 in cfg.only:
        rows += _cycle_rows("1", "CPU time of a steady cycle", "<= 1.5x", 1.5, cpu, "steady")
        rows[-2].raw["cycle_wall"] = stats.median(walls)
        if not complete["steady"]:
            rows[-2].met = False
            rows[-2].note = "a steady cycle was incomplete or produced events"
        rows[-2].note = _shares_note(rows[-2].note, shares["steady"], cpu["steady"])
    if moving:
        rows += _cycle_rows(
            "7", "CPU time of a cycle in which every delay moved", "<= 2x", 2.0, cpu, "moving"
        )
        if not complete["moving"]:
            rows[-2].met = False
            rows[-2].note = "a moving cycle was incomplete or produced events"
        rows[-2].note = _shares_note(rows[-2].note, shares["moving"], cpu["moving"])
    if 6 in cfg.only:
        rows += _request_rows(cfg, sim, per_cycle, max_rate, max_sent)
    return rows


def _cycle_rows(
    number: str,
    measure: str,
    target: str,
    limit: float,
    cpu: dict[str, list[float]],
    part: str,
) -> list[Row]:
    """A cycle's CPU against the synchronous floor (the target), then against the paced
    async one (for the record); ratios are medians of the runs' ratios."""
    watcher = cpu[part]
    sync = [w / f for w, f in zip(watcher, cpu["sync"], strict=True)]
    paced = [w / f for w, f in zip(watcher, cpu["async"], strict=True)]
    raw = {"watcher_cpu": watcher, "floor_cpu": cpu["async"], "sync_floor_cpu": cpu["sync"]}
    return [
        Row(
            number,
            measure,
            _fmt_s(stats.median(watcher)),
            f"{_fmt_s(stats.median(cpu['sync']))} (sync httpx + json.loads floor)",
            f"{stats.median(sync):.2f}x",
            target,
            stats.median(sync) <= limit,
            "",
            {**raw, "ratios": sync},
        ),
        Row(
            f"{number}b",
            f"{measure}, against the paced async floor",
            _fmt_s(stats.median(watcher)),
            f"{_fmt_s(stats.median(cpu['async']))} (async httpx + json.loads floor, paced)",
            f"{stats.median(paced):.2f}x",
            "(for the record)",
            None,
            "",
            {**raw, "ratios": paced},
        ),
    ]


def _median_shares(cycles: list[dict[str, Any]]) -> dict[str, float]:
    parts = {part for c in cycles for part in c["shares"]}
    return {part: stats.median(c["shares"].get(part, 0.0) for c in cycles) for part in parts}


def _shares_note(note: str, shares: list[dict[str, float]], cpu: list[float]) -> str:
    """Where a cycle's CPU went (medians over the runs), the parts the worker times
    (`Shares`) and what is left: the HTTP client, the event loop, the rest."""
    if not shares:
        return note
    parts = sorted({part for run in shares for part in run})
    median = {part: stats.median(run.get(part, 0.0) for run in shares) for part in parts}
    whole = stats.median(cpu)
    ordered = sorted(median.items(), key=lambda item: -item[1])
    said = ", ".join(f"{part} {_fmt_s(seconds)}" for part, seconds in ordered)
    rest = max(0.0, whole - sum(median.values()))
    said = f"of the {_fmt_s(whole)}: {said}; HTTP client, event loop and the rest {_fmt_s(rest)}"
    return f"{note}; {said}" if note else said


def _request_rows(
    cfg: Config,
    sim: SimProcess,
    per_cycle: list[dict[str, int]],
    max_rate: dict[str, int],
    max_sent: dict[str, int],
) -> list[Row]:
    minimum = workload.pages_per_region(cfg.jobs, sim.regions, _PASS["api"])
    equal = all(c == minimum for c in per_cycle)
    within = all(n <= RATE_LIMIT for n in max_rate.values())
    seen = sorted({n for c in per_cycle for n in c.values()})
    busiest = max(max_rate.values()) if max_rate else 0
    return [
        Row(
            "6a",
            "API requests per steady cycle, per region",
            "/".join(str(n) for n in seen),
            f"{'/'.join(str(n) for n in sorted(set(minimum.values())))} "
            f"({workload.minimum_text(_PASS['api'])})",
            f"{stats.median(sum(c.values()) for c in per_cycle) / sum(minimum.values()):.2f}x",
            "equal",
            equal,
            "" if equal else f"per cycle: {per_cycle}",
            {"per_cycle": per_cycle, "minimum": minimum},
        ),
        Row(
            "6b",
            "most requests in any 1 s, per region",
            str(busiest),
            f"{RATE_LIMIT}/s (the configured limit)",
            f"{busiest / RATE_LIMIT:.2f}x",
            "<= 1.00x",
            within,
            "" if within else f"per region: {max_rate}",
            {"max_rate": max_rate},
        ),
        Row(
            "6c",
            "most requests sent in any 1 s, per region (the watcher's own record)",
            str(max(max_sent.values()) if max_sent else 0),
            f"{RATE_LIMIT}/s (the configured limit)",
            f"{max(max_sent.values(), default=0) / RATE_LIMIT:.2f}x",
            "<= 1.00x",
            all(n <= RATE_LIMIT for n in max_sent.values()),
            "when each request's headers were written, the moment the pacing counts from; "
            "6b is the simulator's record of arrivals, which a busy machine can bunch",
            {"max_sent": max_sent},
        ),
    ]


def _api_tag() -> str:
    return "" if _PASS["api"] == APIS["legacy"] else "-dtsjobs"


# What the profile summaries look at (see profiles.py): where a steady cycle's wall time
# goes (waiting for its pacing slot, HTTP, decoding, ...), and the storm's CPU from the
# commit to the last ack.
STEADY_FOCUS = [
    "Cycle.run",
    "RateLimiter.acquire",
    "exchange (watcher/dts/exchange.py)",
    "loads (watcher/fastjson.py)",
    "parse_page",
    "parse_dts_jobs_page",
    "JobCache.reuse",
    "PageByPage.judge",
    "PageByPage.finish",
    "commit_steps",
    "save_page",
    "Heap.settle",
    "EpollSelector.select",
]
STORM_FOCUS = ["Store.commit", "JobState.to_dict", "executemany", "Publisher.drain", "_log_events"]


def _summary(path: Path, focus: list[str], main_thread: bool = False) -> None:
    from benchmarks.profiles import summarize

    if path.exists():
        text = summarize(path, focus, main_thread=main_thread)
        path.with_suffix(".summary.txt").write_text(text)
        log(f"profile: {path} (summary: {path.with_suffix('.summary.txt')})")


# -- measure 2: detect() --------------------------------------------------------------------


def detection(cfg: Config) -> list[Row]:
    log(f"measure 2: detect() at {cfg.jobs} and {cfg.jobs * cfg.scale} jobs, DeepDiff")
    out = run_worker(
        "detect",
        {
            "jobs": cfg.jobs,
            "regions": workload.regions_for(cfg.regions),
            "scale": cfg.scale,
            "runs": cfg.runs,
            "deepdiff_runs": cfg.deepdiff_runs,
        },
    )
    small = stats.median(out["detect_small"])
    large = stats.median(out["detect_large"])
    deep = stats.median(out["deepdiff"])
    faster = deep / small
    scaling = large / small
    events_ok = out["events_small"] == out["changed_small"]
    return [
        Row(
            "2a",
            f"detect(), {cfg.jobs:,} jobs, 1% changed",
            _fmt_s(small),
            f"{_fmt_s(deep)} (DeepDiff)",
            f"{faster:.0f}x faster",
            ">= 50x faster",
            faster >= 50 and events_ok,
            "" if events_ok else f"{out['events_small']} events for {out['changed_small']} changes",
            out,
        ),
        Row(
            "2b",
            f"detect(), {cfg.jobs * cfg.scale:,} jobs, 1% changed",
            _fmt_s(large),
            f"{_fmt_s(small)} ({cfg.jobs:,} jobs)",
            f"{scaling:.1f}x",
            f"<= {1.2 * cfg.scale:.0f}x",
            scaling <= 1.2 * cfg.scale,
        ),
    ]


# -- measure 3: event storm ---------------------------------------------------------------


def storm(cfg: Config, sim: SimProcess, nats_url: str) -> list[Row]:
    results = []
    for run in range(cfg.runs):
        with scratch() as folder:
            sim.reset()
            drop_stream(nats_url)
            log(f"measure 3 run {run + 1}/{cfg.runs}: every job fails at once")
            payloads = folder / "storm-payloads.json"
            results.append(
                run_worker(
                    "storm",
                    {
                        "url": sim.url,
                        "regions": sim.regions,
                        "nats_url": nats_url,
                        "rate_limit": RATE_LIMIT,
                        "state_dir": str(folder),
                        "payloads": str(payloads),
                        # The whole storm at once (page by page, it would arrive at the
                        # pace pages are read: DTS's rate limit, not the publishing).
                        "emit": "listing",
                        **(
                            {"profile": str(cfg.profile / "storm.pyspy.txt")}
                            if cfg.profile and run == 0
                            else {}
                        ),
                    },
                )
            )
            if cfg.profile and run == 0:
                _summary(cfg.profile / "storm.pyspy.txt", STORM_FOCUS)
            log(f"measure 3 run {run + 1}/{cfg.runs}: the same payloads, nats-py alone")
            alone = run_worker(
                "baseline",
                {"payloads": str(payloads), "nats_url": nats_url, "pause": 0.5 if cfg.quick else 3},
            )
            results[-1].update(baseline_seconds=alone["seconds"], baseline_stored=alone["stored"])
    sim.reset()
    drop_stream(nats_url)
    rates = [r["events"] / r["seconds"] for r in results]
    base_rates = [r["events"] / r["baseline_seconds"] for r in results]
    ratios = [a / b for a, b in zip(rates, base_rates, strict=True)]
    lost = max(r["events"] - r["stored"] for r in results)
    base_lost = max(r["events"] - r["baseline_stored"] for r in results)
    expected = all(r["events"] >= cfg.jobs for r in results)
    drained = all(r["outbox_depth"] == 0 and r["flushed"] for r in results)
    ratio = stats.median(ratios)
    notes = []
    first = stats.median(r["phases"]["first_saved"] for r in results)
    commit = stats.median(r["phases"]["committed"] for r in results)
    total = stats.median(r["seconds"] for r in results)
    nats_py = stats.median(r["baseline_seconds"] for r in results)
    # Always said: where the time goes (the first transaction is all that publishing
    # waits for; the rest of the commit overlaps with it).
    notes.append(
        f"of the {_fmt_s(total)} from the commit to the last ack: the first transaction "
        f"(about {EVENTS_PER_TRANSACTION // 10:,} events with their jobs' states, fsync'd) "
        f"{_fmt_s(first)}, all of them {_fmt_s(commit)}; then publishing continues on its own "
        f"for {_fmt_s(max(0.0, total - commit))}; nats-py alone takes {_fmt_s(nats_py)}"
    )
    if lost or not drained:
        notes.append(f"{lost} event(s) missing from the stream, outbox drained: {drained}")
    if not expected:
        notes.append(f"fewer events than jobs: {[r['events'] for r in results]}")
    return [
        Row(
            "3",
            f"event storm, {results[0]['events']:,} events, outbox -> JetStream",
            f"{_fmt_n(stats.median(rates))} events/s, {lost} lost",
            f"{_fmt_n(stats.median(base_rates))} events/s, {base_lost} lost (nats-py)",
            f"{ratio:.2f}x",
            ">= 0.7x, none lost",
            ratio >= 0.7 and lost == 0 and drained and expected,
            "; ".join(notes),
            {"runs": results, "ratios": ratios},
        )
    ]


# -- measure 4: detection latency ---------------------------------------------------------


def latency(cfg: Config, sim: SimProcess, nats_url: str) -> list[Row]:
    """Measure 4 twice: events page by page (the default), then after the whole listing."""
    rows = []
    for emit in ("page", "listing"):
        sim.reset()
        drop_stream(nats_url)
        try:
            with scratch() as folder:
                rows += asyncio.run(_latency(cfg, sim, nats_url, folder, emit))
        finally:
            sim.reset()
            drop_stream(nats_url)
    return rows


async def _latency(
    cfg: Config, sim: SimProcess, nats_url: str, folder: Path, emit: str
) -> list[Row]:
    import httpx
    import nats

    received: dict[str, float] = {}
    waiting: set[str] = set()
    all_in = asyncio.Event()
    discovered = 0

    async def on_message(msg: Any) -> None:
        nonlocal discovered
        now = time.monotonic()
        kind = msg.subject.rsplit(".", 1)[-1]
        if kind == "discovered":
            discovered += 1
        elif kind == "status_changed":
            data = json.loads(msg.data)["data"]
            key = f"{data['job_id']}/{data['direction']}"
            received.setdefault(key, now)
            waiting.discard(key)
            if not waiting:
                all_in.set()

    nc = await nats.connect(nats_url)
    await nc.subscribe("dts.job.>", cb=on_message)
    log_path = folder / "watcher.log"
    service = _start_service(sim, nats_url, folder, log_path, emit)
    windows: list[dict[str, Any]] = []
    try:
        log(f"measure 4 (emit={emit}): the watcher service discovers {cfg.jobs} jobs")
        deadline = time.monotonic() + 600
        while discovered < cfg.jobs:
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the watcher service did not discover the jobs: {log_path}")
            await asyncio.sleep(0.2)
        await _wait_cycles(log_path, 2)
        specs = workload.build_jobs(cfg.jobs, sim.regions)
        candidates = [s for s in specs if s.status == "Synchronizing" and s.direction == "Forward"]
        rng = random.Random(11)
        rng.shuffle(candidates)
        async with httpx.AsyncClient(base_url=sim.url, trust_env=False, timeout=30) as admin:
            for window in range(cfg.runs):
                log(
                    f"measure 4 (emit={emit}) run {window + 1}/{cfg.runs}: "
                    f"changes for {cfg.latency_seconds:g} s"
                )
                changed: dict[str, float] = {}
                all_in.clear()
                began = time.monotonic()
                while time.monotonic() - began < cfg.latency_seconds and candidates:
                    spec = candidates.pop()
                    # the job's id as the watcher names it (DescribeDtsJobs: its DtsJobId)
                    job_id = spec.id if _PASS["api"] == APIS["legacy"] else spec.dts_job_id
                    key = f"{job_id}/Forward"
                    waiting.add(key)
                    all_in.clear()
                    at = time.monotonic()
                    response = await admin.patch(
                        f"/_sim/jobs/{spec.id}", json={"status": "Suspending"}
                    )
                    response.raise_for_status()
                    changed[key] = at
                    await asyncio.sleep(rng.uniform(0.05, 0.5))
                ended = time.monotonic()
                # Everything changed should be out within two cycles; wait for stragglers.
                if waiting:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(all_in.wait(), 60)
                samples = [received.get(k, math.inf) - at for k, at in changed.items()]
                cycles = [
                    c["duration_seconds"]
                    for c in _cycle_lines(log_path)
                    if began - 10 <= c["at"] <= ended + 10
                ]
                windows.append({"samples": samples, "cycle_walls": cycles})
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        await nc.close()
    p99s = [stats.percentile(w["samples"], 99) for w in windows]
    budgets = [INTERVAL + stats.median(w["cycle_walls"]) for w in windows]
    ratios = [p / b for p, b in zip(p99s, budgets, strict=True)]
    lost = sum(1 for w in windows for s in w["samples"] if math.isinf(s))
    count = sum(len(w["samples"]) for w in windows)
    ratio = stats.median(ratios)
    cycle = stats.median(c for w in windows for c in w["cycle_walls"])
    note = ""
    if lost:
        note = f"{lost} change(s) never announced within 60 s. "
    if ratio > 1 and cycle > INTERVAL and emit == "listing":
        note += _latency_note(cfg, cycle)
    return [
        Row(
            "4a" if emit == "page" else "4b",
            f"detection latency p99, poll.emit={emit}"
            f"{' (default)' if emit == 'page' else ''} ({count} changes, interval "
            f"{INTERVAL:g} s)",
            _fmt_s(stats.median(p99s)) + (f", {lost} lost" if lost else ""),
            f"{_fmt_s(stats.median(budgets))} (interval + cycle {_fmt_s(cycle)})",
            f"{ratio:.2f}x",
            "<= 1.00x",
            ratio <= 1 and lost == 0,
            note,
            {
                "p99": p99s,
                "budget": budgets,
                "median": [stats.median(w["samples"]) for w in windows],
                "max": [max(w["samples"]) for w in windows],
                "cycle": cycle,
            },
        )
    ]


def _start_service(
    sim: SimProcess, nats_url: str, folder: Path, log_path: Path, emit: str
) -> subprocess.Popen[bytes]:
    """`dts-watcher run`, configured the documented way (environment variables)."""
    from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    env = clean_env()
    env.update(
        {
            "DTS_WATCHER_DTS__ENDPOINT": sim.url,
            "DTS_WATCHER_DTS__REGIONS": json.dumps(sim.regions),
            "DTS_WATCHER_DTS__RATE_LIMIT": str(RATE_LIMIT),
            "DTS_WATCHER_DTS__API": _PASS["api"],
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            "DTS_WATCHER_NATS__URL": nats_url,
            "DTS_WATCHER_POLL__INTERVAL": str(INTERVAL),
            "DTS_WATCHER_POLL__JITTER": "0",
            "DTS_WATCHER_STATE__PATH": str(folder / "state.sqlite3"),
            "DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL": "0",
            "DTS_WATCHER_LOG__FORMAT": "json",
        }
    )
    if emit != "page":  # page by page is the default: 4a runs with the defaults
        env["DTS_WATCHER_POLL__EMIT"] = emit
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "watcher", "run"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _latency_note(cfg: Config, cycle: float) -> str:
    regions = workload.regions_for(cfg.regions)
    pages = max(workload.pages_per_region(cfg.jobs, regions, _PASS["api"]).values())
    floor = pages / RATE_LIMIT
    return (
        f"a complete listing needs {pages} requests per region; at {RATE_LIMIT} requests/s "
        f"(DTS's per-region ceiling) that is >= {floor:.2f} s, so the cycle ({cycle:.2f} s) "
        f"outlasts the {INTERVAL:g} s interval and cycles run back to back: a change waits "
        "up to one cycle for its page to be read again, then up to one cycle for the "
        "listing to complete (p99 ~1.86 cycles, not interval + 1 cycle); poll.emit=page "
        "(the default) sends each page's events without waiting for the rest (4a)"
    )


def _cycle_lines(path: Path) -> list[dict[str, Any]]:
    """`cycle.done` log lines of the service, with their time as time.monotonic()."""
    from datetime import datetime

    offset = time.time() - time.monotonic()
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if '"cycle.done"' not in line:
            continue
        try:
            record = json.loads(line)
            at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError):
            continue
        out.append({"at": at - offset, "duration_seconds": record["duration_seconds"]})
    return out


async def _wait_cycles(path: Path, n: int, within: float = 600) -> None:
    deadline = time.monotonic() + within
    start = len(_cycle_lines(path))
    while len(_cycle_lines(path)) < start + n:
        if time.monotonic() > deadline:
            raise RuntimeError("the watcher service stopped completing cycles")
        await asyncio.sleep(0.2)


# -- measure 5: memory --------------------------------------------------------------------


def memory(cfg: Config, sim: SimProcess, nats_url: str) -> list[Row]:
    unpaced = 10_000.0
    with scratch() as folder:
        sim.reset()
        drop_stream(nats_url)
        log(f"measure 5: peak RSS with {cfg.jobs} jobs tracked")
        peak = run_worker(
            "memory",
            {
                "url": sim.url,
                "regions": sim.regions,
                "nats_url": nats_url,
                "state_dir": str(folder),
                "unpaced_rate": unpaced,
                "warm": 5,
                "cycles": 5,
            },
        )
    growth_sim = sim if cfg.growth_jobs == cfg.jobs else SimProcess(cfg.growth_jobs, cfg.regions)
    try:
        if growth_sim is not sim:
            growth_sim.start()
        with scratch() as folder:
            drop_stream(nats_url)
            log(f"measure 5: RSS over {cfg.growth_cycles} steady cycles ({cfg.growth_jobs} jobs)")
            growth = run_worker(
                "memory",
                {
                    "url": growth_sim.url,
                    "regions": growth_sim.regions,
                    "nats_url": nats_url,
                    "state_dir": str(folder),
                    "unpaced_rate": unpaced,
                    "warm": 10,
                    "cycles": cfg.growth_cycles,
                },
            )
    finally:
        if growth_sim is not sim:
            growth_sim.stop()
    drop_stream(nats_url)
    above = (peak["peak_kib"] - peak["start_kib"]) / 1024
    grew = (growth["end_kib"] - growth["warm_kib"]) / 1024
    start_mb = peak["start_kib"] / 1024
    return [
        Row(
            "5a",
            f"peak RSS above start, {peak['tracked']:,} jobs tracked",
            f"{above:.0f} MB",
            f"{start_mb:.0f} MB (the process right after start)",
            f"+{above / start_mb:.2f}x",
            "<= 150 MB above",
            above <= 150,
            "",
            peak,
        ),
        Row(
            "5b",
            f"RSS growth over {cfg.growth_cycles} steady cycles ({growth['tracked']:,} jobs)",
            f"{grew:+.1f} MB",
            f"{growth['warm_kib'] / 1024:.0f} MB (after 10 warm-up cycles)",
            f"{grew / (growth['warm_kib'] / 1024):+.3f}x",
            "< 5 MB",
            grew < 5,
            "",
            growth,
        ),
    ]


# -- measure 8: scale ---------------------------------------------------------------------


def scale(cfg: Config, nats_url: str) -> list[Row]:
    """The watcher at `scale_jobs` jobs over accounts x regions shards: resident memory
    per tracked job, and the CPU of a steady and of a moving cycle against the
    synchronous floor at that size (its own simulator, its own runs)."""
    shards = cfg.scale_accounts * cfg.scale_regions
    log(f"measure 8: starting a simulator with {cfg.scale_jobs} jobs over {shards} shards")
    sim = SimProcess(cfg.scale_jobs, cfg.scale_regions, accounts=cfg.scale_accounts).start()
    runs: list[dict[str, Any]] = []
    try:
        base = {
            "url": sim.url,
            "regions": sim.regions,
            "shards": sim.shards,
            "nats_url": nats_url,
            "rate_limit": RATE_LIMIT,
            "cycles": cfg.scale_cycles,
            "moving": cfg.scale_cycles,
            "warm": 1,
        }
        for run in range(cfg.runs):
            out: dict[str, Any] = {}
            for mode in ("steady", "floor"):
                with scratch() as folder:
                    sim.reset()
                    drop_stream(nats_url)
                    log(f"measure 8 run {run + 1}/{cfg.runs}: {mode}, {cfg.scale_jobs} jobs")
                    out[mode] = run_worker(
                        mode, {**base, "state_dir": str(folder), "sync_only": True}
                    )
            runs.append(out)
    finally:
        sim.stop()
        drop_stream(nats_url)
    tracked = stats.median(r["steady"]["tracked"] for r in runs)
    start = stats.median(r["steady"]["rss"]["start_kib"] for r in runs)
    per_job = [
        1024
        * (r["steady"]["rss"]["moving_kib"] - r["steady"]["rss"]["start_kib"])
        / max(1, r["steady"]["tracked"])
        for r in runs
    ]
    resident = stats.median(per_job)
    cpu: dict[str, list[float]] = {
        part: [stats.median(c["cpu"] for c in r["steady"][key]) for r in runs]
        for part, key in (("steady", "cycles"), ("moving", "moving_cycles"))
    }
    sync = [stats.median(c["cpu"] for c in r["floor"]["sync_cycles"]) for r in runs]
    judged = [stats.median(c["judging"] for c in r["steady"]["moving_cycles"]) for r in runs]
    quiet = all(
        c["complete"] and c["events"] == 0
        for r in runs
        for c in (*r["steady"]["cycles"], *r["steady"]["moving_cycles"])
    )
    loud = _loud_cycles(
        c for r in runs for c in (*r["steady"]["cycles"], *r["steady"]["moving_cycles"])
    )
    where = f"{cfg.scale_jobs:,} jobs over {shards} shards"
    rows = [
        Row(
            "8a",
            f"resident memory per tracked job, {where}",
            f"{resident / 1024:.2f} KB",
            f"{start / 1024:.0f} MB: the process right after start",
            f"{tracked:,.0f} jobs",
            "<= 5 KB",
            resident <= 5 * 1024,
            "(RSS after the moving cycles - RSS at start) / jobs tracked",
            {"per_job_bytes": per_job, "runs": [r["steady"]["rss"] for r in runs]},
        )
    ]
    for number, part, measure in (
        ("8b", "steady", "CPU time of a steady cycle"),
        ("8c", "moving", "CPU time of a cycle in which every delay moved"),
    ):
        ratios = [w / f for w, f in zip(cpu[part], sync, strict=True)]
        rows.append(
            Row(
                number,
                f"{measure}, {where}",
                _fmt_s(stats.median(cpu[part])),
                f"{_fmt_s(stats.median(sync))} (sync httpx + json.loads floor)",
                f"{stats.median(ratios):.2f}x",
                "(reported)",
                None if quiet else False,
                "" if quiet else f"a measured cycle was incomplete or produced events: {loud}",
                {"watcher_cpu": cpu[part], "sync_floor_cpu": sync, "ratios": ratios},
            )
        )
    per = 1e6 * stats.median(judged) / max(1.0, tracked)
    rows.append(
        Row(
            "8d",
            f"judging (PageByPage / detect) in a moving cycle, {where}",
            _fmt_s(stats.median(judged)),
            f"{_fmt_s(stats.median(cpu['moving']))}: the whole cycle",
            f"{per:.1f} µs/job",
            "(reported)",
            None,
            "",
            {"judging": judged},
        )
    )
    return rows


def cluster(cfg: Config) -> list[Row]:
    """Several replicas (`benchmarks.cluster_replicas`, in a process of its own: three
    replicas, a three-node NATS cluster): a SIGKILLed replica's shards held again and its
    changed jobs' first event, against the lease TTL plus a poll interval; what cluster
    mode adds to NATS traffic per replica and cycle."""
    log(f"measure 9: three replicas on a three-node NATS cluster ({cfg.cluster})")
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster_replicas", *cfg.cluster.split(), "--json"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"cluster_replicas failed:\n{process.stderr[-4000:]}")
    r: dict[str, Any] = json.loads(lines[-1])
    budget = r["ttl"] + r["interval"]
    kills = r["kills"]
    held = stats.median(k["kill_to_all_held"] for k in kills)
    first = stats.median(k["kill_to_first_event"] for k in kills)
    runs = f"median of {len(kills)} kill(s)"
    rows = [
        Row(
            "9a",
            f"replica SIGKILLed -> every shard it held held again ({runs})",
            _fmt_s(held),
            f"{_fmt_s(budget)}: lease TTL + poll interval",
            f"{held / budget:.2f}x",
            "<= 1x",
            held <= budget,
            "",
            {"kills": kills},
        ),
        Row(
            "9b",
            f"replica SIGKILLed -> first event of a job changed just before ({runs})",
            _fmt_s(first),
            f"{_fmt_s(budget + r['interval'])}: lease TTL + two poll intervals",
            f"{first / (budget + r['interval']):.2f}x",
            "(reported)",
            None,
            "the takeover, the shard read in, then the new holder's next cycle",
            {"kills": kills},
        ),
    ]
    for number, part, what in (
        ("9c", "steady", "nothing changing"),
        ("9d", "changing", "one job changing per shard"),
    ):
        t = r[part]
        # /connz counts as the server sees it: what it took in, the replica sent
        sent = t["cluster_conn_in_msgs"], t["cluster_conn_in_bytes"] / 1024
        got = t["cluster_conn_out_msgs"], t["cluster_conn_out_bytes"] / 1024
        wide = (
            t["cluster_wide_in_msgs"] + t["cluster_wide_out_msgs"],
            (t["cluster_wide_in_bytes"] + t["cluster_wide_out_bytes"]) / 1024,
        )
        rows.append(
            Row(
                number,
                f"cluster mode's NATS traffic per replica and cycle, {what}",
                f"{sent[0]:.0f} msgs / {sent[1]:.1f} KB sent, {got[0]:.0f} / {got[1]:.1f} KB in",
                f"{wide[0]:.0f} msgs / {wide[1]:.1f} KB: the whole cluster beyond idle",
                f"{t['cycles']:.0f} cycles",
                "(reported)",
                None,
                f"{r['regions']} shards of {r['jobs']} jobs over 3 replicas",
                t,
            )
        )
    return rows


# -- the table ----------------------------------------------------------------------------

HEADERS = ("#", "measure", "value", "baseline (same run)", "ratio", "target", "met")


def table(rows: list[Row]) -> str:
    cells = [
        (
            r.number,
            r.measure,
            r.value,
            r.baseline,
            r.ratio,
            r.target,
            "n/a" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    notes = [f"[{r.number}] {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def _loud_cycles(cycles: Any) -> str:
    """What made measured cycles incomplete or eventful: the first few reasons and kinds."""
    said: list[str] = []
    for c in cycles:
        if not c["complete"]:
            said += [f"incomplete ({reason})" for reason in c.get("reasons") or ["no reason"]]
        if c["events"]:
            said.append(f"{c['events']} events ({', '.join(c.get('kinds') or [])})")
    return "; ".join(dict.fromkeys(said)) or "none"


def machine() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="dts-watcher's performance, as ratios against baselines measured in the "
        "same run (README, section Performance).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run (CI keeps the runner working)"
    )
    parser.add_argument("--runs", type=int, help="runs per measure; figures are medians")
    parser.add_argument(
        "--only",
        type=lambda text: [int(n) for n in text.split(",") if n.strip()],
        help="comma-separated measure numbers, e.g. 1,3",
    )
    parser.add_argument("--jobs", type=int, help="jobs the simulator serves (default 10000)")
    parser.add_argument(
        "--scale-jobs",
        type=int,
        help="jobs of measure 8, over 2 accounts x 5 regions (default 100000)",
    )
    parser.add_argument(
        "--api",
        choices=["legacy", "dtsjobs", "both"],
        default="both",
        help="the listing API the watcher reads: DescribeSynchronizationJobs, DescribeDtsJobs "
        "(all three job types, rows D1...), or both in turn (default)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also record py-spy profiles (steady cycles, the storm) and their summaries "
        "into DIR; the profiled runs are slower, so their figures are not comparable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.from_args(args)
    if cfg.profile is not None:
        cfg.profile.mkdir(parents=True, exist_ok=True)
        cfg.profile = cfg.profile.resolve()
    from dts_sim.natsserver import NatsServer

    started = time.monotonic()
    rows: list[Row] = []
    needs_sim = cfg.only & {1, 3, 4, 5, 6, 7}  # 8 and 9 start their own
    with NatsServer() as nats_server:
        sim = SimProcess(cfg.jobs, cfg.regions)
        if needs_sim:
            log(f"starting the simulator with {cfg.jobs} jobs over {cfg.regions} regions")
            sim.start()
        try:
            plan: list[tuple[set[int], Callable[[], list[Row]]]] = [
                ({1, 6, 7}, lambda: steady(cfg, sim, nats_server.url)),
                ({2}, lambda: detection(cfg)),
                ({3}, lambda: storm(cfg, sim, nats_server.url)),
                ({4}, lambda: latency(cfg, sim, nats_server.url)),
                ({5}, lambda: memory(cfg, sim, nats_server.url)),
                ({8}, lambda: scale(cfg, nats_server.url)),
                ({9}, lambda: cluster(cfg)),
            ]
            for n, api in enumerate(cfg.apis):
                _PASS["api"] = api
                log(f"pass {n + 1}/{len(cfg.apis)}: the watcher reads {api}")
                for measures, run in plan:
                    if measures in ({2}, {9}) and n:
                        continue  # detection alone, several replicas: once is enough
                    if measures == {8} and n and cfg.quick:
                        continue  # the runner keeps working with one pass of it
                    if cfg.only & measures:
                        found = run()
                        for row in found:
                            row.api = api
                            if api != APIS["legacy"]:
                                row.number = f"D{row.number}"
                        rows += found
        finally:
            sim.stop()
    rows.sort(key=lambda r: (r.number.startswith("D"), r.number))
    elapsed = time.monotonic() - started
    print(
        f"dts-watcher benchmarks: {cfg.jobs:,} jobs over {cfg.regions} regions, "
        f"{'quick, ' if cfg.quick else ''}median of {cfg.runs} run(s), {machine()}, "
        f"{elapsed:.0f} s"
    )
    print(table(rows))
    comparison = compare_apis(rows)
    if comparison:
        print(comparison)
    if args.json:
        print(json.dumps({"config": _jsonable(asdict(cfg)), "rows": [asdict(r) for r in rows]}))
    return 0  # a target not met is a finding, reported in the table, not a failed run


def compare_apis(rows: list[Row]) -> str:
    """The two APIs' cost per steady cycle side by side (measures 1 and 6a)."""
    cost: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = row.number.removeprefix("D")
        if name == "1":
            cost.setdefault(row.api, {})["cpu"] = row.value
            cost[row.api]["wall"] = _fmt_s(float(row.raw.get("cycle_wall", 0.0)))
        elif name == "6a":
            per_cycle = row.raw.get("per_cycle") or [{}]
            cost.setdefault(row.api, {})["requests"] = stats.median(
                sum(c.values()) for c in per_cycle
            )
    if len(cost) < 2:
        return ""
    lines = ["", "cost of a steady cycle, per listing API (all regions):"]
    for api, c in cost.items():
        lines.append(
            f"  {api:<28} CPU {c.get('cpu', '?'):>9}  wall {c.get('wall', '?'):>9}  "
            f"requests {c.get('requests', '?')}"
        )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
