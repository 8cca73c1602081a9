"""More than one replica (`[cluster]`): whether, under which name, and how long a lease lives.

In cluster mode the replicas share the (account, region) shards through leases in a
JetStream key-value bucket (`watcher/cluster/`). A lease not renewed within `lease_ttl`
disappears from the bucket and another replica may take the shard; its holder stops
working on it a safety margin before that. The member name tells replicas apart: two
replicas under one name are refused. Each shard's state (baseline, rule memory, events
not yet published) lives in a second bucket, `state_bucket`, instead of the local file.
"""

from __future__ import annotations

import os
import socket
import unicodedata

from pydantic import Field, ValidationInfo, field_validator

from watcher.settings.common import Section

# A KV bucket name (what JetStream accepts for one).
_BUCKET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MEMBER_MAX = 128


def default_member() -> str:
    """This host's name and this process's id: unique among replicas unless two share a
    host name (then set the member name, e.g. to the pod name)."""
    return f"{socket.gethostname() or 'localhost'}-{os.getpid()}"


class ClusterSettings(Section):
    enabled: bool = Field(
        False, description="share the shards with other replicas through JetStream leases"
    )
    member: str = Field(
        default_factory=default_member,
        description="this replica's name among the others (default: host name and process "
        "id); unique per replica, e.g. the pod name",
    )
    lease_ttl: float = Field(
        15.0,
        ge=3,
        le=600,
        description="seconds a lease lives without renewal (renewed every third of it); "
        "a dead replica's shards are taken over after about this long",
    )
    bucket: str = Field(
        "dts_watcher_leases", description="the JetStream key-value bucket of the leases"
    )
    replicas: int = Field(
        3,
        ge=1,
        le=5,
        description="JetStream replicas of the leases and state buckets (fewer, with a "
        "warning, when NATS cannot place that many; 1 on a multi-node cluster is warned "
        "about)",
    )
    state_bucket: str = Field(
        "dts_watcher_state",
        description="the JetStream key-value bucket of the shards' state (baseline, rule "
        "memory, events not yet published): every replica the same",
    )

    @field_validator("member")
    @classmethod
    def _member_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a member name cannot be empty")
        if len(value) > MEMBER_MAX:
            raise ValueError(f"a member name has at most {MEMBER_MAX} characters")
        if any(unicodedata.category(c)[0] in "CZ" for c in value):
            raise ValueError(f"{value!r} holds spaces or control characters")
        return value

    @field_validator("bucket", "state_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not value or not set(value) <= _BUCKET_CHARS:
            raise ValueError(f"{value!r} is not a key-value bucket name (letters, digits, - and _)")
        return value

    @field_validator("state_bucket")
    @classmethod
    def _not_the_leases(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("bucket"):
            raise ValueError(
                f"{value!r} is also cluster.bucket: the leases bucket's TTL would erase the "
                "state; give the state bucket a name of its own"
            )
        return value

    @property
    def renew_interval(self) -> float:
        """How often a lease is renewed: a third of its life, so two renewals can fail
        before it is lost."""
        return self.lease_ttl / 3

    @property
    def safety_margin(self) -> float:
        """How long before the lease's end in NATS its holder stops counting on it: covers
        clock skew between NATS servers and the time a request takes."""
        return self.lease_ttl / 5


def cluster_warnings(
    cluster: ClusterSettings, duplicate_window: float, poll_interval: float
) -> list[str]:
    """What is valid but probably a mistake in cluster mode (nothing outside it)."""
    if not cluster.enabled:
        return []
    found: list[str] = []
    needed = cluster.lease_ttl + poll_interval
    if duplicate_window >= needed:
        return found
    return [
        *found,
        f"nats.duplicate_window (DTS_WATCHER_NATS__DUPLICATE_WINDOW, {duplicate_window:g} s) "
        f"is shorter than cluster.lease_ttl (DTS_WATCHER_CLUSTER__LEASE_TTL, "
        f"{cluster.lease_ttl:g} s) plus poll.interval (DTS_WATCHER_POLL__INTERVAL, "
        f"{poll_interval:g} s): an event re-published by the replica that takes over a "
        f"shard could reach the stream twice; set the window to at least {needed:g} s",
    ]
