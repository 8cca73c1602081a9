"""The real three-node NATS cluster the replica tests run on (`dts_sim.NatsCluster`):
R3 key-value buckets keep working when the node leading them is killed, and a killed
node comes back on its ports and store and catches up; the leases bucket gets three
replicas there, and one replica is warned about."""

from __future__ import annotations

import nats
import pytest

from dts_sim.natsserver import NatsCluster
from tests.support.cluster import eventually, wait_for
from watcher.cluster import open_bucket
from watcher.cluster.checks import survey

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def test_the_cluster_is_routed_with_a_meta_leader(nats_cluster: NatsCluster) -> None:
    assert nats_cluster.routed()
    assert nats_cluster.meta_leader() in (0, 1, 2)
    assert nats_cluster.urls.count(",") == 2
    for index in range(3):
        jsz = nats_cluster.monitor(index, "/jsz")
        assert jsz["meta_cluster"]["cluster_size"] == 3  # type: ignore[index]


async def test_an_r3_bucket_survives_the_death_of_its_leader_node(
    nats_cluster: NatsCluster,
) -> None:
    nc = await nats.connect(servers=nats_cluster.url_list, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream(timeout=2)
        kv = await js.create_key_value(bucket="leases", history=1, ttl=60, replicas=3)
        info = await js.stream_info("KV_leases")
        assert info.config.num_replicas == 3
        revision = await kv.create("shard", b"first")

        leader = await wait_for(lambda: nats_cluster.stream_leader("KV_leases"))
        nats_cluster.kill(leader)
        # A new leader is elected among the two left; until then writes are refused.
        new_leader = await wait_for(lambda: nats_cluster.stream_leader("KV_leases"))
        assert new_leader != leader
        revision = await eventually(lambda: kv.update("shard", b"second", last=revision))
        assert (await kv.get("shard")).value == b"second"
        # Compare-and-set still holds across the failover.
        with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
            await kv.update("shard", b"stale", last=revision - 1)

        # The killed node restarts on its ports and store, rejoins and catches up.
        nats_cluster.start_node(leader)
        await wait_for(lambda: nats_cluster.routed() and nats_cluster.meta_leader() is not None)

        await wait_for(lambda: nats_cluster.stream_current("KV_leases"))
        revision = await eventually(lambda: kv.update("shard", b"third", last=revision))
        assert (await kv.get("shard")).value == b"third"
    finally:
        await nc.close()


async def test_the_leases_bucket_gets_three_replicas_and_one_is_warned_about(
    nats_cluster: NatsCluster,
) -> None:
    nc = await nats.connect(servers=nats_cluster.url_list)
    try:
        js = nc.jetstream(timeout=5)
        assert await survey(js, nats_cluster.urls) == []
        bucket, findings = await open_bucket(js, "leases", 15.0, replicas=3)
        assert findings == []
        assert (await js.stream_info(bucket.stream)).config.num_replicas == 3
        # A bucket someone made with one replica (`nats kv add x --replicas 1`):
        await js.create_key_value(bucket="lonely", history=1, ttl=15.0, replicas=1)
        _, findings = await open_bucket(js, "lonely", 15.0, replicas=3)
        (finding,) = findings
        assert finding.level == "warning"
        assert "1 replica on a NATS cluster" in finding.message
        assert "DTS_WATCHER_CLUSTER__REPLICAS" in finding.message
        # Five replicas asked for, three servers: as many as NATS can place, said.
        bucket, (finding,) = await open_bucket(js, "wide", 15.0, replicas=5)
        assert (await js.stream_info(bucket.stream)).config.num_replicas == 3
        assert "has 3" in finding.message
    finally:
        await nc.close()
