"""`dts-watcher tail`: print events as they are published, one line each (or raw JSON).

Live by default: a core NATS subscription, which sees what is published from now on.
With `--since 1h` (or a timestamp) it first replays what the stream kept since then,
through an ordered JetStream consumer (ephemeral, flow-controlled, nothing to clean up)
that starts at that time and then simply carries on with live events.

Events of silenced jobs (the `silenced` attribute) are hidden unless `--silenced`.
Filters (`--region`, `--job`, `--kind`, `--min-severity`) are applied to each envelope;
when they allow it, the subscription itself is narrowed to the matching subjects
(`<prefix>.job.<region>.<job_id>.<kind>`), so the server filters too. `--region` and
`--job` match job events only.

Colours: the severity and kind columns take the severity's colour when stdout is a
terminal and `NO_COLOR` is unset (https://no-color.org); `--color` / `--no-color` decide
instead. Raw JSON (`--json`) is never coloured.

Whoever can publish on the stream can put anything in a message, so nothing is printed
as it came: every line has terminal control characters shown as escapes
(`watcher.printable`), `--json` prints the envelope re-encoded with them as `\\uXXXX`, and a
message that is not an event (not JSON, not a CloudEvent, too deeply nested) is not
printed: it is counted, and said on stderr with why, at once and in a total at the end.
The subject filter for `--region` / `--job` uses the subject escaping of the watcher
(`watcher.subjects`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import anyio
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from watcher import natsconn
from watcher.errors import ConfigError, why
from watcher.events import parse_envelope, summary
from watcher.kinds import JOB_KINDS, KINDS, SEVERITIES
from watcher.printable import json_printable, printable
from watcher.probe import explain_connection
from watcher.settings import Settings
from watcher.signals import stop_on_signal
from watcher.subjects import subject_token

_RESET = "\x1b[0m"
_COLOURS = {"info": "\x1b[32m", "warning": "\x1b[33m", "critical": "\x1b[1;31m"}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


class TailUsageError(ConfigError):
    """A filter combination or a --since value that cannot work; said in one line."""


# -- options -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    regions: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_severity: str | None = None
    silenced: bool = False  # also show events of silenced jobs

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise TailUsageError(f"unknown event kind {unknown[0]!r}: one of {', '.join(KINDS)}")
        if self.min_severity is not None and self.min_severity not in SEVERITIES:
            raise TailUsageError(f"unknown severity {self.min_severity!r}")
        if (self.regions or self.jobs) and self.kinds and not set(self.kinds) & set(JOB_KINDS):
            raise TailUsageError(
                "--region and --job match job events only, and every --kind given is a "
                "watcher event kind"
            )

    @property
    def active(self) -> bool:
        return bool(self.regions or self.jobs or self.kinds or self.min_severity)

    def matches(self, document: Mapping[str, Any]) -> bool:
        kind_type = str(document.get("type", ""))
        kind = kind_type.rsplit(".", 1)[-1]
        is_job = kind_type.startswith("dts.job.")
        data = document.get("data")
        data = data if isinstance(data, Mapping) else {}
        if document.get("silenced") and not self.silenced:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        if self.regions and not (is_job and data.get("region") in self.regions):
            return False
        if self.jobs and not (is_job and data.get("job_id") in self.jobs):
            return False
        if self.min_severity is not None:
            severity = str(document.get("severity", "info"))
            rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
            if rank < SEVERITIES.index(self.min_severity):
                return False
        return True

    def subject(self, prefix: str) -> str:
        """The narrowest single subject that still carries every matching event."""

        def one(values: Sequence[str]) -> str:
            return subject_token(values[0]) if len(values) == 1 else "*"

        job_kinds = [k for k in self.kinds if k in JOB_KINDS]
        if self.regions or self.jobs:
            kind = job_kinds[0] if len(job_kinds) == 1 else "*"
            return f"{prefix}.job.{one(self.regions)}.{one(self.jobs)}.{kind}"
        if self.kinds and len(job_kinds) == len(self.kinds):
            return f"{prefix}.job.*.*.{one(self.kinds)}"
        if self.kinds and not job_kinds:
            return f"{prefix}.watcher.{one(self.kinds)}"
        return f"{prefix}.>"


@dataclass(frozen=True)
class TailOptions:
    subject: str | None = None  # overrides the subject derived from the filters
    raw_json: bool = False
    count: int | None = None
    wait: float | None = None
    filters: Filters = Filters()
    since: datetime | None = None
    color: bool = False


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`90s`, `30m`, `1h`, `1h30m`, `2d`, a bare number of seconds, or an ISO 8601 time
    (UTC when it has no offset)."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    match = _DURATION.match(value) if value else None
    if match and any(match.groups()):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return now - timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TailUsageError(
            f"--since {text!r}: give a duration like 90s, 30m, 1h, 1h30m, 2d or a time like "
            "2026-11-28T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise TailUsageError(f"--since {text!r} is in the future")
    return moment


def color_wanted(
    flag: bool | None, stream: TextIO, environ: Mapping[str, str] | None = None
) -> bool:
    """--color / --no-color if given; else only on a terminal without NO_COLOR."""
    if flag is not None:
        return flag
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# -- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A message that is not an event: not printed, counted, and said on stderr."""

    reason: str


