"""The cluster's state, read only: for `dts-watcher status` beside running replicas.

Reads the leases bucket (who holds which shard, since when; which members are alive) and
the state bucket (every shard's jobs and rule memory as last saved by its holder), each
in one pass; it never writes. A shard's jobs are those its last holder saved, whoever
holds it now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import nats.js.errors

from watcher import natsconn
from watcher.cluster import records
from watcher.cluster.bucket import Bucket
from watcher.cluster.coordinator import View, read_view
from watcher.cluster.leases import Leases
from watcher.errors import PublishError, why
from watcher.rules import JobMemory, Memory
from watcher.settings import Settings
from watcher.snapshot import JobKey, JobState, Snapshot

__all__ = ["ClusterPicture", "read_cluster"]


@dataclass(frozen=True)
class ClusterPicture:
    baseline: Snapshot
    memory: Memory
    view: View  # live members, and who holds which shard (`account/region`)
    unreadable: int = 0  # job entries that could not be decoded


async def read_cluster(settings: Settings) -> ClusterPicture:
    """PublishError when NATS or a bucket cannot be read (the message says which)."""
    nats_settings, cluster = settings.nats, settings.cluster
    try:
        with anyio.fail_after(nats_settings.connect_timeout * 2 + 1):
            nc = await natsconn.connect(nats_settings, allow_reconnect=False)
    except Exception as exc:  # nats-py raises a variety of OS and protocol errors
        reason = "timed out" if isinstance(exc, TimeoutError) else why(exc)
        raise PublishError(f"cannot reach NATS at {nats_settings.display_url}: {reason}") from None
    try:
        js = nc.jetstream(timeout=nats_settings.connect_timeout)
        leases = Leases(await _bucket(js, cluster.bucket, cluster.lease_ttl), "dts-watcher-status")
        view = await read_view(leases)
        state = await _bucket(js, cluster.state_bucket, 0.0)
        entries = await state.read_all(60.0, keys=f"{records.JOB}.>")
        return _picture(entries, view)
    except PublishError:
        raise
    except Exception as exc:  # a bucket missing, a leader being elected, a timeout
        raise PublishError(f"cannot read the cluster's buckets: {why(exc)}") from None
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await nc.close()


async def _bucket(js: Any, name: str, ttl: float) -> Bucket:
    try:
        return Bucket(js, await js.key_value(name), name, ttl)
    except nats.js.errors.BucketNotFoundError:
        raise PublishError(
            f"the bucket {name} does not exist: has a replica run in cluster mode with these "
            "settings?"
        ) from None


def _picture(entries: list[Any], view: View) -> ClusterPicture:
    jobs: dict[JobKey, JobState] = {}
    memory: dict[JobKey, JobMemory] = {}
    unreadable = 0
    for entry in entries:
        if entry.tombstone:
            continue
        try:
            record = records.decode_job(entry.value)
        except (ValueError, TypeError, KeyError):
            unreadable += 1
            continue
        if record.job is None:
            continue
        jobs[record.job.key] = record.job
        if record.memory:
            memory[record.job.key] = record.memory
    return ClusterPicture(Snapshot(jobs=jobs), Memory(jobs=memory), view, unreadable)
