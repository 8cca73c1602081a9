"""The measured side of the benchmarks: one process per run, so its CPU time and memory
are its own (the simulator and nats-server run in other processes).

Run as `python -m benchmarks.worker MODE CONFIG_JSON`; it prints one JSON line with what
it measured. Modes:

- `steady`: the real watcher (`open_watcher`, `Watcher.cycle`, the publisher's drain)
  discovers every job, then runs steady cycles (nothing changes); per cycle, the CPU
  time of this process and the cycle's time window (for the simulator's request log).
- `floor`: the same page requests, at the same pace, with a bare httpx client and
  `json.loads` of each body, nothing else (signed ahead of time, outside the measured
  window).
- `storm`: the watcher discovers every job, the simulator fails them all at once, and
  the watcher's next cycle sends one event per job through the outbox into JetStream.
  Then the baseline: nats-py publishing the same payloads with pipelined async
  JetStream publishes, no outbox.
- `memory`: RSS right after start, the peak with every job tracked, and RSS over many
  steady cycles.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from watcher.heap import Heap

_HEAP = Heap()  # settles as the service does after every cycle


def rss_kib() -> int:
    """Resident set size now, from /proc/self/status (KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far (KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def shards_of(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """The (account, region) shards the workload is served in (cfg "shards"; without
    them, the default account's `regions`)."""
    if cfg.get("shards"):
        return [(account, region) for account, region in cfg["shards"]]
    return [("default", region) for region in cfg["regions"]]


def settings_for(cfg: dict[str, Any]) -> Any:
    """The watcher's settings for the workload: its defaults but for where things are;
    accounts other than the default are reached by assuming their role (the simulator's
    STS), as in production."""
    from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
    from dts_sim.accounts import role_arn
    from watcher.settings import Settings

    shards = shards_of(cfg)
    accounts: dict[str, list[str]] = {}
    for account, region in shards:
        accounts.setdefault(account, []).append(region)
    extra: dict[str, Any] = {}
    if set(accounts) != {"default"}:
        extra["accounts"] = [
            {"name": name, "regions": regions, "role_arn": role_arn(name)}
            for name, regions in accounts.items()
        ]
    return Settings(
        dts={
            "regions": accounts.get("default") or cfg["regions"],
            "api": cfg.get("api", "DescribeSynchronizationJobs"),
            "endpoint": cfg["url"],
            "rate_limit": cfg.get("rate_limit", 20),
            "timeout": 30,
            "backoff_initial": 0.05,
            "backoff_max": 1,
            "max_concurrent_regions": max(4, len(shards)),
        },
        credentials={
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "access_key_secret": DEFAULT_ACCESS_KEY_SECRET,
            "sts_endpoint": cfg["url"],
        },
        nats={"url": cfg["nats_url"], "connect_timeout": 5, "publish_timeout": 30},
        poll={"interval": 1, "jitter": 0, **({"emit": cfg["emit"]} if "emit" in cfg else {})},
        state={"path": Path(cfg["state_dir"]) / "state.sqlite3"},
        health={"heartbeat_interval": 0},
        log={"level": "info", "format": "json"},
        **extra,
    )


def _configure_logs(cfg: dict[str, Any]) -> None:
    from watcher.logs import configure

    # JSON lines into a file: the real formatting cost, without a terminal's.
    stream = (Path(cfg["state_dir"]) / "watcher.log").open("a", encoding="utf-8")
    configure("info", "json", stream=stream)


async def _discover(watcher: Any) -> int:
    """The first cycle: every job discovered, and the events published."""

    result = await watcher.cycle()
    if not result.complete:
        raise RuntimeError(f"discovery cycle incomplete: {result.reasons}")
    if not await watcher.flush(within=600):
        raise RuntimeError("discovery events were not all acknowledged")
    _HEAP.settle()  # as the service does after every cycle
    return len(result.events)


class Profile:
    """py-spy recording this very process while the measured part runs (cfg "profile":
    the output file, collapsed stacks); nothing at all when not asked for."""

    def __init__(self, cfg: dict[str, Any], key: str = "profile") -> None:
        self._out = cfg.get(key)
        self._idle = bool(cfg.get("profile_idle"))  # sample waiting too: a wall-clock view
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        if self._out:
            spy = Path(sys.executable).with_name("py-spy")
            self._process = subprocess.Popen(
                [
                    *(str(spy), "record", "--pid", str(os.getpid()), "--rate", "250"),
                    *("--threads", "--format", "raw", "--output", str(self._out)),
                    *(["--idle"] if self._idle else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let it attach before the measured part starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl+C
            self._process.wait(60)


# -- steady -----------------------------------------------------------------------------


class Shares:
    """CPU time (of the calling thread) spent in named parts of the watcher while it is
    installed: where a cycle's CPU goes, without a profiler's own cost. What is left of
    the cycle's CPU is the HTTP client, the event loop and the rest."""

    # (part, module, attribute path): what is timed, where it exists (an older watcher,
    # measured for the README's "before", lacks some).
    PARTS = (
        ("judging", "watcher.cycle", "PageByPage.judge"),
        ("judging", "watcher.cycle", "PageByPage.finish"),
        ("judging", "watcher.cycle", "detect"),
        ("decoding", "watcher.dts.page_cache", "decode"),
        ("decoding", "watcher.dts.page_cache", "fingerprint"),
        ("decoding", "watcher.dts.client", "decode"),  # before the page cache
        ("parsing", "watcher.dts.apis", "LegacyApi.parse"),
        ("parsing", "watcher.dts.apis", "DtsJobsApi.parse"),
        ("signing", "watcher.dts.client", "DtsClient._signed"),
        ("saving", "watcher.store.sqlite", "Store._write"),
        ("saving", "watcher.store.saved", "SavedRows.changed"),
        ("saving", "watcher.store.sqlite", "Store._changed"),  # before SavedRows
    )

    def __init__(self) -> None:
        import importlib

        self.seconds: dict[str, float] = {}
        self._patched: list[tuple[Any, str, Any]] = []
        self._parts: list[tuple[str, Any, str]] = []
        for part, module, path in self.PARTS:
            try:
                owner: Any = importlib.import_module(module)
            except ImportError:
                continue
            *outer, name = path.split(".")
            for step in outer:
                owner = getattr(owner, step, None)
            if owner is not None and name in vars(owner):
                self._parts.append((part, owner, name))

    def _timed(self, part: str, call: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.add(part, time.thread_time() - began)

        return timed

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def __enter__(self) -> Shares:
        for part, owner, name in self._parts:
            original = owner.__dict__[name]
            self._patched.append((owner, name, original))
            setattr(owner, name, self._timed(part, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()


async def _measured_cycles(
    watcher: Any, cfg: dict[str, Any], count: int, tick: bool
) -> list[dict[str, Any]]:
    """`count` cycles as the service runs them, each measured: its CPU time (commit,
    publisher's drain and after-cycle collection included) and its time window; with
    `tick`, every job's delay and checkpoint move before each (`/_sim/tick`, outside the
    measured window)."""
    out = []
    async with httpx.AsyncClient(trust_env=False, timeout=120) as admin:
        for _ in range(count):
            if tick:
                call = await admin.post(f"{cfg['url']}/_sim/tick", json={"n": 1})
                call.raise_for_status()
            with Shares() as shares:
                began = time.monotonic()
                cpu = time.process_time()
                result = await watcher.cycle()
                await watcher.publisher.drain()  # what the service's publisher does after it
                settling = time.thread_time()
                _HEAP.settle()  # and what the service does after every cycle
                shares.add("collecting", time.thread_time() - settling)
                cpu = time.process_time() - cpu
                ended = time.monotonic()
            out.append(
                {
                    "cpu": cpu,
                    "judging": shares.seconds.get("judging", 0.0),
                    "shares": shares.seconds,
                    "wall": ended - began,
                    "start": began,
                    "end": ended,
                    "events": len(result.events),
                    "complete": result.complete,
                    "jobs": len(result.snapshot),
                    # Why a cycle was not quiet, for the report (a few of each).
                    "reasons": [f"{k}: {v}"[:200] for k, v in result.reasons.items()][:3],
                    "kinds": sorted({e.kind for e in result.events})[:5],
                }
            )
    return out


async def steady(cfg: dict[str, Any]) -> dict[str, Any]:
    """Steady cycles (nothing moves), then, with cfg "moving", cycles in which every
    job's delay and checkpoint moved (`moving` of them, after `warm` more); RSS at start
    and after each part (`rss`)."""
    from watcher.service import open_watcher

    _configure_logs(cfg)
    out: dict[str, Any] = {"cycles": [], "moving_cycles": [], "rss": {}}
    warm = cfg.get("warm", 1)
    out["sent"] = _record_sends()
    async with open_watcher(settings_for(cfg)) as watcher:
        gc.collect()
        out["rss"]["start_kib"] = rss_kib()
        began = time.process_time()
        out["discovered"] = await _discover(watcher)
        out["discovery_cpu"] = time.process_time() - began
        await _measured_cycles(watcher, cfg, warm, tick=False)
        with Profile(cfg, "profile"):
            out["cycles"] = await _measured_cycles(watcher, cfg, cfg["cycles"], tick=False)
        out["rss"]["steady_kib"] = rss_kib()
        if cfg.get("moving"):
            await _measured_cycles(watcher, cfg, warm, tick=True)
            with Profile(cfg, "moving_profile"):
                out["moving_cycles"] = await _measured_cycles(
                    watcher, cfg, cfg["moving"], tick=True
                )
            out["rss"]["moving_kib"] = rss_kib()
        out["tracked"] = len(watcher.baseline or ())
    out["rss"]["peak_kib"] = peak_rss_kib()
    return out


def _record_sends() -> dict[str, list[float]]:
    """The watcher's own record of when each request went out, per region: the moment
    its headers were written (what the pacing counts from), beside the simulator's
    record of arrivals (measure 6b), which a busy 2-core machine can bunch."""
    import watcher.dts.client

    sent: dict[str, list[float]] = {}
    exchange = watcher.dts.client.exchange

    async def recording(
        http: Any, request: Any, region: str, counts: Any, settings: Any, on_sent: Any = None
    ) -> Any:
        def noted() -> None:
            sent.setdefault(region, []).append(time.monotonic())
            if on_sent is not None:
                on_sent()

        return await exchange(http, request, region, counts, settings, noted)

    watcher.dts.client.exchange = recording  # type: ignore[assignment]
    return sent


# -- floor ------------------------------------------------------------------------------

LEGACY_ACTION = "DescribeSynchronizationJobs"


def _signed(
    cfg: dict[str, Any], shard: tuple[str, str], params: dict[str, str], action: str
) -> tuple[str, dict[str, str]]:
    """A request signed as the watcher signs it, with the shard's account's own key."""
    from dts_sim.accounts import account_keys
    from watcher.dts import signing

    key_id, secret = account_keys(shard[0])
    scheme, _, host = cfg["url"].partition("://")
    request = signing.sign_request(
        method="GET",
        host=host,
        scheme=scheme,
        action=action,
        params={"RegionId": shard[1], **params},
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=None,
        now=datetime.now(UTC),
        nonce=uuid.uuid4().hex,
    )
    return request.url, request.headers


def _listings(api: str) -> list[tuple[str | None, int]]:
    """The listings a shard is read with (DescribeDtsJobs: one per job type) and their
    page sizes, as the watcher reads them."""
    if api == LEGACY_ACTION:
        return [(None, 30)]
    return [(job_type, 100) for job_type in ("SYNC", "MIGRATION", "SUBSCRIBE")]


def _page_params(api: str, job_type: str | None, size: int, number: int) -> dict[str, str]:
    if api == LEGACY_ACTION:
        return {"PageSize": str(size), "PageNum": str(number)}
    return {"PageSize": str(size), "PageNumber": str(number), "JobType": str(job_type)}


def _pages(cfg: dict[str, Any], api: str) -> dict[tuple[str, str], list[dict[str, str]]]:
    """Every page request of one complete read, per shard (counted with one request per
    listing beforehand, not measured)."""
    out: dict[tuple[str, str], list[dict[str, str]]] = {}
    with httpx.Client(trust_env=False, timeout=30) as client:
        for shard in shards_of(cfg):
            requests: list[dict[str, str]] = []
            for job_type, size in _listings(api):
                url, headers = _signed(cfg, shard, _page_params(api, job_type, size, 1), api)
                total = json.loads(client.get(url, headers=headers).content)["TotalRecordCount"]
                requests += [
                    _page_params(api, job_type, size, n)
                    for n in range(1, max(1, math.ceil(total / size)) + 1)
                ]
            out[shard] = requests
    return out


async def floor(cfg: dict[str, Any]) -> dict[str, Any]:
    """The two floors, one after the other in this process.

    Paced async (`cycles`): the legacy listing's page requests as the watcher makes them
    (page 1, then the rest four at a time per shard, shards at once, each shard's starts
    spaced at the watcher's pace: DTS's rate limit applies to any client), with nothing
    but httpx and json.loads.

    Synchronous (`sync_cycles`): the very requests the watcher sends for its listing API
    (`api`), each shard's at the watcher's pace, sent in sequence with a plain
    `httpx.Client`, each body decoded with `json.loads`, nothing else.

    Both signed beforehand, outside the measured window.
    """
    from watcher.dts.client import PACE

    in_flight = 4
    spacing = 1 / (cfg["rate_limit"] * PACE)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    out: dict[str, Any] = {"cycles": [], "sync_cycles": []}
    if cfg.get("sync_only"):
        out["sync_cycles"] = sync_floor(cfg, spacing)
        return out
    pages = _pages(cfg, LEGACY_ACTION)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:

        async def one_shard(signed: list[tuple[str, dict[str, str]]]) -> int:
            began = time.monotonic()
            url, headers = signed[0]
            json.loads((await client.get(url, headers=headers)).content)
            gate = asyncio.Semaphore(in_flight)

            async def page(n: int, url: str, headers: dict[str, str]) -> None:
                async with gate:
                    await asyncio.sleep(max(0.0, began + n * spacing - time.monotonic()))
                    json.loads((await client.get(url, headers=headers)).content)

            await asyncio.gather(*(page(n, u, h) for n, (u, h) in enumerate(signed) if n))
            return len(signed)

        for _ in range(cfg.get("warm", 1) + cfg["cycles"]):
            signed = {
                shard: [_signed(cfg, shard, p, LEGACY_ACTION) for p in requests]
                for shard, requests in pages.items()
            }
            gc.collect()
            began = time.monotonic()
            cpu = time.process_time()
            counts = await asyncio.gather(*(one_shard(signed[shard]) for shard in pages))
            cpu = time.process_time() - cpu
            out["cycles"].append(
                {"cpu": cpu, "wall": time.monotonic() - began, "requests": sum(counts)}
            )
    out["cycles"] = out["cycles"][cfg.get("warm", 1) :]
    out["sync_cycles"] = sync_floor(cfg, spacing)
    return out


def sync_floor(cfg: dict[str, Any], spacing: float) -> list[dict[str, Any]]:
    """The synchronous floor's cycles (see `floor`)."""
    api = cfg.get("api", LEGACY_ACTION)
    pages = _pages(cfg, api)
    cycles = []
    with httpx.Client(trust_env=False, timeout=30) as client:
        for _ in range(cfg.get("warm", 1) + cfg["cycles"]):
            # In sequence, the shards' requests interleaved, each sent when its shard's
            # pace allows (as the watcher's are, in parallel).
            due: list[tuple[int, int, str, dict[str, str]]] = []
            for s_index, (shard, requests) in enumerate(pages.items()):
                for n, params in enumerate(requests):
                    due.append((n, s_index, *_signed(cfg, shard, params, api)))
            due.sort(key=lambda item: (item[0], item[1]))
            gc.collect()
            began = time.monotonic()
            cpu = time.process_time()
            for n, _, url, headers in due:
                wait = began + n * spacing - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                json.loads(client.get(url, headers=headers).content)
            cpu = time.process_time() - cpu
            cycles.append({"cpu": cpu, "wall": time.monotonic() - began, "requests": len(due)})
    return cycles[cfg.get("warm", 1) :]


# -- storm ------------------------------------------------------------------------------


async def _count_stored(nc: Any, stream: str, subject_filter: str) -> int:
    info = await nc.jetstream().stream_info(stream, subjects_filter=subject_filter)
    return int(sum((info.state.subjects or {}).values()))


async def storm(cfg: dict[str, Any]) -> dict[str, Any]:
    import anyio
    import nats

    from watcher.service import open_watcher

    _configure_logs(cfg)
    settings = settings_for(cfg)
    prefix = settings.nats.subject_prefix
    marks: dict[str, float] = {}

    async with open_watcher(settings) as watcher:
        store, publisher = watcher.store, watcher.publisher
        commit_steps, drain = store.commit_steps, publisher.drain
        emptied = anyio.Event()

        def storm_committed() -> bool:
            return "committed" in marks or not marks.get("storm")

        def timed_commit_steps(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault("commit", time.perf_counter())  # events go into the outbox
            marks.setdefault("commit_cpu", time.process_time())
            for saved in commit_steps(*args, **kwargs):
                marks.setdefault("first_saved", time.perf_counter())
                yield saved
            marks.setdefault("committed", time.perf_counter())

        async def watched_drain(*args: Any, **kwargs: Any) -> int:
            count = await drain(*args, **kwargs)
            if storm_committed() and store.outbox_depth() == 0:
                marks["acked"] = time.perf_counter()
                marks["acked_cpu"] = time.process_time()
                emptied.set()
            return count

        publisher.drain = watched_drain  # type: ignore[method-assign]
        # As in the service: cycles on one side, the publisher draining on the other.
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.publisher.run)
            discovery = await watcher.cycle()
            if not discovery.complete:
                raise RuntimeError(f"discovery cycle incomplete: {discovery.reasons}")
            with anyio.fail_after(600):
                await emptied.wait()
            async with httpx.AsyncClient(trust_env=False, timeout=120) as admin:
                (await admin.post(f"{cfg['url']}/_sim/advance", json={"n": 1})).raise_for_status()
            emptied = anyio.Event()
            store.commit_steps = timed_commit_steps  # type: ignore[method-assign]
            marks["storm"] = 1.0
            marks.pop("acked", None)
            with Profile(cfg):
                result = await watcher.cycle()
                marks["cycle_done"] = time.perf_counter()
                with anyio.fail_after(600):
                    await emptied.wait()
            tg.cancel_scope.cancel()
        store.commit_steps = commit_steps  # type: ignore[method-assign]
        publisher.drain = drain  # type: ignore[method-assign]
        depth = store.outbox_depth()
        flushed = depth == 0
        discovered = len(discovery.events)
        events = result.events

    nc = await nats.connect(cfg["nats_url"])
    try:
        stored = await _count_stored(nc, settings.nats.stream, f"{prefix}.job.*.*.status_changed")
    finally:
        await nc.close()
    # For the baseline (another process, see `baseline`): the same payloads and headers.
    _save_messages(
        cfg["payloads"], [(e.nats_subject(prefix), e.to_json(), e.headers()) for e in events]
    )
    return {
        "discovered": discovered,
        "events": len(events),
        "complete": result.complete,
        "flushed": flushed,
        "outbox_depth": depth,
        "stored": stored,
        "seconds": marks["acked"] - marks["commit"],
        "cpu": marks["acked_cpu"] - marks["commit_cpu"],
        "phases": {  # when each part ended, from the start of the commit
            "first_saved": marks["first_saved"] - marks["commit"],
            "committed": marks["committed"] - marks["commit"],
            "acked": marks["acked"] - marks["commit"],
            "logged": marks["cycle_done"] - marks["commit"],
        },
    }


Message = tuple[str, bytes, dict[str, str]]  # subject, payload, headers


def _save_messages(path: str, messages: list[Message]) -> None:
    rows = [(subject, payload.decode(), headers) for subject, payload, headers in messages]
    Path(path).write_bytes(orjson.dumps(rows))


def _load_messages(path: str) -> list[Message]:
    rows = orjson.loads(Path(path).read_bytes())
    return [(subject, payload.encode(), headers) for subject, payload, headers in rows]


async def baseline(cfg: dict[str, Any]) -> dict[str, Any]:
    """nats-py publishing the storm's payloads with pipelined async JetStream publishes,
    no outbox: every publish sent, then every ack awaited. In a fresh process, so that it
    pays for neither the watcher's heap nor its garbage collections."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    messages = _load_messages(cfg["payloads"])
    nc = await nats.connect(cfg["nats_url"])
    try:
        js = nc.jetstream(timeout=30)
        stream = f"BENCH_BASELINE_{uuid.uuid4().hex[:8]}"
        await js.add_stream(
            StreamConfig(
                name=stream, subjects=["base.>"], storage=StorageType.FILE, duplicate_window=300
            )
        )
        # JetStream goes on writing the watcher's messages to disk for a moment after
        # the storm: measured at once, the baseline would pay for that.
        await asyncio.sleep(cfg.get("pause", 3.0))
        gc.collect()
        began = time.perf_counter()
        futures = [
            await js.publish_async(f"base.{subject}", payload, headers=headers)
            for subject, payload, headers in messages
        ]
        await asyncio.gather(*futures)
        seconds = time.perf_counter() - began
        stored = await _count_stored(nc, stream, "base.>")
        await js.delete_stream(stream)
    finally:
        await nc.close()
    return {"seconds": seconds, "events": len(messages), "stored": stored}


# -- memory -----------------------------------------------------------------------------


async def memory(cfg: dict[str, Any]) -> dict[str, Any]:
    from watcher.service import open_watcher

    _configure_logs(cfg)
    settings = settings_for(cfg)
    if "unpaced_rate" in cfg:
        # Pacing changes when requests go out, not what is kept: lifting it (past the
        # setting's own ceiling, hence model_copy) only makes 500 cycles fit in minutes.
        settings = settings.model_copy(
            update={"dts": settings.dts.model_copy(update={"rate_limit": cfg["unpaced_rate"]})}
        )
    out: dict[str, Any] = {}
    async with open_watcher(settings) as watcher:
        gc.collect()
        out["start_kib"] = rss_kib()
        out["discovered"] = await _discover(watcher)
        out["after_discovery_kib"] = rss_kib()
        samples = []
        warm = cfg.get("warm", 10)
        began = time.monotonic()
        for i in range(warm + cfg["cycles"]):
            result = await watcher.cycle()
            await watcher.publisher.drain()
            _HEAP.settle()  # as the service does after every cycle
            if not result.complete or result.events:
                raise RuntimeError(f"cycle {i} was not steady: {result.reasons}")
            if i + 1 == warm:
                out["warm_kib"] = rss_kib()
            if (i + 1 - warm) % max(1, cfg["cycles"] // 10) == 0:
                samples.append(rss_kib())
            if cfg.get("interval"):
                await asyncio.sleep(cfg["interval"])
        out["cycle_seconds"] = (time.monotonic() - began) / (warm + cfg["cycles"])
        out["end_kib"] = rss_kib()
        out["samples_kib"] = samples
        out["tracked"] = len(watcher.baseline or ())
    out["peak_kib"] = peak_rss_kib()
    return out


# -- detect -----------------------------------------------------------------------------


def _parsed_jobs(jobs: int, regions: list[str]) -> list[Any]:
    """The workload's jobs as the watcher normalizes them (simulator JSON -> models)."""
    from benchmarks import workload
    from dts_sim import Scenario, ScenarioState, page_body
    from watcher.dts.models import parse_page

    state = ScenarioState(Scenario(jobs=workload.build_jobs(jobs, regions)))
    out: list[Any] = []
    for region in regions:
        selected = state.select(region)
        for start in range(0, len(selected), 30):
            body = page_body(
                selected[start : start + 30],
                total=len(selected),
                page_number=start // 30 + 1,
                request_id="bench",
                render=state.render,
            )
            out.extend(parse_page(json.loads(json.dumps(body)), region).jobs)
    return out


def _change(job: dict[str, Any], i: int) -> bool:
    """Change one job (by its dict form) the way a real cycle might; True if the change
    makes an event (the others are a delay that moves within its level)."""
    kind = i % 3
    if kind == 0:
        job["status"] = "Failed"
        job["error_message"] = "DTS-070211: Connect Source DB failed"
        return job["direction"] is not None
    if kind == 1 and job["status"] == "Synchronizing":
        job["delay_seconds"] = 120  # over the 60 s warning threshold
        return True
    job["delay_seconds"] = (job["delay_seconds"] or 0) + 1
    return False


def _snapshots(
    template: list[dict[str, Any]], n: int, regions: list[str]
) -> tuple[Any, Any, dict[str, Any], dict[str, Any], int]:
    """Two n-job snapshots, 1% of the jobs changed, each decoded from JSON on its own, as
    two fetches without the raw-record cache would be: no job is the other's object, and
    what the parser shares among jobs (`watcher.sharing`: precheck, stages, tags, ...) is
    shared as every parse shares it; and their dict forms for DeepDiff."""
    import orjson

    from watcher.sharing import shared
    from watcher.snapshot import JobState, RegionOutcome, Snapshot

    previous: list[Any] = []
    current: list[Any] = []
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    changed = 0
    for start in range(0, n, len(template)):
        chunk = []
        for i in range(start, min(n, start + len(template))):
            job = dict(template[i % len(template)])
            if i >= len(template):
                job["job_id"] = f"{job['job_id']}x{i // len(template)}"
            chunk.append(job)
        encoded = orjson.dumps(chunk)
        old, new = orjson.loads(encoded), orjson.loads(encoded)
        for offset, job in enumerate(new):
            if (start + offset) % 100 == 0 and _change(job, (start + offset) // 100):
                changed += 1
        previous.extend(shared(JobState.from_dict(d)) for d in old)
        current.extend(shared(JobState.from_dict(d)) for d in new)
        if n == len(template):
            before.update((f"{d['region']}/{d['job_id']}/{d['direction']}", d) for d in old)
            after.update((f"{d['region']}/{d['job_id']}/{d['direction']}", d) for d in new)
    outcomes = [RegionOutcome(region=r) for r in regions]
    return (
        Snapshot.of(previous, outcomes),
        Snapshot.of(current, outcomes),
        before,
        after,
        changed,
    )


async def detect_bench(cfg: dict[str, Any]) -> dict[str, Any]:
    from watcher.detect import Memory, Rules, detect

    regions: list[str] = cfg["regions"]
    template = [job.to_dict() for job in _parsed_jobs(cfg["jobs"], regions)]
    now = datetime.now(UTC)
    rules = Rules()
    out: dict[str, Any] = {}
    for label, n in (("small", cfg["jobs"]), ("large", cfg["jobs"] * cfg["scale"])):
        previous, current, before, after, changed = _snapshots(template, n, regions)
        # The previous cycle's baseline and memory, as the watcher would hold them.
        base = detect(None, previous, Memory(), rules, now)
        times = []
        events = 0
        for _ in range(cfg["runs"]):
            # The heap as the service holds it when a cycle starts: what survived the
            # last cycle collected and frozen (`Heap.settle`, `poll.gc_freeze`).
            _HEAP.settle()
            began = time.perf_counter()
            result = detect(base.baseline, current, base.memory, rules, now)
            times.append(time.perf_counter() - began)
            events = len(result.events)
        out[f"detect_{label}"] = times
        out[f"events_{label}"] = events
        out[f"changed_{label}"] = changed
        if label == "small":
            from deepdiff import DeepDiff

            deep = []
            for _ in range(cfg["deepdiff_runs"]):
                _HEAP.settle()  # the same heap for the baseline
                began = time.perf_counter()
                diff = DeepDiff(before, after)
                deep.append(time.perf_counter() - began)
            out["deepdiff"] = deep
            out["deepdiff_changes"] = len(diff.get("values_changed", {}))
        del previous, current, before, after, base
        gc.unfreeze()
    return out


MODES = {
    "steady": steady,
    "floor": floor,
    "storm": storm,
    "baseline": baseline,
    "memory": memory,
    "detect": detect_bench,
}


def main() -> int:
    mode, raw = sys.argv[1], sys.argv[2]
    cfg = json.loads(raw)
    result = asyncio.run(MODES[mode](cfg))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