def render(data: bytes, subject: str, options: TailOptions) -> str | Skipped | None:
    """The line to print for one message; None when the filters reject it; `Skipped`
    when it is not an event. Never raises; never returns a terminal control character
    (colours aside)."""
    try:
        document = parse_envelope(data)
    except ValueError as exc:
        return Skipped(f"not a CloudEvent ({shorten_reason(exc)})")
    except RecursionError:
        return Skipped("not a CloudEvent (JSON nested too deeply)")
    try:
        if not options.filters.matches(document):
            return None
        if options.raw_json:
            return json_printable(document)
        line = printable(summary(document))
        return colorize(line, document) if options.color else line
    except Exception as exc:  # an event of a shape nothing here expected
        return Skipped(f"cannot be shown ({type(exc).__name__})")


def shorten_reason(exc: BaseException, limit: int = 80) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(text if len(text) <= limit else text[: limit - 1] + "…")


def colorize(line: str, document: Mapping[str, Any]) -> str:
    """Severity and kind columns in the severity's colour (whole line if the layout differs)."""
    severity = str(document.get("severity", "info"))
    colour = _COLOURS.get(severity, "")
    if not colour:
        return line
    start = len(printable(str(document.get("time", "")))) + 1
    end = start + 8 + 1 + 24  # `{severity:<8} {kind:<24}`, as summary() lays them out
    if not line[start:].startswith(severity):
        return f"{colour}{line}{_RESET}"
    head, columns, rest = line[:start], line[start:end], line[end:]
    text = columns.rstrip()
    return f"{head}{colour}{text}{_RESET}{columns[len(text) :]}{rest}"


# -- the command -------------------------------------------------------------------------


async def tail(
    settings: Settings,
    options: TailOptions | None = None,
    *,
    out: TextIO | None = None,
    ready: Callable[[], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """Print events until `count` were printed, `wait` seconds passed, or a signal came.

    `ready` is called once the subscription is in place (tests publish after it).
    """
    options = options or TailOptions()
    subject = options.subject or options.filters.subject(settings.nats.subject_prefix)
    nc = await _connect(settings)
    if nc is None:
        return 1
    printer = _Printer(options, out or sys.stdout)
    try:
        if not await _subscribe(nc, subject, settings, options, printer.show):
            return 1
        await nc.flush()
        if ready is not None:
            ready()
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(stop_on_signal, printer.done)
            with anyio.move_on_after(options.wait if options.wait is not None else float("inf")):
                await printer.done.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()
        printer.report()
    return 0


async def _connect(settings: Settings) -> Any:
    """A connection, or None after saying why not on stderr, within a bounded time (a
    server whose certificate fails verification is retried a few times, then named)."""
    s = settings.nats
    errors: list[BaseException] = []

    async def collect(exc: Exception) -> None:  # reported once, below, in plain words
        errors.append(exc)

    budget = s.connect_timeout * 2 * len(s.servers) + 2
    try:
        with anyio.fail_after(budget):
            return await natsconn.connect(
                s, error_cb=collect, max_reconnect_attempts=3, reconnect_time_wait=0.5
            )
    except TimeoutError:
        reason = explain_connection(errors, s.display_url) if errors else None
        _fail(f"cannot connect to NATS: {reason or f'no answer within {budget:g}s'}")
    except Exception as exc:
        _fail(f"cannot connect to NATS: {explain_connection([*errors, exc], s.display_url)}")
    return None


class _Printer:
    """Prints what the filters let through, and says when `count` lines were printed."""

    def __init__(self, options: TailOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.shown = 0
        self.skipped = 0
        self.done = anyio.Event()

    async def show(self, msg: Msg) -> None:
        if self.done.is_set():
            return
        line = render(msg.data, msg.subject, self.options)
        if line is None:
            return
        if isinstance(line, Skipped):
            self.skipped += 1
            _fail(f"skipped a message on {printable(msg.subject)[:300]}: {line.reason}")
            return
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:  # `dts-watcher tail | head`: the reader is gone
            self.done.set()
            return
        self.shown += 1
        if self.options.count is not None and self.shown >= self.options.count:
            self.done.set()

    def report(self) -> None:
        if self.skipped:
            _fail(f"{self.skipped} message(s) skipped: not events (see above)")


async def _subscribe(
    nc: Any,
    subject: str,
    settings: Settings,
    options: TailOptions,
    show: Callable[[Msg], Awaitable[None]],
) -> bool:
    """Live (a core subscription) or, with `--since`, a replay first; False on failure."""
    if options.since is None:
        await nc.subscribe(subject, cb=show)
        return True
    stream = settings.nats.stream
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=options.since
    )
    try:
        await nc.jetstream().subscribe(
            subject, stream=stream, cb=show, ordered_consumer=True, config=config
        )
    except nats.js.errors.NotFoundError:
        _fail(
            f"stream {stream} not found at {settings.nats.display_url}: nothing to replay "
            "(has the watcher run?)"
        )
        return False
    except Exception as exc:
        _fail(f"cannot replay from stream {stream}: {why(exc)}")
        return False
    return True


def _fail(message: str) -> None:
    print(f"dts-watcher: {message}", file=sys.stderr)
