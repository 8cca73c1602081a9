"""`dts-watcher silence add|list|expire`: the silences in the JetStream bucket.

    dts-watcher silence add --match region=cn-hangzhou --match tag:env=test --for 2h \\
        --comment "password rotation"          prints the new silence's id
    dts-watcher silence list [--expired] [--json]
    dts-watcher silence expire ID              ends it now

A silence needs a matcher (`--match KEY=VALUE`, repeatable: `job_id`, `job_name` (a shell
glob), `region`, `job_type`, `account`, or `tag:KEY=VALUE`); one without would silence
every job, so it is refused unless `--all` says that is meant. Bad input is exit 2,
naming the argument; NATS unreachable is exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from watcher.errors import EXIT_OK, ConfigError
from watcher.settings import Settings
from watcher.settings.alerting import MATCH_KEYS, Matcher, parse_duration
from watcher.silencing import Silence

if TYPE_CHECKING:
    from watcher.silence_bucket import SilenceBucket

KEYS_HELP = ", ".join([*MATCH_KEYS, "tag:KEY"])


def parse_matcher(values: Sequence[str]) -> Matcher:
    """`--match KEY=VALUE` arguments as a matcher; ConfigError naming the bad one."""
    fields: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--match {text!r}: expected KEY=VALUE, KEY one of {KEYS_HELP}")
        if key.startswith("tag:"):
            name = key.removeprefix("tag:")
            if not name or name in tags:
                raise ConfigError(f"--match {text!r}: a tag key, once (tag:KEY=VALUE)")
            tags[name] = value
        elif key in MATCH_KEYS:
            if key in fields:
                raise ConfigError(f"--match {text!r}: {key} is given twice")
            fields[key] = value
        else:
            raise ConfigError(f"--match {text!r}: unknown key {key!r}, one of {KEYS_HELP}")
    try:
        return Matcher(**fields, tags=tags)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"--match: {problems}") from None


def new_silence(args: argparse.Namespace, now: datetime) -> Silence:
    matcher = parse_matcher(args.match or ())
    if matcher.empty and not args.all:
        raise ConfigError(
            "--match: a silence without a matcher would silence every job; give --match "
            "KEY=VALUE, or --all if that is what you mean"
        )
    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise ConfigError(f"--for {exc}") from None
    author = args.author or _user()
    return Silence(
        id=str(uuid.uuid4()),
        match=matcher,
        start=now,
        end=now + timedelta(seconds=seconds),
        author=author,
        comment=args.comment or "",
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


def run(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        silence = new_silence(args, now)
        anyio.run(_add, settings, silence)
        print(silence.id, flush=True)
        print(
            f"dts-watcher: silenced {silence.match.describe()} until "
            f"{_time(silence.end)} ({silence.id})",
            file=sys.stderr,
        )
        return EXIT_OK
    if args.action == "expire":
        ended = anyio.run(_expire, settings, args.id, now)
        print(f"expired {ended.id} ({ended.match.describe()}) at {_time(ended.end)}", flush=True)
        return EXIT_OK
    silences = anyio.run(_all, settings)
    shown = [s for s in silences if args.expired or not s.ended(now)]
    if args.json:
        print(json.dumps([{**s.to_dict(), "state": _state(s, now)} for s in shown], indent=2))
    else:
        _table(shown, now)
    return EXIT_OK


# The NATS client loads on use: building the command line should not pay for it.


def _bucket() -> type[SilenceBucket]:
    from watcher.silence_bucket import SilenceBucket

    return SilenceBucket


async def _add(settings: Settings, silence: Silence) -> None:
    async with _bucket().open(settings.nats, create=True) as bucket:
        await bucket.add(silence)


async def _expire(settings: Settings, silence_id: str, now: datetime) -> Silence:
    from watcher.silence_bucket import NoSuchSilence

    async with _bucket().open(settings.nats, create=False) as bucket:
        try:
            return await bucket.expire(silence_id, now)
        except NoSuchSilence:
            raise ConfigError(f"silence expire {silence_id!r}: no such silence") from None


async def _all(settings: Settings) -> list[Silence]:
    async with _bucket().open(settings.nats, create=False) as bucket:
        return await bucket.all()


def _state(silence: Silence, now: datetime) -> str:
    if silence.ended(now):
        return "ended"
    return "active" if silence.active(now) else "pending"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(silences: Sequence[Silence], now: datetime) -> None:
    if not silences:
        print("no silences", flush=True)
        return
    rows = [("ID", "STATE", "MATCH", "START", "END", "AUTHOR", "COMMENT")]
    rows += [
        (
            s.id,
            _state(s, now),
            s.match.describe(),
            _time(s.start),
            _time(s.end),
            s.author,
            s.comment,
        )
        for s in silences
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), flush=True)


def arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The `silence` command's own: add, list, expire (each takes the common options)."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common], help="add a silence; prints its id", description=__doc__
    )
    add.add_argument(
        "--match",
        action="append",
        metavar="KEY=VALUE",
        help=f"which jobs ({KEYS_HELP}); repeat to narrow; job_name is a shell glob",
    )
    add.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="how long, from now: 90s, 30m, 2h, 1h30m, 2d, 1w",
    )
    add.add_argument("--comment", help="why (shown by `silence list` and `status`)")
    add.add_argument("--author", help="who (default: the user name)")
    add.add_argument(
        "--all", action="store_true", help="no --match: silence every job (meant, not a slip)"
    )
    lister = actions.add_parser("list", parents=[common], help="list the silences")
    lister.add_argument("--expired", action="store_true", help="ended ones too")
    lister.add_argument("--json", action="store_true", help="as JSON")
    expire = actions.add_parser("expire", parents=[common], help="end a silence now")
    expire.add_argument("id", metavar="ID", help="the silence's id (from `silence add` or `list`)")
