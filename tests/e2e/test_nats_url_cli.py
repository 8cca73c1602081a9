"""A NATS URL nobody can connect to is a configuration error (issue 12, item 5): exit 2,
one line naming the setting, from `check-config` and from `run` alike. An empty server
list used to pass `check-config`, and made `run` spin a core in nats-py's connect loop,
deaf to SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import cli_env, run_cli

pytestmark = pytest.mark.e2e

BAD_URLS = [
    ("", "no NATS server given"),
    (",,,", "no NATS server given"),
    (" , ", "no NATS server given"),
    ("nats://", "has no host"),
    ("nats://:4222", "has no host"),
    ("http://nats.internal:4222", "the scheme must be one of nats, tls, ws, wss"),
    ("nats://host:99999", "is not a NATS URL"),
    ("nats://a b:4222", "white space or control characters"),
    ("nats://ok:4222,", None),  # a trailing comma is fine: one server
    ("nats://user:pw@host:4222/x", "has no path"),
    ("nats://a:4222,ws://b:443", "cannot be mixed"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_an_unusable_nats_url_is_exit_2_naming_the_setting(
    tmp_path: Path, url: str, message: str | None, command: str
) -> None:
    if message is None and command == "run":
        return  # a valid URL: `run` would run
    env = cli_env(
        {
            "DTS_WATCHER_NATS__URL": url,
            "DTS_WATCHER_STATE__PATH": str(tmp_path / "state.sqlite3"),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIexample",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "example-secret",
        }
    )
    result = run_cli(command, env=env, cwd=tmp_path, timeout=30)  # a spin fails the test
    if message is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "nats.url (DTS_WATCHER_NATS__URL)" in line and message in line, line
    assert "pw" not in line  # a password in a URL stays out of the message
