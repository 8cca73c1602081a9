"""The alert commands as a user runs them: `silence add|list|expire` and `status` as
processes beside `dts-watcher run`, against a real nats-server (its key-value bucket
holds the silences) and the DTS simulator; and bad input refused with exit 2, naming the
argument or the setting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.cli import CliProcess, cli_env, eventually, run_cli, watcher_env
from tests.support.watcher import read_stream

pytestmark = pytest.mark.e2e

HZ = "cn-hangzhou"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--for", "1h"], "--match: a silence without a matcher would silence every job"),
        (["--for", "1h", "--match", "colour=red"], "--match 'colour=red': unknown key 'colour'"),
        (["--for", "1h", "--match", "job_id"], "--match 'job_id': expected KEY=VALUE"),
        (["--for", "1h", "--match", "job_name=a[b"], "--match: job_name:"),
        (["--for", "1h", "--match", "job_type=etl"], "--match: job_type:"),
        (["--for", "1h", "--match", "region=Hang Zhou"], "--match: region:"),
        (["--for", "soon", "--match", "job_id=x"], "--for 'soon' is not a duration"),
        (["--for=-5m", "--match", "job_id=x"], "--for '-5m'"),
        (["--for", "1h", "--match", "job_id=a", "--match", "job_id=b"], "given twice"),
    ],
)
def test_silence_add_refuses_bad_input_naming_the_argument(
    tmp_path: Path, args: list[str], named: str
) -> None:
    env = cli_env({"DTS_WATCHER_NATS__URL": "nats://127.0.0.1:1"})  # never reached
    done = run_cli("silence", "add", *args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert named in done.stderr, done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DTS_WATCHER_RULES__STALL_AFTER": "-1"}, "DTS_WATCHER_RULES__STALL_AFTER"),
        (
            {
                "DTS_WATCHER_RULES__MAINTENANCE": '[{"name": "n", "match": {}, "start": "01:00", '
                '"end": "02:00", "timezone": "Nowhere/Else"}]'
            },
            "rules.maintenance.0.timezone (DTS_WATCHER_RULES__MAINTENANCE)",
        ),
        (
            {
                "DTS_WATCHER_RULES__MAINTENANCE": '[{"name": "n", "match": {}, "start": "01:00", '
                '"end": "02:00", "weekdays": ["caturday"]}]'
            },
            "rules.maintenance.0.weekdays",
        ),
        (
            {"DTS_WATCHER_RULES__OVERRIDES": '[{"match": {"job_name": "["}, "stall_after": 1}]'},
            "rules.overrides.0.match.job_name",
        ),
    ],
)
def test_bad_alert_settings_are_exit_2_naming_the_setting(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    for command in (["check-config"], ["status"], ["silence", "list"]):
        done = run_cli(*command, env=cli_env(env), cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert named in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def events_of(stream: list[dict[str, Any]], job_id: str) -> list[tuple[str, Any, Any]]:
    return [
        (e["type"].rsplit(".", 1)[1], e["data"].get("status"), e.get("silenced"))
        for e in stream
        if e["type"].startswith("dts.job.") and e["data"]["job_id"] == job_id
    ]


@pytest.mark.anyio
async def test_silences_beside_a_running_watcher(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    """A silence added while `run` runs marks the next events of its jobs; one expired by
    hand, and one that runs out, while their jobs are still failed, are each followed by
    a reminder; `status` shows what is wrong and which silence covers it."""
    simulator.add_job({"id": "dtsA", "region": HZ, "name": "orders"})
    simulator.add_job({"id": "dtsB", "region": HZ, "name": "crm", "tags": {"env": "test"}})
    simulator.add_job({"id": "dtsC", "region": HZ, "name": "pay"})
    env = watcher_env(
        tmp_path / "state.sqlite3",
        nats_server.url,
        simulator.url,
        [HZ],
        DTS_WATCHER_POLL__INTERVAL="1",
        DTS_WATCHER_POLL__JITTER="0",
        DTS_WATCHER_RULES__REPEAT_INTERVAL="0",
    )
    stream: list[dict[str, Any]] = []

    async def has(job_id: str, wanted: tuple[str, Any, Any], process: CliProcess) -> None:
        async def seen() -> bool:
            nonlocal stream
            try:
                stream = await read_stream(nats_server.url)
            except nats.js.errors.NotFoundError:
                return False
            return wanted in events_of(stream, job_id)

        await eventually(seen, what=lambda: f"{job_id} {wanted}\n{process.describe()}")

    with CliProcess("run", env=env, cwd=tmp_path) as watcher:
        await has("dtsA", ("discovered", "Synchronizing", None), watcher)
        added = run_cli(
            "silence",
            "add",
            "--match",
            "job_id=dtsA",
            "--for",
            "1h",
            "--comment",
            "db upgrade",
            env=env,
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
        one = added.stdout.strip()
        short = run_cli(
            "silence", "add", "--match", "tag:env=test", "--for", "6s", env=env, cwd=tmp_path
        )
        assert short.returncode == 0, short.stderr
        two = short.stdout.strip()
        listed = run_cli("silence", "list", "--json", env=env, cwd=tmp_path)
        assert {s["id"]: s["state"] for s in json.loads(listed.stdout)} == {
            one: "active",
            two: "active",
        }

        for job_id in ("dtsA", "dtsB", "dtsC"):
            simulator.set_job(job_id, status="Failed", error_message="DTS-070211: boom")
        await has("dtsA", ("status_changed", "Failed", one), watcher)
        await has("dtsB", ("status_changed", "Failed", two), watcher)
        await has("dtsC", ("status_changed", "Failed", None), watcher)

        status = run_cli("status", "--json", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        rows = {row["job_id"]: row for row in json.loads(status.stdout)["not_ok"]}
        assert rows["dtsA"]["silenced"] == one
        assert rows["dtsC"]["silenced"] is None
        assert [c["condition"] for c in rows["dtsC"]["conditions"]] == ["Failed"]
        assert rows["dtsC"]["conditions"][0]["since"].endswith("Z")
        text = run_cli("status", env=env, cwd=tmp_path).stdout
        assert "cn-hangzhou/dtsA (orders)  Failed" in text and one in text

        expired = run_cli("silence", "expire", one, env=env, cwd=tmp_path)
        assert expired.returncode == 0, expired.stderr
        await has("dtsA", ("reminder", "Failed", None), watcher)  # ended by hand
        await has("dtsB", ("reminder", "Failed", None), watcher)  # ran out
        unknown = run_cli("silence", "expire", "no-such-id", env=env, cwd=tmp_path)
        assert unknown.returncode == 2 and "no such silence" in unknown.stderr

    reminders = [e for e in stream if e["type"] == "dts.job.reminder"]
    assert {(e["data"]["job_id"], e["data"]["reason"]) for e in reminders} == {
        ("dtsA", "silence_ended"),
        ("dtsB", "silence_ended"),
    }
    assert "reminder" not in [kind for kind, _, _ in events_of(stream, "dtsC")]
    ended = run_cli("silence", "list", env=env, cwd=tmp_path).stdout
    assert "no silences" in ended  # both over: only `--expired` shows them
    assert one in run_cli("silence", "list", "--expired", env=env, cwd=tmp_path).stdout
