"""The command line against bad settings and a hostile DTS (issues 12.1, 12.4, 12.12, 17.2).

Real subprocesses: `check-config` must refuse what would fail later with exit 2 and one
line, never a traceback and never the secret; `run` must stop on SIGTERM within its
shutdown bound even while a request to DTS is hanging.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from dts_sim.natsserver import NatsServer
from tests.support.cli import CliProcess, cli_env, eventually, run_cli, watcher_env
from tests.support.hostile import Answer, Dts, HostileServer, job_record

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TOKEN = "CAISsecretSTStokenNEVERshown"


@pytest.mark.parametrize(
    "token",
    [TOKEN[:6] + "\n" + TOKEN[6:], TOKEN + "\u00e9", TOKEN[:6] + "\r\nX-Injected: 1"],
    ids=["newline-inside", "non-ascii", "header-injection"],
)
def test_check_config_refuses_a_token_no_header_can_carry(tmp_path: Path, token: str) -> None:
    env = cli_env(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIkey",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
            "ALIBABA_CLOUD_SECURITY_TOKEN": token,
        }
    )
    for args in (["check-config"], ["check-config", "--probe"]):
        done = run_cli(*args, env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "ALIBABA_CLOUD_SECURITY_TOKEN" in done.stderr
        assert "Traceback" not in done.stderr
        assert "NEVERshown" not in done.stdout + done.stderr


def test_a_token_with_a_trailing_newline_works_and_is_never_shown(tmp_path: Path) -> None:
    dts = Dts({"cn-hangzhou": [job_record("a")]})
    with HostileServer(dts) as server:
        env = cli_env(
            {
                "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIkey",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
                "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN + "\n",
                "DTS_WATCHER_DTS__ENDPOINT": server.url,
                "DTS_WATCHER_NATS__URL": "nats://127.0.0.1:1",
                "DTS_WATCHER_NATS__CONNECT_TIMEOUT": "0.2",
            }
        )
        done = run_cli("check-config", "--probe", env=env, cwd=tmp_path)
    assert "ok   DTS cn-hangzhou" in done.stderr, done.stderr
    assert server.seen[0].headers["x-acs-security-token"] == TOKEN
    assert "NEVERshown" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DTS_WATCHER_POL__INTERVAL", "5"),
        ("DTS_WATCHER_RULES__DELAY_THRESHOLDS", '{"warning": "nan"}'),
        ("DTS_WATCHER_POLL__INTERVAL", "inf"),
        ("DTS_WATCHER_DTS__ENDPOINT", "https://dts example.com"),
        ("DTS_WATCHER_DTS__ENDPOINT", "http://dts.cn-hangzhou.aliyuncs.com"),
    ],
)
def test_check_config_refuses_what_would_fail_later(
    tmp_path: Path, variable: str, value: str
) -> None:
    done = run_cli("check-config", env=cli_env({variable: value}), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert variable in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_sigterm_stops_run_while_a_request_to_dts_hangs(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    body = json.dumps({"TotalRecordCount": 0}).encode() + b" " * 100_000
    hanging = Answer(200, [("Content-Type", "application/json")], body, drip=0.5)
    with HostileServer(lambda request: hanging) as server:
        env = watcher_env(
            tmp_path / "state.sqlite3",
            nats_server.url,
            server.url,
            ["cn-hangzhou"],
            DTS_WATCHER_DTS__TIMEOUT="3600",
            DTS_WATCHER_POLL__CYCLE_TIMEOUT="3600",
        )
        with CliProcess("run", env=env, cwd=tmp_path) as watcher:
            await eventually(lambda: bool(server.seen), what="the request to DTS")
            watcher.send_signal(signal.SIGTERM)
            # the shutdown bound: the cycle's grace (10 s) and the outbox flush (10 s)
            assert await watcher.wait_async(within=40) == 0, watcher.describe()
            assert "cycle.abandoned" in watcher.stderr
