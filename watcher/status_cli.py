"""`dts-watcher status`: every job that is not ok right now, since when, and under which
silence (`--json` for machines).

What is not ok comes from the state file the watcher keeps (`state.path`), read only
(`watcher.store.reader`: safe beside a running watcher; it sees the last committed
cycle), judged by the configured rules at the present moment (`watcher.board`, the same
picture as the `dts_watcher_job_condition` gauges): a failure status, a delay level, a
stall, flapping, an expiry. The silences are read from the bucket; if NATS cannot be
reached, the maintenance windows still apply and stderr says the silences are unknown.
Run it with the watcher's own configuration.

With several replicas (`cluster.enabled`) the jobs and rule memory come from the state
bucket in JetStream (each shard as its holder last saved it), and a table says which
member holds which shard, since when (the leases bucket; `-` for a shard nobody holds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from watcher.board import NotOk, not_ok
from watcher.errors import EXIT_OK, PublishError
from watcher.events import format_time
from watcher.rules import Rules
from watcher.settings import Settings
from watcher.silencing import Silence, Silencing
from watcher.store.reader import read_state


async def _silences(settings: Settings) -> list[Silence] | None:
    from watcher.silence_bucket import SilenceBucket

    try:
        async with SilenceBucket.open(settings.nats, create=False) as bucket:
            return await bucket.all()
    except PublishError as exc:
        print(f"dts-watcher: silences unknown ({exc}); maintenance windows apply", file=sys.stderr)
        return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    shards: list[dict[str, str | None]] | None = None
    if settings.cluster.enabled:
        from watcher.cluster.reader import read_cluster

        picture = anyio.run(read_cluster, settings)
        baseline, memory = picture.baseline, picture.memory
        shards = _holders(settings, picture.view)
    else:
        baseline, memory = read_state(settings.state.file)
    silences = anyio.run(_silences, settings)
    silencing = Silencing(silences or (), settings.rules.maintenance)
    rows = not_ok(baseline, memory.jobs, Rules(settings.rules), silencing, now)
    if args.json:
        document: dict[str, Any] = {
            "time": format_time(now),
            "jobs": len(baseline),
            "silences_known": silences is not None,
            "not_ok": [row.to_dict(now) for row in rows],
            "silences": [{"id": sid, "match": m.describe()} for sid, m in silencing.active(now)],
        }
        if shards is not None:
            document["shards"] = shards
        print(json.dumps(document, indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    if shards is not None:
        _print_table([("SHARD", "MEMBER", "SINCE")] + [_row(s) for s in shards])
        print(flush=True)
    if not rows:
        print(f"all {len(baseline)} jobs ok", flush=True)
        return EXIT_OK
    _table(rows, now)
    return EXIT_OK


def _holders(settings: Settings, view: Any) -> list[dict[str, str | None]]:
    """Every configured shard (and any other the bucket shows) with its holder."""
    configured = [
        f"{account.name}/{region}"
        for account in settings.watched_accounts()
        for region in account.regions
    ]
    names = configured + sorted(set(view.leases) - set(configured))
    out: list[dict[str, str | None]] = []
    for name in names:
        claim = view.leases.get(name)
        out.append(
            {
                "shard": name,
                "member": claim.member if claim is not None else None,
                "since": claim.since if claim is not None else None,
            }
        )
    return out


def _row(shard: dict[str, str | None]) -> tuple[str, ...]:
    return (str(shard["shard"]), shard["member"] or "-", shard["since"] or "-")


def _table(rows: list[NotOk], now: datetime) -> None:
    lines = [("JOB", "CONDITION", "SEVERITY", "SINCE", "FOR", "SILENCED BY")]
    for row in rows:
        job = row.job
        where = f"{job.region}/{job.job_id}"
        if job.direction != "Forward":
            where += f"/{job.direction}"
        if job.account != "default":
            where = f"{job.account}:{where}"
        if job.job_name:
            where += f" ({job.job_name})"
        for condition in row.conditions:
            since = condition.since
            lines.append(
                (
                    where,
                    condition.name,
                    condition.severity,
                    format_time(since).split(".")[0].rstrip("Z") + "Z" if since else "-",
                    _duration((now - since).total_seconds()) if since else "-",
                    row.silenced or "-",
                )
            )
    _print_table(lines)


def _print_table(lines: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip(), flush=True)


def _duration(seconds: float) -> str:
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
