"""The `dts-watcher` command line.

Each subcommand is a small function that turns arguments into calls on the library;
no logic lives here that a test could not reach through the library itself.

Exit codes: 0 success, 1 the command ran but its goal was not met (e.g. an incomplete
fetch), 2 invalid configuration or arguments (one clear message naming the setting).
`main` maps every `WatcherError` to its exit code in one place (`watcher.errors`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from watcher import __version__
from watcher.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    MissingExtra,
    WatcherError,
    exit_code,
)
from watcher.logs import configure as configure_logging
from watcher.logs import get_logger
from watcher.settings import Settings, load_settings

log = get_logger("watcher.cli")

SIM_EXTRA = (
    "needs the simulator, which is not installed: pip install 'dts-watcher[sim]' "
    "(in a clone of the repository: python3 dev.py demo)"
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    for warning in settings.warnings():
        log.warning("config.suspicious", warning=warning)
    return settings


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    print(json.dumps(settings.masked(), indent=2, default=str), flush=True)
    for warning in settings.warnings():  # on stderr: stdout stays one JSON document
        print(f"dts-watcher: warning: {warning}", file=sys.stderr)
    if not args.probe:
        return EXIT_OK
    from watcher.probe import probe

    # The verdicts are the output here: keep the info-level log lines out of their way.
    configure_logging(args.log_level or "warning", args.log_format or settings.log.format)
    verdicts = anyio.run(probe, settings, args.config)
    for verdict in verdicts:  # on stderr: stdout stays one JSON document
        print(verdict, file=sys.stderr)
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED


def cmd_snapshot(args: argparse.Namespace) -> int:
    from watcher.dts.wiring import client_for

    settings = _settings(args)
    client = client_for(settings, args.config)

    async def fetch() -> dict[str, Any]:
        async with client:
            return (await client.fetch()).to_dict()

    result = anyio.run(fetch)
    json.dump(result, sys.stdout, indent=2 if args.pretty else None, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK if result["complete"] else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from watcher.service import open_watcher

    settings = _settings(args)

    async def serve() -> None:
        async with open_watcher(settings, args.config) as watcher:
            await watcher.run()

    anyio.run(serve)
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    from watcher.service import open_watcher

    settings = _settings(args)
    if settings.cluster.enabled:
        raise ConfigError(
            "once reads every region alone, and cluster.enabled "
            "(DTS_WATCHER_CLUSTER__ENABLED) shares them among replicas: use `run`, or turn "
            "cluster mode off for a one-off cycle (it keeps its own state file)"
        )

    async def one() -> int:
        async with open_watcher(settings, args.config) as watcher:
            await watcher.read_silences(within=settings.nats.connect_timeout)
            result = await watcher.cycle()
            flushed = await watcher.flush(within=args.publish_timeout)
            depth = watcher.store.outbox_depth()
        if not result.complete:
            for region, reason in sorted(result.reasons.items()):
                print(f"dts-watcher: incomplete fetch, {region}: {reason}", file=sys.stderr)
        if not flushed:
            print(
                f"dts-watcher: {depth} event(s) not acknowledged by JetStream; they stay in "
                f"the outbox for the next run",
                file=sys.stderr,
            )
        return EXIT_OK if result.complete and flushed else EXIT_FAILED

    return anyio.run(one)


def _event_kinds() -> tuple[str, ...]:
    from watcher.kinds import KINDS

    return tuple(KINDS)


def cmd_tail(args: argparse.Namespace) -> int:
    from watcher.tail import Filters, TailOptions, color_wanted, parse_since, tail

    settings = _settings(args)
    options = TailOptions(
        subject=args.subject,
        raw_json=args.json,
        count=args.count,
        wait=args.wait,
        filters=Filters(
            regions=tuple(args.region or ()),
            jobs=tuple(args.job or ()),
            kinds=tuple(args.kind or ()),
            min_severity=args.min_severity,
            silenced=args.silenced,
        ),
        since=parse_since(args.since) if args.since else None,
        color=color_wanted(args.color, sys.stdout),
    )

    async def run() -> int:
        return await tail(settings, options)

    return anyio.run(run)


def cmd_silence(args: argparse.Namespace) -> int:
    from watcher import silence_cli

    return silence_cli.run(args, _settings(args))


def cmd_status(args: argparse.Namespace) -> int:
    from watcher import status_cli

    return status_cli.run(args, _settings(args))


def cmd_schema(args: argparse.Namespace) -> int:
    from watcher.events import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from dts_sim.demo import run_demo
    except ImportError:
        raise MissingExtra(f"demo {SIM_EXTRA}") from None

    configure_logging(args.log_level or "warning", args.log_format or "console")
    code: int = anyio.run(run_demo, args.duration, args.scenario, args.step)
    return code


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        from dts_sim import ScenarioError
        from dts_sim.runner import serve
    except ImportError:
        raise MissingExtra(f"simulate {SIM_EXTRA}") from None

    if args.scenario_name and args.scenario and args.scenario_name != args.scenario:
        raise ConfigError("give the scenario once: as SCENARIO or as --scenario")
    scenario = args.scenario_name or args.scenario or "demo"
    configure_logging(args.log_level or "info", args.log_format or "console")
    try:
        code: int = serve(scenario, host=args.host, port=args.port, auto_advance=args.step)
    except ScenarioError as exc:
        raise ConfigError(str(exc)) from None
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dts-watcher",
        description="Watch Alibaba Cloud DTS synchronization jobs and publish change events.",
    )
    parser.add_argument("--version", action="version", version=f"dts-watcher {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $DTS_WATCHER_CONFIG, if set)",
    )
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-format", choices=["json", "console"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run the service: poll, detect, publish, until SIGTERM/SIGINT")
    p = add("once", cmd_once, "one cycle; exit 0 only if complete and every event acknowledged")
    p.add_argument(
        "--publish-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to try publishing the outbox (default 30)",
    )
    demo = "embedded NATS + DTS simulator + watcher, events shown live"
    _demo_arguments(add("demo", cmd_demo, demo))
    _tail_arguments(add("tail", cmd_tail, "subscribe to the events and print them"))
    add("schema", cmd_schema, "print the JSON Schema of the events")
    p = add("status", cmd_status, "every job not ok right now, since when, under which silence")
    p.add_argument("--json", action="store_true", help="as JSON")
    from watcher.silence_cli import arguments as silence_arguments

    text = "add, list or expire silences (shared by every replica, in JetStream)"
    silence = sub.add_parser("silence", help=text, description=text)  # options: per action
    silence.set_defaults(func=cmd_silence)
    silence_arguments(silence, common)
    p = add("check-config", cmd_check_config, "validate and print the effective configuration")
    p.add_argument(
        "--probe",
        action="store_true",
        help="also call DTS once per region and connect to NATS, and say what is wrong "
        "(exit 1 if anything is)",
    )
    p = add("snapshot", cmd_snapshot, "fetch once and print the normalized jobs as JSON")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    _simulate_arguments(add("simulate", cmd_simulate, "run the DTS simulator alone"))
    return parser


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--scenario", default="demo", help="simulator scenario (default: demo)")
    p.add_argument(
        "--step",
        type=_positive_float,
        metavar="SECONDS",
        help="advance the scenario every SECONDS (default: the scenario's own pace, 3 s)",
    )


def _tail_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--subject",
        help="subject filter (default: <prefix>.>), e.g. 'dts.job.*.*.status_changed'",
    )
    p.add_argument("--json", action="store_true", help="print raw CloudEvents envelopes")
    p.add_argument("--count", type=_positive_int, metavar="N", help="exit after N events")
    p.add_argument("--wait", type=_positive_float, metavar="SECONDS", help="exit after SECONDS")
    p.add_argument(
        "--region", action="append", metavar="REGION", help="only this region's job events"
    )
    p.add_argument("--job", action="append", metavar="JOB_ID", help="only this job's events")
    p.add_argument(
        "--kind",
        action="append",
        choices=sorted(_event_kinds()),
        metavar="KIND",
        help="only events of this kind, e.g. status_changed (repeatable)",
    )
    p.add_argument(
        "--min-severity",
        choices=["info", "warning", "critical"],
        help="only events at least this severe",
    )
    p.add_argument(
        "--silenced",
        action="store_true",
        help="also events of silenced jobs (they carry the `silenced` attribute)",
    )
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="first replay what the stream kept since WHEN (1h, 30m, 90s, 1h30m, 2d, or an "
        "ISO 8601 time), then go on live",
    )
    p.add_argument(
        "--color",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="colour by severity (default: only on a terminal, and not if NO_COLOR is set)",
    )


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "scenario_name",
        nargs="?",
        metavar="SCENARIO",
        help="built-in scenario name or path to a TOML file (default: demo)",
    )
    p.add_argument("--scenario", help="the same, as an option")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--step",
        type=float,
        default=None,
        metavar="SECONDS",
        help="advance the timeline every SECONDS (default: the scenario's step_seconds)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None and not Path(args.config).is_file():
        print(f"dts-watcher: config file {args.config} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except WatcherError as exc:
        print(f"dts-watcher: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
