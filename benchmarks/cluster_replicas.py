"""Cluster mode as it runs: three `dts-watcher run` replicas on a three-node NATS cluster
against the simulator; how fast a failover is, and what cluster mode costs NATS.

    python -m benchmarks.cluster_replicas [--ttl 15] [--interval 5] [--regions 12]
                                          [--jobs 50] [--kills 2] [--json]

1. Three replicas share `--regions` shards (one region each, `--jobs` jobs each).
2. Traffic, in the steady state (nothing changes): per cycle of one replica, what its
   cluster connection (leases and state: lease renewals, the bucket's read, one shard
   entry per shard held) and its publisher's connection move (`/connz`), and what the
   whole cluster moves beyond its idle traffic (`/varz`: clients and routes, so the
   replication to the other servers is counted). Then the same with one job changed per
   shard and cycle: the cost of a change (its entry written, then cleared).
3. SIGKILL: one job changed in each shard of the replica holding the most, and the
   replica killed at once (before it can poll them). Measured: kill to every one of its
   shards held by another replica, and kill to the first and the last event of those
   changed jobs published (a core subscription on the events' subjects). The replica
   restarts under its name and gets its share back before the next kill.

Prints a table and, with --json, the numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.cluster_failover import _connection, _traffic

ROOT = Path(__file__).resolve().parent.parent


def _env(member: str, servers: str, dts: str, regions: list[str], args: Any) -> dict[str, str]:
    from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTS_WATCHER_", "ALIBABA_"))}
    env.update(
        {
            "DTS_WATCHER_DTS__ENDPOINT": dts,
            "DTS_WATCHER_DTS__REGIONS": json.dumps(regions),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            "DTS_WATCHER_NATS__URL": servers,
            "DTS_WATCHER_NATS__STREAM_REPLICAS": "3",
            "DTS_WATCHER_CLUSTER__ENABLED": "true",
            "DTS_WATCHER_CLUSTER__MEMBER": member,
            "DTS_WATCHER_CLUSTER__LEASE_TTL": str(args.ttl),
            "DTS_WATCHER_POLL__INTERVAL": str(args.interval),
            "DTS_WATCHER_POLL__JITTER": "0",
            "DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL": "0",
            "DTS_WATCHER_LOG__LEVEL": "warning",
        }
    )
    return env


class Bench:
    def __init__(self, cluster: Any, sim: Any, regions: list[str], args: Any, folder: Path):
        self.cluster, self.sim, self.regions, self.args = cluster, sim, regions, args
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.seen: list[tuple[float, str, str]] = []  # (time, kind, job id) of job events
        self.nc: Any = None

    def start(self, member: str) -> None:
        env = _env(member, self.cluster.urls, self.sim.url, self.regions, self.args)
        log = (self.folder / f"{member}.log").open("ab")
        self.processes[member] = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run"],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def listen(self) -> None:
        import nats

        self.nc = await nats.connect(servers=self.cluster.url_list, name="bench")

        async def seen(msg: Any) -> None:
            kind = msg.subject.rsplit(".", 1)[-1]
            self.seen.append((time.monotonic(), kind, json.loads(msg.data)["data"]["job_id"]))

        await self.nc.subscribe("dts.job.>", cb=seen)

    async def held(self) -> dict[str, str]:
        from watcher.cluster import Claim
        from watcher.cluster.bucket import Bucket
        from watcher.cluster.keys import LEASE, parse_key

        js = self.nc.jetstream(timeout=2)
        try:
            kv = await js.key_value("dts_watcher_leases")
            entries = await Bucket(js, kv, "dts_watcher_leases", 0.0).read_all(2.0)
        except Exception:
            return {}
        found = {}
        for entry in entries:
            parsed = parse_key(entry.key)
            claim = None if entry.tombstone else Claim.decode(entry.value)
            if parsed and parsed[0] == LEASE and claim is not None:
                found[parsed[1].rpartition("/")[2]] = claim.member
        return found

    async def wait(self, condition: Any, within: float = 300.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await condition():
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"gave up after {within:g} s; logs in {self.folder}")

    async def balanced(self) -> bool:
        held = await self.held()
        share = math.ceil(len(self.regions) / len(self.processes))
        counts = Counter(held.values())
        return set(held) == set(self.regions) and max(counts.values(), default=0) <= share

    def connection(self, name: str) -> dict[str, int]:
        return _connection(self.cluster, name)

    def publishers(self) -> dict[str, int]:
        total = dict.fromkeys(("in_msgs", "out_msgs", "in_bytes", "out_bytes"), 0)
        for index in self.cluster.running():
            for conn in self.cluster.monitor(index, "/connz?limit=1000")["connections"]:
                if conn.get("name") == "dts-watcher":
                    for key in total:
                        total[key] += int(conn[key])
        return total


async def traffic(
    bench: Bench, idle: dict[str, float], cycles: int, change: bool
) -> dict[str, Any]:
    member = "pod-0"
    name = f"dts-watcher-cluster {member}"
    seconds = cycles * bench.args.interval
    c0, p0, v0, t0 = (
        bench.connection(name),
        bench.publishers(),
        _traffic(bench.cluster),
        time.monotonic(),
    )
    deadline = t0 + seconds
    flip = 0
    while time.monotonic() < deadline:
        if change:  # one job per shard changes every cycle
            flip += 1
            for region in bench.regions:
                bench.sim.set_job(f"{region}-0", delay=100 + flip)
        await asyncio.sleep(bench.args.interval)
    c1, p1, v1, elapsed = (
        bench.connection(name),
        bench.publishers(),
        _traffic(bench.cluster),
        time.monotonic() - t0,
    )
    done = elapsed / bench.args.interval
    out: dict[str, Any] = {"cycles": round(done, 1)}
    for key in c0:
        out[f"cluster_conn_{key}"] = (c1[key] - c0[key]) / done
        out[f"publishers_{key}"] = (p1[key] - p0[key]) / done / len(bench.processes)
        out[f"cluster_wide_{key}"] = (
            (v1[key] - v0[key] - idle[key] * elapsed) / done / len(bench.processes)
        )
    return out


async def kill(bench: Bench, n: int) -> dict[str, Any]:
    held = await bench.held()
    counts = Counter(held.values())
    victim = max(counts, key=lambda m: (counts[m], m))
    theirs = [region for region, member in held.items() if member == victim]
    # Other jobs at each kill: one failing and recovering again and again would flap.
    jobs = {f"{region}-{n + 1}" for region in theirs}
    for job in jobs:
        bench.sim.set_job(job, status="Failed", error_message="bench")
    killed = time.monotonic()
    bench.processes[victim].send_signal(signal.SIGKILL)
    bench.processes[victim].wait()

    async def taken() -> bool:
        now = await bench.held()
        return all(now.get(region) not in (None, victim) for region in theirs)

    await bench.wait(taken)
    all_held = time.monotonic() - killed

    async def published() -> bool:
        return jobs <= {j for t, kind, j in bench.seen if t >= killed and kind == "status_changed"}

    await bench.wait(published)
    times = [
        t - killed
        for t, kind, j in bench.seen
        if t >= killed and j in jobs and kind == "status_changed"
    ]
    bench.start(victim)
    await bench.wait(bench.balanced)
    recovered = time.monotonic()
    for job in jobs:  # back as they were, and seen so (before the next kill)
        bench.sim.set_job(job, status="Synchronizing", error_message="")

    async def seen_back() -> bool:
        back = {j for t, kind, j in bench.seen if t >= recovered and kind == "status_changed"}
        return jobs <= back

    await bench.wait(seen_back)
    return {
        "shards": len(theirs),
        "kill_to_all_held": all_held,
        "kill_to_first_event": min(times),
        "kill_to_last_event": max(times),
        "events": len(times),
    }


async def conduct(args: Any) -> dict[str, Any]:
    from dts_sim import Simulator
    from dts_sim.natsserver import NatsCluster

    regions = [f"cn-bench-{n:02}" for n in range(args.regions)]
    results: dict[str, Any] = {
        "ttl": args.ttl,
        "interval": args.interval,
        "regions": args.regions,
        "jobs": args.jobs,
    }
    with (
        tempfile.TemporaryDirectory() as folder,
        NatsCluster(3, Path(folder) / "nats") as cluster,
        Simulator() as sim,
    ):
        for region in regions:
            for n in range(args.jobs):
                sim.add_job(
                    {"id": f"{region}-{n}", "region": region, "name": f"{region} {n}", "delay": 1}
                )
        idle0, i0 = _traffic(cluster), time.monotonic()
        await asyncio.sleep(5)
        idle = {k: (v - idle0[k]) / (time.monotonic() - i0) for k, v in _traffic(cluster).items()}
        bench = Bench(cluster, sim, regions, args, Path(folder))
        await bench.listen()
        for n in range(3):
            bench.start(f"pod-{n}")
        await bench.wait(bench.balanced)

        async def discovered() -> bool:
            return (
                sum(1 for _, kind, _ in bench.seen if kind == "discovered")
                >= len(regions) * args.jobs
            )

        await bench.wait(discovered)
        await asyncio.sleep(2 * args.interval)
        results["steady"] = await traffic(bench, idle, args.cycles, change=False)
        results["changing"] = await traffic(bench, idle, args.cycles, change=True)
        results["kills"] = [await kill(bench, n) for n in range(args.kills)]
        for process in bench.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in bench.processes.values():
            process.wait(60)
        await bench.nc.close()
    return results


def _print(r: dict[str, Any]) -> None:
    print(
        f"# cluster mode: 3 replicas, 3-node NATS cluster (R3), {r['regions']} shards x "
        f"{r['jobs']} jobs, lease TTL {r['ttl']:g} s, poll interval {r['interval']:g} s"
    )
    for name in ("steady", "changing"):
        t = r[name]
        per_change = (
            "" if name == "steady" else f" ({r['regions'] // 3} jobs changed per replica and cycle)"
        )
        print(
            f"{name}{per_change}, per replica and cycle ({t['cycles']} cycles): "
            f"leases+state connection {t['cluster_conn_in_msgs']:.1f} msgs / "
            f"{t['cluster_conn_in_bytes']:.0f} B in, {t['cluster_conn_out_msgs']:.1f} msgs / "
            f"{t['cluster_conn_out_bytes']:.0f} B out; publisher "
            f"{t['publishers_in_msgs']:.1f} msgs / {t['publishers_in_bytes']:.0f} B in; "
            "whole cluster beyond idle "
            f"{t['cluster_wide_in_msgs']:.0f} msgs / {t['cluster_wide_in_bytes']:.0f} B in, "
            f"{t['cluster_wide_out_msgs']:.0f} msgs / {t['cluster_wide_out_bytes']:.0f} B out"
        )
    for n, k in enumerate(r["kills"], start=1):
        print(
            f"SIGKILL #{n}: {k['shards']} shards; kill -> all held again "
            f"{k['kill_to_all_held']:.2f} s; kill -> first event of a changed job "
            f"{k['kill_to_first_event']:.2f} s, last "
            f"{k['kill_to_last_event']:.2f} s ({k['events']} events)"
        )
    if r["kills"]:
        print(
            "median kill -> all held "
            f"{statistics.median(k['kill_to_all_held'] for k in r['kills']):.2f} s, kill -> first "
            f"event {statistics.median(k['kill_to_first_event'] for k in r['kills']):.2f} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_replicas")
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--regions", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(conduct(args))
    _print(results)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
