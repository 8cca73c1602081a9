"""Several replicas on a real three-node NATS cluster, as processes, against the simulator.

The promises of cluster mode, held against what a consumer sees in the (R3) events
stream: every change exactly once (by event id, and by job and transition), nothing
invented (no `removed` or second `discovered` after a failover), every shard held again
within a lease TTL and a cycle (give or take a loaded machine) after its holder died.

One scenario, in the order the dangers come (each replica process is a real
`dts-watcher run`, killed for real):

1. three replicas share six shards (one region each) two by two;
2. the replica holding some shards is killed (SIGKILL, by its crash point) right after
   it saved the changes of its jobs and before it published them; the jobs change back
   before anyone else looks: the successor must publish the saved change from the
   state, then the change back;
3. it restarts under the same name and gets its share back (handed over cleanly);
4. another replica is killed after publishing a change and before clearing it from the
   state: the successor publishes it again, JetStream drops the copy;
5. the NATS node leading the state bucket is killed; a change still goes out once;
6. `dts-watcher status` shows who holds what; SIGTERM stops the rest cleanly.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsCluster
from tests.support.cli import CliProcess, eventually, run_cli, watcher_env
from tests.support.cluster import holders, saved_events, stream_events
from tests.support.watcher import job_events
from watcher.faults import ARMED, ENV

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.wall_clock]

TTL = 4.0  # seconds: short, and still over a NATS leader election's usual second or two
INTERVAL = 1.0
REGIONS = [f"cn-region-{n}" for n in range(6)]
SHARDS = {f"default/{region}": region for region in REGIONS}
# Held again within a TTL and a cycle; the margin is for a loaded 2-core machine.
TAKEOVER_DEADLINE = TTL + INTERVAL + 15


def job_of(region: str) -> str:
    return f"job-{region.rsplit('-', 1)[-1]}"


def replica_env(
    tmp_path: Path, cluster: NatsCluster, sim: Simulator, member: str, **extra: str
) -> dict[str, str]:
    return watcher_env(
        tmp_path / f"{member}.sqlite3",
        cluster.urls,
        sim.url,
        REGIONS,
        DTS_WATCHER_CLUSTER__ENABLED="true",
        DTS_WATCHER_CLUSTER__MEMBER=member,
        DTS_WATCHER_CLUSTER__LEASE_TTL=str(TTL),
        DTS_WATCHER_NATS__STREAM_REPLICAS="3",
        DTS_WATCHER_POLL__INTERVAL=str(INTERVAL),
        DTS_WATCHER_POLL__JITTER="0",
        DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL="0",
        DTS_WATCHER_LOG__FORMAT="json",
        **extra,
    )


class Replicas:
    """The replica processes by member name; the test's view of the cluster."""

    def __init__(self, tmp_path: Path, cluster: NatsCluster, sim: Simulator) -> None:
        self.tmp_path, self.cluster, self.sim = tmp_path, cluster, sim
        self.running: dict[str, CliProcess] = {}
        self.gone: list[CliProcess] = []

    def start(self, member: str, **extra: str) -> CliProcess:
        env = replica_env(self.tmp_path, self.cluster, self.sim, member, **extra)
        process = CliProcess("run", env=env, cwd=self.tmp_path)
        self.running[member] = process
        return process

    def armed(self, member: str, crash_at: str) -> dict[str, str]:
        return {ENV: crash_at, ARMED: str(self.tmp_path / f"{member}.armed")}

    def arm(self, member: str) -> None:
        (self.tmp_path / f"{member}.armed").touch()

    async def held(self) -> dict[str, str]:
        return await holders(self.cluster.url_list)

    async def shares(self) -> Counter[str]:
        return Counter((await self.held()).values())

    async def balanced(self, members: set[str]) -> bool:
        held = await self.held()
        return set(held) == set(SHARDS) and Counter(held.values()) == dict.fromkeys(members, 2)

    async def events(self) -> list[dict[str, Any]]:
        return await stream_events(self.cluster.url_list)

    def describe(self) -> str:
        return "\n".join(p.describe()[-4000:] for p in [*self.running.values(), *self.gone])

    def close(self) -> None:
        for process in [*self.running.values(), *self.gone]:
            process.kill()


async def said(replicas: Replicas, job: str, count: int) -> None:
    """Wait until the stream holds `count` events of `job` (what they are, and that there
    are no more, is asserted at the end)."""

    async def there() -> bool:
        return len(job_events(await replicas.events()).get(f"{job}/Forward", [])) >= count

    await eventually(there, 60, lambda: f"{count} events of {job}\n{replicas.describe()}")


async def killed_and_taken_over(replicas: Replicas, member: str, theirs: list[str]) -> float:
    """Wait for `member`'s process to die by SIGKILL, then for every shard to be held by
    the others; the seconds from its death to that."""
    process = replicas.running.pop(member)
    assert await process.wait_async(30) == -signal.SIGKILL, process.describe()
    replicas.gone.append(process)
    died = time.monotonic()

    async def taken() -> bool:
        held = await replicas.held()
        return set(held) == set(SHARDS) and member not in held.values()

    await eventually(
        taken, TAKEOVER_DEADLINE, lambda: f"{theirs} taken over\n{replicas.describe()}"
    )
    return time.monotonic() - died


