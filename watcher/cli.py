"""The `dts-watcher` command line.

Each subcommand is a small function that turns arguments into calls on the library;
no logic lives here that a test could not reach through the library itself.

Exit codes: 0 success, 1 the command ran but its goal was not met (e.g. an incomplete
fetch), 2 invalid configuration or arguments (one clear message naming the setting).
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
from watcher.logs import configure as configure_logging
from watcher.settings import ConfigError, Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    return settings


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.masked(), indent=2, default=str))
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    from watcher.dts.client import DtsClient
    from watcher.dts.credentials import CredentialsError, StaticProvider

    settings = _settings(args)
    try:
        provider = StaticProvider.from_config(settings.credentials, args.config)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None

    async def fetch() -> dict[str, Any]:
        async with DtsClient(settings.dts, provider) as client:
            return (await client.fetch()).to_dict()

    result = anyio.run(fetch)
    json.dump(result, sys.stdout, indent=2 if args.pretty else None, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK if result["complete"] else EXIT_FAILED


def cmd_simulate(args: argparse.Namespace) -> int:
    from watcher.simulator import ScenarioError, serve

    configure_logging(args.log_level or "info", args.log_format or "console")
    try:
        return serve(args.scenario, host=args.host, port=args.port, auto_advance=args.step)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None


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

    add("check-config", cmd_check_config, "validate and print the effective configuration")
    p = add("snapshot", cmd_snapshot, "fetch once and print the normalized jobs as JSON")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p = add("simulate", cmd_simulate, "run the DTS simulator alone")
    p.add_argument(
        "--scenario", default="demo", help="built-in scenario name or path to a TOML file"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--step",
        type=float,
        default=None,
        metavar="SECONDS",
        help="advance the timeline every SECONDS (default: the scenario's step_seconds)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None and not Path(args.config).is_file():
        print(f"dts-watcher: config file {args.config} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, UsageError) as exc:
        print(f"dts-watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
