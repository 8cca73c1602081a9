"""How fast shards move between replicas, and what the leases cost NATS: measured on a
real three-node NATS cluster with members in processes of their own.

    python -m benchmarks.cluster_failover [--ttl 15] [--shards 12] [--kills 2]

1. Three members share `--shards` shards (leases bucket R3, TTL `--ttl`).
2. SIGKILL: the member holding the most shards is killed (no release); measured: kill
   to each of its shards acquired by another member, and kill to all of them.
3. The killed member restarts under the same name: the others hand its shares back
   gracefully; measured: release by the old holder to acquire by the new one.
4. SIGTERM: a member leaves cleanly; measured: signal to all its shards held again,
   and release to acquire per shard.
5. Traffic: what a member's connection sends and receives per round (`/connz`), and
   what the whole cluster moves per member and round beyond its idle traffic (`/varz`:
   client and route messages, so JetStream's replication is included).

Part 1 of issue 15 (leases alone, not wired into the cycle): a member here runs only
`watcher.cluster.Coordinator`, with a handler that prints what it is told.
Prints a table and, with --json, the numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench_leases"


# --- a member, in its own process ------------------------------------------------------


def _say(**fields: Any) -> None:
    print(json.dumps({"t": time.monotonic(), **fields}), flush=True)


class _Printer:
    async def shard_acquired(self, shard: str) -> None:
        _say(event="acquired", shard=shard)

    async def shard_releasing(self, shard: str) -> None:
        _say(event="releasing", shard=shard)

    async def shard_lost(self, shard: str) -> None:
        _say(event="lost", shard=shard)


async def _member(name: str, servers: list[str], ttl: float, shards: list[str]) -> None:
    import anyio
    import nats
    import structlog

    from watcher.cluster import Coordinator, Leases, open_bucket

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    nc = await nats.connect(servers=servers, name=name, reconnect_time_wait=0.2)
    js = nc.jetstream(timeout=5)
    bucket, _ = await open_bucket(js, BUCKET, ttl, replicas=3)
    coordinator = Coordinator(Leases(bucket, name), shards, _Printer(), nc=nc)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, coordinator.stop)

    async def rounds() -> None:
        seen = -1
        while True:
            if coordinator.rounds != seen:
                seen = coordinator.rounds
                _say(event="rounds", rounds=seen)
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(rounds)
        await coordinator.run()
        _say(event="left")
        tg.cancel_scope.cancel()
    await nc.close()


# --- the conductor --------------------------------------------------------------------


class Member:
    def __init__(self, name: str, servers: list[str], ttl: float, shards: list[str]) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        args = [sys.executable, "-m", "benchmarks.cluster_failover", "member", name]
        args += ["--servers", ",".join(servers), "--ttl", str(ttl), "--shards", str(len(shards))]
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def read(self) -> None:
        """Events arrive through a reader thread (kept for the callers' rhythm)."""

    def held(self) -> set[str]:
        mine: set[str] = set()
        for event in self.events:
            if event["event"] == "acquired":
                mine.add(event["shard"])
            elif event["event"] in ("releasing", "lost"):
                mine.discard(event["shard"])
        return mine

    def rounds(self) -> int:
        counts = [e["rounds"] for e in self.events if e["event"] == "rounds"]
        return counts[-1] if counts else 0

    def first(self, kind: str, shard: str, after: float) -> float | None:
        for event in self.events:
            if event["event"] == kind and event.get("shard") == shard and event["t"] >= after:
                return float(event["t"])
        return None


def _wait(members: list[Member], condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for member in members:
            member.read()
        if condition():
            return
        time.sleep(0.02)
    raise SystemExit(f"gave up after {timeout:g} s")


def _balanced(members: list[Member], shards: list[str]) -> bool:
    held = [m.held() for m in members if m.process.poll() is None]
    union = set().union(*held) if held else set()
    return union == set(shards) and sum(len(h) for h in held) == len(shards) and all(held)


def _traffic(cluster: Any) -> dict[str, int]:
    total = dict.fromkeys(("in_msgs", "out_msgs", "in_bytes", "out_bytes"), 0)
    for index in cluster.running():
        varz = cluster.monitor(index, "/varz")
        for key in total:
            total[key] += int(varz[key])
    return total


def _connection(cluster: Any, name: str) -> dict[str, int]:
    for index in cluster.running():
        for conn in cluster.monitor(index, "/connz?limit=1000")["connections"]:
            if conn.get("name") == name:
                return {k: int(conn[k]) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}
    names = [
        c.get("name")
        for index in cluster.running()
        for c in cluster.monitor(index, "/connz?limit=1000")["connections"]
    ]
    raise SystemExit(f"no connection named {name!r} among {names}")


def _measure_traffic(
    cluster: Any, members: list[Member], seconds: float, idle: dict[str, float]
) -> dict[str, float]:
    """Per round of a member: its own connection's traffic, and the cluster's beyond
    its idle rate (`idle`, per second)."""
    for m in members:
        m.read()
    conn0, varz0, started = (
        _connection(cluster, members[0].name),
        _traffic(cluster),
        time.monotonic(),
    )
    rounds0 = [m.rounds() for m in members]
    time.sleep(seconds)
    for m in members:
        m.read()
    conn1, varz1, elapsed = (
        _connection(cluster, members[0].name),
        _traffic(cluster),
        time.monotonic() - started,
    )
    rounds = max(1, sum(m.rounds() for m in members) - sum(rounds0))
    own = max(1, members[0].rounds() - rounds0[0])
    out: dict[str, float] = {f"member_{k}_per_round": (conn1[k] - conn0[k]) / own for k in conn0}
    for key, before in varz0.items():
        extra = varz1[key] - before - idle[key] * elapsed
        out[f"cluster_{key}_per_member_round"] = extra / rounds
    out["rounds"] = rounds
    return out


def conduct(ttl: float, shard_count: int, kills: int) -> dict[str, Any]:
    from dts_sim.natsserver import NatsCluster

    shards = [f"account-{i // 4}/cn-region-{i % 4}" for i in range(shard_count)]
    results: dict[str, Any] = {"ttl": ttl, "shards": shard_count}
    with tempfile.TemporaryDirectory() as folder, NatsCluster(3, Path(folder)) as cluster:
        idle0 = _traffic(cluster)
        time.sleep(5)
        idle = {k: (v - idle0[k]) / 5 for k, v in _traffic(cluster).items()}
        members = [Member(f"pod-{i}", cluster.url_list, ttl, shards) for i in range(3)]
        _wait(members, lambda: _balanced(members, shards))
        results["traffic"] = _measure_traffic(cluster, members, 2 * ttl, idle)
        results["sigkill"] = []
        results["restart_handback"] = []
        for _ in range(kills):
            victim = max(members, key=lambda m: len(m.held()))
            lost = victim.held()
            killed_at = time.monotonic()
            victim.process.kill()
            victim.process.wait()
            others = [m for m in members if m is not victim]
            _wait(others, lambda o=others, w=lost: set().union(*(m.held() for m in o)) >= w)
            moves = [
                min(t for m in others if (t := m.first("acquired", s, killed_at)) is not None)
                - killed_at
                for s in lost
            ]
            results["sigkill"].append({"shards": len(lost), "first": min(moves), "all": max(moves)})
            # The same name comes back: its shares are handed back gracefully.
            restarted_at = time.monotonic()
            back = Member(victim.name, cluster.url_list, ttl, shards)
            members[members.index(victim)] = back
            _wait(members, lambda: _balanced(members, shards))
            gaps = []
            for shard in back.held():
                acquired = back.first("acquired", shard, restarted_at)
                released = [m.first("releasing", shard, restarted_at) for m in others]
                started = [t for t in released if t is not None]
                if acquired is not None and started:
                    gaps.append(acquired - min(started))
            results["restart_handback"].append(
                {
                    "shards": len(gaps),
                    "restart_to_balanced": time.monotonic() - restarted_at,
                    "release_to_acquire_median": statistics.median(gaps) if gaps else None,
                    "release_to_acquire_max": max(gaps) if gaps else None,
                }
            )
        # A clean leave (SIGTERM).
        leaver = max(members, key=lambda m: len(m.held()))
        given = leaver.held()
        signalled = time.monotonic()
        leaver.process.send_signal(signal.SIGTERM)
        others = [m for m in members if m is not leaver]
        _wait(others, lambda: set().union(*(m.held() for m in others)) >= given)
        leaver.process.wait(timeout=60)
        leaver.read()
        gaps = []
        for shard in given:
            released = leaver.first("releasing", shard, signalled)
            acquired = [m.first("acquired", shard, signalled) for m in others]
            taken = [t for t in acquired if t is not None]
            if released is not None and taken:
                gaps.append(min(taken) - released)
        results["sigterm"] = {
            "shards": len(given),
            "signal_to_all_held": max(
                min(t for m in others if (t := m.first("acquired", s, signalled)) is not None)
                for s in given
            )
            - signalled,
            "release_to_acquire_median": statistics.median(gaps),
            "release_to_acquire_max": max(gaps),
        }
        for m in members:
            if m.process.poll() is None:
                m.process.kill()
                m.process.wait()
    return results


def _print(results: dict[str, Any]) -> None:
    print(
        f"# leases on a 3-node NATS cluster: TTL {results['ttl']:g} s, "
        f"{results['shards']} shards, 3 members"
    )
    for i, kill in enumerate(results["sigkill"]):
        print(
            f"SIGKILL #{i + 1}: {kill['shards']} shards; kill -> first held again "
            f"{kill['first']:.2f} s, kill -> all held again {kill['all']:.2f} s"
        )
    for i, back in enumerate(results["restart_handback"]):
        print(
            f"restart #{i + 1}: {back['shards']} shards handed back; release -> acquire "
            f"median {back['release_to_acquire_median']:.3f} s, max "
            f"{back['release_to_acquire_max']:.3f} s; restart -> balanced "
            f"{back['restart_to_balanced']:.2f} s"
        )
    term = results["sigterm"]
    print(
        f"SIGTERM: {term['shards']} shards; signal -> all held again "
        f"{term['signal_to_all_held']:.3f} s; release -> acquire median "
        f"{term['release_to_acquire_median']:.3f} s, max {term['release_to_acquire_max']:.3f} s"
    )
    t = results["traffic"]
    print(
        f"traffic per member and round ({t['rounds']} rounds): its connection "
        f"{t['member_in_msgs_per_round']:.1f} msgs / {t['member_in_bytes_per_round']:.0f} B "
        f"in, {t['member_out_msgs_per_round']:.1f} msgs / "
        f"{t['member_out_bytes_per_round']:.0f} B out; the cluster (clients + routes, "
        f"idle subtracted) {t['cluster_in_msgs_per_member_round']:.1f} msgs / "
        f"{t['cluster_in_bytes_per_member_round']:.0f} B in, "
        f"{t['cluster_out_msgs_per_member_round']:.1f} msgs / "
        f"{t['cluster_out_bytes_per_member_round']:.0f} B out"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_failover")
    parser.add_argument("mode", nargs="?", default="conduct", choices=["conduct", "member"])
    parser.add_argument("name", nargs="?", default="")
    parser.add_argument("--servers", default="")
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "member":
        shards = [f"account-{i // 4}/cn-region-{i % 4}" for i in range(args.shards)]
        asyncio.run(_member(args.name, args.servers.split(","), args.ttl, shards))
        return 0
    results = conduct(args.ttl, args.shards, args.kills)
    _print(results)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
