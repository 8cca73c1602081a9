"""The leases bucket: created or checked at start, read raw, read whole.

A JetStream key-value bucket is a stream `KV_<bucket>` on subjects `$KV.<bucket>.<key>`.
The leases bucket keeps one revision per key (`history` 1) and has a TTL equal to the
lease TTL (the stream's `max_age`): an entry not rewritten within the TTL is removed by
the server, and then a `create` of its key succeeds.

How nats-server ends entries, by version (measured on the installed server in
tests/integration/test_cluster_leases.py; docs/cluster.md has the details):

- 2.10: the bucket TTL (`max_age`) removes an entry silently, about the TTL after its
  last write (checked every fraction of a second); no per-message TTL.
- 2.11 and later add per-message TTLs (`Nats-TTL`, on streams with `allow_msg_ttl`) and
  optional "subject delete markers" when `max_age` removes a key's last entry
  (`subject_delete_marker_ttl`, the KV `limit_marker_ttl`). We use neither: the bucket TTL
  works on every version. Should someone add markers to the bucket, a marker (header
  `Nats-Marker-Reason`) counts as a tombstone here, like a `KV-Operation: DEL`, and a
  lease is taken over it by an update with the marker's revision (nats-py's own
  `create` only recognizes `KV-Operation` tombstones and would wait for the marker's
  own expiry: twice the TTL).

Reads that decide something (`last`) go to the stream leader (the non-direct get), so
they see every acknowledged write. The whole-bucket read (`read_all`) is a snapshot by an
ordered consumer, deleted after use; it only guides the balance, never the leases.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import nats.js.errors
from nats.js.api import DeliverPolicy, KeyValueConfig, StorageType

from watcher.cluster import checks
from watcher.cluster.checks import Finding

__all__ = ["Bucket", "Entry", "open_bucket", "open_state_bucket"]

KV_OPERATION = "KV-Operation"
MARKER_REASON = "Nats-Marker-Reason"
_STREAM_NAME_IN_USE = 10058


@dataclass(frozen=True)
class Entry:
    key: str
    revision: int
    value: bytes
    tombstone: bool  # a delete, a purge, or a server marker: the key holds nothing
    written: datetime | None = None  # when the server stored it (its clock); read_all only


def _tombstone(headers: dict[str, str] | None) -> bool:
    if not headers:
        return False
    return headers.get(KV_OPERATION) in ("DEL", "PURGE") or MARKER_REASON in headers


@dataclass(frozen=True)
class Bucket:
    js: Any  # nats-py's JetStreamContext
    kv: Any  # nats-py's KeyValue
    name: str
    ttl: float

    @property
    def stream(self) -> str:
        return f"KV_{self.name}"

    def subject(self, key: str) -> str:
        return f"$KV.{self.name}.{key}"

    async def last(self, key: str) -> Entry | None:
        """The key's latest entry, tombstones included, from the stream leader."""
        try:
            msg = await self.js.get_msg(self.stream, subject=self.subject(key))
        except nats.js.errors.NotFoundError:
            return None
        return Entry(key, int(msg.seq), msg.data or b"", _tombstone(msg.headers))

    async def read_all(self, within: float = 5.0, keys: str = ">") -> list[Entry]:
        """Every key's latest entry (tombstones included), in one ordered-consumer pass
        (TimeoutError past `within` seconds); `keys` narrows it to the keys matching a
        subject filter (`shard.x`, `job.x.>`)."""
        prefix = f"$KV.{self.name}."
        sub = await self.js.subscribe(
            f"{prefix}{keys}",
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=max(within, 5.0),
        )
        name: str | None = None
        found: dict[str, Entry] = {}
        try:
            with anyio.fail_after(within):
                info = await sub.consumer_info()
                name = info.name
                delivered = info.delivered.consumer_seq if info.delivered else 0
                for _ in range((info.num_pending or 0) + delivered):
                    msg = await sub.next_msg(timeout=within)
                    key = msg.subject[len(prefix) :]
                    meta = msg.metadata
                    entry = Entry(
                        key,
                        meta.sequence.stream,
                        msg.data,
                        _tombstone(msg.headers),
                        meta.timestamp,
                    )
                    if key not in found or found[key].revision < entry.revision:
                        found[key] = entry
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(within):
                await sub.unsubscribe()
                if name is not None:
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await self.js.delete_consumer(self.stream, name)
        return sorted(found.values(), key=lambda e: e.key)

    async def after(self, seq: int, keys: str = ">") -> list[Entry]:
        """The entries of keys matching `keys` written after stream sequence `seq`, from
        the stream leader, one request each (a read that must not miss what a replica
        lagging behind the leader had not yet applied: see `watcher.cluster.state`)."""
        subject = self.subject(keys)
        found: list[Entry] = []
        while True:
            try:
                msg = await self.js.get_msg(self.stream, seq=seq + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return found
            seq = int(msg.seq)
            key = str(msg.subject)[len(self.subject("")) :]
            found.append(Entry(key, seq, msg.data or b"", _tombstone(msg.headers)))


# Placement refused: not clustered (10074), no suitable peers (10005), not enough
# resources (10023). The bucket is then made with fewer replicas, and that is said.
_CANNOT_PLACE = (10074, 10005, 10023)


async def _create(
    js: Any, name: str, ttl: float | None, replicas: int, what: str, description: str
) -> tuple[Any, list[Finding]]:
    """Make the bucket with `replicas`, or as many as NATS can place (said)."""
    reason = ""
    for count in range(replicas, 0, -1):
        config = KeyValueConfig(
            bucket=name,
            description=description,
            history=1,
            ttl=ttl,
            replicas=count,
            storage=StorageType.FILE,
        )
        try:
            kv = await js.create_key_value(config)
        except nats.js.errors.APIError as exc:
            if getattr(exc, "err_code", None) not in _CANNOT_PLACE or count == 1:
                raise
            reason = str(exc.description or exc)
            continue
        return kv, checks.fewer_replicas(what, replicas, count, reason)
    raise AssertionError("unreachable: count 1 either returns or raises")


async def _open(
    js: Any, name: str, ttl: float | None, replicas: int, what: str, description: str
) -> tuple[Any, Any, list[Finding]]:
    """(the bucket, its stream's info, findings): created if missing."""
    stream = f"KV_{name}"
    findings: list[Finding] = []
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        try:
            _, findings = await _create(js, name, ttl, replicas, what, description)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            # another replica made it just now
        info = await js.stream_info(stream)
    clustered = bool(info.cluster is not None and info.cluster.name)
    have = info.config.num_replicas or 1
    if not findings:  # one replica on a cluster, made so by us or by someone else
        findings = checks.replicas(what, checks.REPLICAS, have, clustered)
    return await js.key_value(name), info, findings


async def open_bucket(
    js: Any, name: str, ttl: float, replicas: int
) -> tuple[Bucket, list[Finding]]:
    """The leases bucket, created if missing (TTL `ttl`, `replicas`, or as many as NATS
    can place); its findings when it exists with another TTL or one replica on a
    cluster."""
    what = f"the leases bucket {name}"
    description = "dts-watcher: who holds which shard, and which replicas are alive"
    kv, info, findings = await _open(js, name, ttl, replicas, what, description)
    findings = checks.bucket_ttl(name, info.config.max_age, ttl) + findings
    return Bucket(js, kv, name, ttl), findings


async def open_state_bucket(js: Any, name: str, replicas: int) -> tuple[Bucket, list[Finding]]:
    """The state bucket (each shard's baseline, rule memory and events not yet
    published), created if missing with no TTL and `replicas` (or as many as NATS can
    place); an error if it exists with a TTL (the state would vanish), a warning for
    one replica on a cluster."""
    what = f"the state bucket {name}"
    description = "dts-watcher: each shard's jobs, rule memory and events not yet published"
    kv, info, findings = await _open(js, name, None, replicas, what, description)
    findings = checks.state_ttl(name, info.config.max_age) + findings
    return Bucket(js, kv, name, 0.0), findings
