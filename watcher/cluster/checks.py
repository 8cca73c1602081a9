"""Surroundings that cluster mode cannot work in, or should not: found at start, said once.

Each check is a pure function of what NATS answered and what the settings ask, and
returns `Finding`s (an error stops the start, a warning is logged and shown by
`check-config`); `survey` asks NATS. Every message names the setting to change.

- **No JetStream** on the NATS the watcher reaches: the leases (and, later, the shard
  state) live there. An error.
- **One replica on a multi-node cluster**: a bucket or stream with `num_replicas` 1 lives
  on one server; when that server goes, the leases (or events) go with it. A warning.
  Whether JetStream is clustered, and how many replicas it can place, is JetStream's
  answer (a stream's `cluster.name`; a placement refused), not the client's guess: the
  list of servers a client is told about (`connect_urls`) is often switched off.
- **A duplicate window shorter than the lease TTL plus a cycle**: after a failover the new
  holder re-publishes what the old one may already have stored, up to a lease TTL and a
  cycle later; JetStream drops the copy only within its duplicate window. A warning.
- **A leases bucket whose TTL is not this replica's lease TTL**: the bucket's TTL is what
  ends a lease in NATS, this replica's is what its fence counts on; they must agree, or
  a lease could end in NATS while its holder still trusts it. An error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import nats.errors
import nats.js.errors

from watcher.errors import ClusterError, why

__all__ = [
    "Finding",
    "bucket_ttl",
    "duplicate_window",
    "fewer_replicas",
    "jetstream_missing",
    "raise_errors",
    "replicas",
    "state_ttl",
    "survey",
]

ENABLED = "cluster.enabled (DTS_WATCHER_CLUSTER__ENABLED)"
LEASE_TTL = "cluster.lease_ttl (DTS_WATCHER_CLUSTER__LEASE_TTL)"
REPLICAS = "cluster.replicas (DTS_WATCHER_CLUSTER__REPLICAS)"
STATE_BUCKET = "cluster.state_bucket (DTS_WATCHER_CLUSTER__STATE_BUCKET)"
STREAM_REPLICAS = "nats.stream_replicas (DTS_WATCHER_NATS__STREAM_REPLICAS)"
DUPLICATE_WINDOW = "nats.duplicate_window (DTS_WATCHER_NATS__DUPLICATE_WINDOW)"
NATS_URL = "nats.url (DTS_WATCHER_NATS__URL)"


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    message: str


def jetstream_missing(error: BaseException | None, servers: str) -> list[Finding]:
    """`error` is what asking for JetStream account information raised (None: it
    answered)."""
    if error is None:
        return []
    if isinstance(error, nats.errors.NoRespondersError | nats.js.errors.ServiceUnavailableError):
        reason = "JetStream is not enabled there"
    else:
        reason = f"JetStream did not answer ({why(error)})"
    return [
        Finding(
            "error",
            f"{ENABLED} needs NATS JetStream, and {NATS_URL} ({servers}): {reason}; run "
            "nats-server with JetStream (-js, or jetstream {} in its configuration), or "
            "turn cluster mode off",
        )
    ]


def fewer_replicas(what: str, wanted: int, got: int, reason: str) -> list[Finding]:
    """A new bucket got fewer replicas than asked for: NATS could not place more."""
    if got >= wanted:
        return []
    return [
        Finding(
            "warning",
            f"{REPLICAS} is {wanted} but NATS could not place that many ({reason}): "
            f"{what} has {got}",
        )
    ]


def replicas(what: str, setting: str, have: int, clustered: bool) -> list[Finding]:
    """A bucket or stream (`what`) with one replica on a NATS cluster (`clustered`: its
    stream info names a cluster, as it does when JetStream runs clustered)."""
    if have > 1 or not clustered:
        return []
    return [
        Finding(
            "warning",
            f"{what} has 1 replica on a NATS cluster: it is lost or unavailable while that "
            f"one server is; give it 3 replicas ({setting} for new ones; `nats stream edit "
            f"<name> --replicas 3` for one that exists)",
        )
    ]


def duplicate_window(
    stream: str, window: float, lease_ttl: float, cycle: float, *, setting: str
) -> list[Finding]:
    """The events stream's duplicate window must cover a lease TTL plus a cycle."""
    needed = lease_ttl + cycle
    if window >= needed:
        return []
    return [
        Finding(
            "warning",
            f"stream {stream} drops duplicates within {window:g} s only, less than "
            f"{LEASE_TTL} ({lease_ttl:g} s) plus a cycle ({cycle:g} s): an event the "
            f"replica taking over a shard re-publishes could be stored twice; raise the "
            f"window to {needed:g} s or more (`nats stream edit {stream} --dupe-window "
            f"{int(needed + 0.999)}s`; {setting} for a new stream)",
        )
    ]


def bucket_ttl(bucket: str, have: float | None, lease_ttl: float) -> list[Finding]:
    """The leases bucket's TTL (its streams's max age) must be this replica's lease TTL."""
    if have is not None and abs(have - lease_ttl) < 0.001:
        return []
    shown = "none" if not have else f"{have:g} s"
    return [
        Finding(
            "error",
            f"the leases bucket {bucket} has a TTL of {shown}, but {LEASE_TTL} is "
            f"{lease_ttl:g} s: every replica must use the bucket's TTL; set "
            f"{LEASE_TTL.split(' ')[0]} to it, or stop every replica and delete the bucket "
            f"(`nats kv del {bucket}`) to start over with the new TTL",
        )
    ]


def state_ttl(bucket: str, have: float | None) -> list[Finding]:
    """The state bucket must keep its entries: no TTL (its stream's max age 0)."""
    if not have:
        return []
    return [
        Finding(
            "error",
            f"the state bucket {bucket} ({STATE_BUCKET}) removes entries after {have:g} s: "
            "the shards' state would vanish; give cluster mode a bucket without a TTL (a "
            "new name, or `nats kv del` this one with every replica stopped)",
        )
    ]


def raise_errors(findings: list[Finding]) -> None:
    """Raise the first error among `findings` as a ClusterError (exit 2)."""
    for finding in findings:
        if finding.level == "error":
            raise ClusterError(finding.message)


async def survey(js: Any, servers: str) -> list[Finding]:
    """Ask NATS what cluster mode needs: JetStream."""
    try:
        await js.account_info()
    except Exception as exc:  # nats-py raises a variety of protocol and timeout errors
        return jetstream_missing(exc, servers)
    return []