async def test_failover_loses_doubles_and_invents_nothing(
    tmp_path: Path, nats_cluster: NatsCluster, simulator: Simulator
) -> None:
    for region in REGIONS:
        simulator.add_job({"id": job_of(region), "region": region, "name": region})
    replicas = Replicas(tmp_path, nats_cluster, simulator)
    try:
        await scenario(replicas, nats_cluster, simulator)
    finally:
        replicas.close()


async def scenario(replicas: Replicas, cluster: NatsCluster, sim: Simulator) -> None:
    # 1. Three replicas, six shards, two each; every job discovered once.
    replicas.start("a", **replicas.armed("a", "state_written"))
    replicas.start("b", **replicas.armed("b", "after_publish"))
    replicas.start("c")
    await eventually(lambda: replicas.balanced({"a", "b", "c"}), 60, replicas.describe)
    for region in REGIONS:
        await said(replicas, job_of(region), 1)

    # 2. a saves its jobs' failures and dies before publishing them. One of those it
    #    saved recovers at once: its successor must say both the failure (from the state)
    #    and the recovery; the others stay failed: said from the state alone.
    held = await replicas.held()
    a_jobs = [job_of(SHARDS[s]) for s, m in held.items() if m == "a"]
    replicas.arm("a")
    for job in a_jobs:
        sim.set_job(job, status="Failed", error_message="boom")
    process = replicas.running["a"]
    assert await process.wait_async(30) == -signal.SIGKILL, process.describe()
    saved = {j: n for j, n in (await saved_events(cluster.url_list)).items() if j in a_jobs}
    assert any(saved.values()), saved  # killed right after saving, before publishing
    recovers = [job for job in a_jobs if saved[job]][:1]
    for job in recovers:
        sim.set_job(job, status="Synchronizing", error_message="")
    takeover = await killed_and_taken_over(replicas, "a", a_jobs)
    for job in a_jobs:
        # failed, unless a did not save it and it recovered before anyone saw it
        await said(replicas, job, 3 if job in recovers else 2)

    # 3. a comes back under its name: its share is handed back.
    replicas.start("a")
    await eventually(lambda: replicas.balanced({"a", "b", "c"}), 60, replicas.describe)

    # 4. b publishes its jobs' failures and dies before clearing them from the state.
    held = await replicas.held()
    b_jobs = [job_of(SHARDS[s]) for s, m in held.items() if m == "b"]
    replicas.arm("b")
    for job in b_jobs:
        sim.set_job(job, status="Failed", error_message="boom")
    takeover2 = await killed_and_taken_over(replicas, "b", b_jobs)
    for job in b_jobs:
        await said(replicas, job, 2)

    # 5. The node leading the state bucket dies; a change still goes out, once.
    leader = await anyio.to_thread.run_sync(cluster.stream_leader, "KV_dts_watcher_state")
    assert leader is not None
    cluster.kill(leader)
    last = next(job_of(r) for r in REGIONS if job_of(r) not in a_jobs + b_jobs)
    sim.set_job(last, status="Failed", error_message="late")
    await said(replicas, last, 2)
    cluster.start_node(leader)
    await anyio.to_thread.run_sync(cluster.wait_ready)

    # 6. Who holds what; then a clean stop.
    env = replica_env(replicas.tmp_path, cluster, sim, "status")
    shown = await anyio.to_thread.run_sync(
        lambda: run_cli("status", env=env, cwd=replicas.tmp_path)
    )
    assert shown.returncode == 0, shown.stderr
    holding = await replicas.held()
    for shard, member in holding.items():
        assert f"{shard}" in shown.stdout and member in shown.stdout, shown.stdout
    for process in replicas.running.values():
        process.send_signal(signal.SIGTERM)
    for process in replicas.running.values():
        assert await process.wait_async(60) == 0, process.describe()

    stream = await replicas.events()
    ids = [event["id"] for event in stream]
    assert len(ids) == len(set(ids)), "an event reached the stream twice"
    expected = {}
    for region in REGIONS:
        job = job_of(region)
        seen = [("discovered", "Synchronizing")]
        if job in a_jobs:
            seen += [("status_changed", "Failed")]
        if job in recovers:
            seen += [("status_changed", "Synchronizing")]
        if job in b_jobs:
            seen += [("status_changed", "Failed")]
        if job == last:
            seen += [("status_changed", "Failed")]
        expected[f"{job}/Forward"] = seen
    assert job_events(stream) == expected
    # Who watched what: a's comeback was handed over (each shard's cycle finished and
    # its events flushed first), and at the end every shard was given up cleanly.
    shard_events = [e for e in stream if e["type"].startswith("dts.watcher.shard_")]
    reasons = Counter(e["data"].get("reason") for e in shard_events if "released" in e["type"])
    assert reasons["handover"] >= 1 and set(reasons) <= {"handover", "stopping", "lost"}
    for region in SHARDS.values():
        last = [e for e in shard_events if e["data"]["region"] == region][-1]
        assert (last["type"], last["data"]["reason"]) == ("dts.watcher.shard_released", "stopping")
    print(f"takeover after SIGKILL: {takeover:.1f} s, {takeover2:.1f} s (TTL {TTL:g} s)")
