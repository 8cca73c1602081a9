"""The watcher's own kinds: what it says about itself (started, blind, recovered...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from watcher.kinds.base import (
    NULLABLE_STR,
    TIME_OR_NULL,
    Data,
    Kind,
    always,
    fields_summary,
    shorten,
)


def _identity_summary(data: Data) -> str:
    regions = data.get("regions")
    where = ", ".join(map(str, regions)) if isinstance(regions, list) else "?"
    return f"version {data.get('version')}, regions {where}"


def _incomplete_summary(data: Data) -> str:
    regions = data.get("regions")
    if not isinstance(regions, Mapping):
        return fields_summary(data)
    parts = []
    for name, why in sorted(regions.items()):
        why = why if isinstance(why, Mapping) else {}
        parts.append(f"{name}: {why.get('error_code')} ({shorten(why.get('error'))})")
    return "; ".join(parts)


def _unavailable_summary(data: Data) -> str:
    return (
        f"{data.get('region')} unreadable for {data.get('failed_cycles')} cycles since "
        f"{data.get('unavailable_since')}: {data.get('error_code')} "
        f"({shorten(data.get('error_message'))})"
    )


def _recovered_summary(data: Data) -> str:
    return (
        f"{data.get('region')} readable again after {data.get('failed_cycles')} failed "
        f"cycles (since {data.get('unavailable_since')}, last {data.get('last_error_code')})"
    )


def _heartbeat_summary(data: Data) -> str:
    return (
        f"{data.get('jobs')} jobs, {data.get('cycles')} cycles "
        f"({data.get('incomplete_cycles')} incomplete), outbox {data.get('outbox_depth')}, "
        f"NATS {'connected' if data.get('nats_connected') else 'disconnected'}"
    )


_IDENTITY = {
    "version": {"type": "string"},
    "settings_digest": {"type": "string"},
    "regions": {"type": "array", "items": {"type": "string"}},
    # several replicas: this replica's member name (its regions are those it may hold)
    "member": {"type": "string"},
}
STARTED = Kind(
    "started", "watcher", "the service started", always("info"), _IDENTITY, (), _identity_summary
)
STOPPED = Kind(
    "stopped",
    "watcher",
    "the service is stopping (after its last cycle)",
    always("info"),
    _IDENTITY,
    (),
    _identity_summary,
)
HEARTBEAT = Kind(
    "heartbeat",
    "watcher",
    "every `health.heartbeat_interval` seconds: the watcher is alive, and its counters",
    always("info"),
    {
        "jobs": {"type": "integer"},
        "jobs_by_status": {"type": "object"},
        "cycles": {"type": "integer"},
        "incomplete_cycles": {"type": "integer"},
        "events_emitted": {"type": "object"},
        "outbox_depth": {"type": "integer"},
        "dead_letters": {"type": "integer"},
        "last_complete_cycle": TIME_OR_NULL,
        "regions_unavailable": {"type": "array", "items": {"type": "string"}},
        "nats_connected": {"type": "boolean"},
    },
    (),
    _heartbeat_summary,
)
CYCLE_INCOMPLETE = Kind(
    "cycle_incomplete",
    "watcher",
    "a cycle could not read every region completely (no job is judged gone from it)",
    always("warning"),
    {"regions": {"type": "object"}},
    (),
    _incomplete_summary,
)
SOURCE_UNAVAILABLE = Kind(
    "source_unavailable",
    "watcher",
    "a region could not be read for `health.unavailable_after` cycles in a row",
    always("critical"),
    {
        "region": {"type": "string"},
        "failed_cycles": {"type": "integer"},
        "unavailable_since": TIME_OR_NULL,
        "error_code": NULLABLE_STR,
        "error_message": NULLABLE_STR,
    },
    (),
    _unavailable_summary,
)
SOURCE_RECOVERED = Kind(
    "source_recovered",
    "watcher",
    "a region announced unavailable was read completely again",
    always("info"),
    {
        "region": {"type": "string"},
        "unavailable_since": TIME_OR_NULL,
        "failed_cycles": {"type": "integer"},
        "last_error_code": NULLABLE_STR,
    },
    (),
    _recovered_summary,
)


def _dead_letter_summary(data: Data) -> str:
    return (
        f"{data.get('event_type')} {data.get('event_id')} on {shorten(data.get('subject'), 80)} "
        f"set aside ({data.get('bytes')} bytes): {shorten(data.get('reason'))}"
    )


EVENT_DEAD_LETTERED = Kind(
    "event_dead_lettered",
    "watcher",
    "JetStream refused an event for good (too large, an unusable subject): it was set "
    "aside in the state file's `dead_letters` table and the outbox went on",
    always("critical"),
    {
        "event_id": {"type": "string"},
        "event_type": NULLABLE_STR,
        "subject": {"type": "string"},
        "bytes": {"type": "integer"},
        "reason": {"type": "string"},
    },
    (),
    _dead_letter_summary,
)


def _shard_summary(data: Data) -> str:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"{data.get('account')}/{data.get('region')} by {data.get('member')}{reason}"


_SHARD = {
    "account": {"type": "string"},
    "region": {"type": "string"},
    "member": {"type": "string"},
}
SHARD_ACQUIRED = Kind(
    "shard_acquired",
    "watcher",
    "several replicas: this member took the lease of a shard (an account's region) and "
    "watches it from now on",
    always("info"),
    _SHARD,
    ("account", "region", "member"),
    _shard_summary,
    {"account": "account", "region": "region", "member": "member"},
)
SHARD_RELEASED = Kind(
    "shard_released",
    "watcher",
    "several replicas: this member no longer watches a shard: handed over to another "
    "(`reason` handover), given up while stopping (stopping), or its lease was lost "
    "(lost: a warning; another member takes it over)",
    always("info"),
    {**_SHARD, "reason": {"enum": ["handover", "stopping", "lost"]}},
    ("account", "region", "member"),
    _shard_summary,
    {"account": "account", "region": "region", "member": "member", "reason": "reason"},
)

# Every kind of the watcher's own events, in the order they are listed.
ALL: Final[tuple[Kind, ...]] = (
    STARTED,
    STOPPED,
    HEARTBEAT,
    CYCLE_INCOMPLETE,
    SOURCE_UNAVAILABLE,
    SOURCE_RECOVERED,
    EVENT_DEAD_LETTERED,
    SHARD_ACQUIRED,
    SHARD_RELEASED,
)
