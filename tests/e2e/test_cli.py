"""The command line as a user meets it: configuration, the DTS side, tail, schema, demo.

Every command runs as a subprocess (`python -m watcher ...`) with an environment built
from scratch (see support.py). The DTS side is the project's simulator, NATS is the real
nats-server; nothing is mocked.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import nats
import pytest

from dts_sim import ScenarioState, load_scenario
from dts_sim.natsserver import NatsServer, free_port
from tests.support.cli import (
    DEADLINE,
    CliProcess,
    cli_env,
    dts_env,
    eventually,
    run_cli,
)
from watcher.events import JOB_KINDS, Event

pytestmark = pytest.mark.e2e

MASK = "**********"
SECRET_KEY = "e2e-alibaba-secret-7Qz9"
SECRET_TOKEN = "e2e-sts-token-Vb31"
SECRET_NATS = "e2e-nats-password-Kx42"


# --------------------------------------------------------------------------------------
# check-config
# --------------------------------------------------------------------------------------


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    env = cli_env(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-e2e-id",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET_KEY,
            "ALIBABA_CLOUD_SECURITY_TOKEN": SECRET_TOKEN,
            "DTS_WATCHER_NATS__USER": "watcher",
            "DTS_WATCHER_NATS__PASSWORD": SECRET_NATS,
            "DTS_WATCHER_POLL__INTERVAL": "7",
            "DTS_WATCHER_DTS__REGIONS": '["cn-beijing", "cn-shanghai"]',
            "DTS_WATCHER_NATS__SUBJECT_PREFIX": "acme.dts",
        }
    )
    result = run_cli("check-config", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["poll"]["interval"] == 7
    assert config["dts"]["regions"] == ["cn-beijing", "cn-shanghai"]
    assert config["nats"]["subject_prefix"] == "acme.dts"
    assert config["nats"]["user"] == "watcher"
    assert config["credentials"]["access_key_id"] == "LTAI-e2e-id"
    assert config["credentials"]["access_key_secret"] == MASK
    assert config["credentials"]["security_token"] == MASK
    assert config["nats"]["password"] == MASK
    # defaults of the public contract are in effect where nothing was set
    assert config["nats"]["url"] == "nats://127.0.0.1:4222"
    assert config["nats"]["stream"] == "DTS_EVENTS"
    assert config["rules"]["delay_thresholds"] == {"warning": 60, "critical": 300}
    for secret in (SECRET_KEY, SECRET_TOKEN, SECRET_NATS):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DTS_WATCHER_POLL__INTERVAL", "abc"),
        ("DTS_WATCHER_DTS__REGIONS", "not-json"),
        ("DTS_WATCHER_RULES__DELAY_THRESHOLDS", "{not json"),
        ("DTS_WATCHER_NATS__SUBJECT_PREFIX", "dts.*"),
    ],
)
def test_check_config_rejects_an_invalid_value_naming_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = run_cli("check-config", env=cli_env({variable: value}), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


def test_check_config_names_the_missing_half_of_the_access_key(tmp_path: Path) -> None:
    env = cli_env({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-e2e-id"})
    result = run_cli("check-config", env=env, cwd=tmp_path)

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in lines[0]


def test_check_config_reads_a_toml_file_given_by_option_or_variable(tmp_path: Path) -> None:
    config = tmp_path / "watcher.toml"
    config.write_text(
        "[dts]\n"
        'regions = ["cn-shenzhen"]\n'
        "[poll]\n"
        "interval = 42\n"
        "[nats]\n"
        'stream = "E2E_STREAM"\n'
        "[credentials]\n"
        'access_key_id = "LTAI-from-toml"\n'
        f'access_key_secret = "{SECRET_KEY}"\n'
    )
    by_option = run_cli("check-config", "--config", str(config), env=cli_env(), cwd=tmp_path)
    by_variable = run_cli(
        "check-config",
        env=cli_env({"DTS_WATCHER_CONFIG": config, "DTS_WATCHER_POLL__INTERVAL": "9"}),
        cwd=tmp_path,
    )

    for result in (by_option, by_variable):
        assert result.returncode == 0, result.stderr
        assert SECRET_KEY not in result.stdout + result.stderr
        effective = json.loads(result.stdout)
        assert effective["dts"]["regions"] == ["cn-shenzhen"]
        assert effective["nats"]["stream"] == "E2E_STREAM"
        assert effective["credentials"]["access_key_id"] == "LTAI-from-toml"
        assert effective["credentials"]["access_key_secret"] == MASK
    assert json.loads(by_option.stdout)["poll"]["interval"] == 42
    # the environment wins over the file
    assert json.loads(by_variable.stdout)["poll"]["interval"] == 9


def test_check_config_rejects_an_unknown_key_in_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[poll]\nintervall = 5\n")

    result = run_cli("check-config", "--config", str(config), env=cli_env(), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "intervall" in lines[0]


def test_check_config_fails_on_a_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "watcher.toml"
    by_option = run_cli("check-config", "--config", str(missing), env=cli_env(), cwd=tmp_path)
    by_variable = run_cli(
        "check-config", env=cli_env({"DTS_WATCHER_CONFIG": missing}), cwd=tmp_path
    )

    for result in (by_option, by_variable):
        assert result.returncode == 2
        assert result.stdout == ""
        assert str(missing) in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------------------
# Invalid arguments, schema
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["frobnicate"], "frobnicate"),
        (["demo", "--duration", "abc"], "--duration"),
        pytest.param(
            ["demo", "--duration", "-5"],
            "--duration",
        ),
        (["once", "--publish-timeout", "soon"], "--publish-timeout"),
    ],
    ids=["unknown-command", "duration-not-a-number", "negative-duration", "bad-timeout"],
)
def test_invalid_arguments_exit_2_naming_the_argument(
    tmp_path: Path, args: list[str], named: str
) -> None:
    result = run_cli(*args, env=cli_env(), cwd=tmp_path, timeout=DEADLINE)

    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def _envelope(kind: str, severity: Any, data: dict[str, Any]) -> Event:
    return Event(
        kind=kind,
        severity=severity,
        time=datetime(2024, 3, 1, 2, 0, tzinfo=UTC),
        data=data,
        id=str(uuid.uuid4()),
        region=data["region"],
        job_id=data["job_id"],
    )


JOB = {
    "job_id": "dtse2e01",
    "job_name": "orders -> warehouse",
    "region": "cn-hangzhou",
    "direction": "Forward",
    "job_type": "sync",
    "account": "default",
}
DISCOVERED = _envelope(
    "discovered",
    "info",
    {**JOB, "status": "Synchronizing", "job": {**JOB, "status": "Synchronizing"}},
)
FAILED = _envelope(
    "status_changed",
    "critical",
    {
        **JOB,
        "status": "Failed",
        "previous_status": "Synchronizing",
        "error_message": "DTS-070211: Connect Source DB failed",
    },
)


def test_schema_is_a_json_schema_that_accepts_events_and_rejects_garbage(
    tmp_path: Path,
) -> None:
    result = run_cli("schema", env=cli_env(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for event in (DISCOVERED, FAILED):
        validator.validate(event.envelope())
    broken = FAILED.envelope()
    del broken["data"]["previous_status"]
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**DISCOVERED.envelope(), "specversion": "0.3"})


# --------------------------------------------------------------------------------------
# simulate + snapshot: the DTS side, end to end
# --------------------------------------------------------------------------------------


def _job_keys(jobs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(j["region"], j["job_id"], j["direction"]) for j in jobs}


def test_snapshot_reads_every_job_of_a_multipage_multiregion_simulator(tmp_path: Path) -> None:
    scenario = load_scenario("multipage")
    regions = scenario.all_regions()
    assert len(regions) == 3
    specs = {(j.region, j.id, j.direction): j for j in ScenarioState(scenario).jobs()}
    port = free_port()

    # --step 0: the timeline only moves on request, so the listing cannot change under us
    with CliProcess(
        "simulate",
        "--scenario",
        "multipage",
        "--port",
        str(port),
        "--step",
        "0",
        env=cli_env(),
        cwd=tmp_path,
    ) as simulator:
        banner = simulator.wait_for_line(lambda line: "DTS simulator serving" in line)
        found = re.search(r" at (http://\S+)", banner)
        assert found, banner
        url = found.group(1)
        assert urlsplit(url).port == port

        served = httpx.get(f"{url}/_sim/state", timeout=DEADLINE).json()
        served_keys = {
            (region, job["id"], job.get("direction", "Forward"))
            for region, jobs in served["regions"].items()
            for job in jobs
        }
        assert served_keys == set(specs)

        result = run_cli("snapshot", env=cli_env(dts_env(url, regions)), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        assert snapshot["complete"] is True
        assert set(snapshot["regions"]) == set(regions)
        assert all(r["complete"] for r in snapshot["regions"].values())
        assert snapshot["regions"]["cn-hangzhou"]["pages"] > 1  # paging was exercised
        jobs = snapshot["jobs"]
        assert len(jobs) == len(specs)
        assert _job_keys(jobs) == set(specs)
        for job in jobs:
            spec = specs[(job["region"], job["job_id"], job["direction"])]
            assert job["job_name"] == spec.name
            assert job["status"] == spec.status  # normalized, whatever the spelling served
            assert job["delay_seconds"] == spec.delay
        assert "sim-access-key-secret" not in result.stdout + result.stderr

        wrong = dts_env(
            url, regions, key_id="LTAI-e2e-not-a-key", key_secret="e2e-wrong-secret-Hp55"
        )
        denied = run_cli("snapshot", env=cli_env(wrong), cwd=tmp_path)
        assert denied.returncode != 0
        assert "InvalidAccessKeyId.NotFound" in denied.stdout + denied.stderr
        assert "e2e-wrong-secret-Hp55" not in denied.stdout + denied.stderr
        if denied.stdout.strip():  # if it prints a snapshot, it must not claim completeness
            assert json.loads(denied.stdout)["complete"] is False
            assert json.loads(denied.stdout)["jobs"] == []

        simulator.send_signal(signal.SIGTERM)
        assert simulator.wait() == 0, simulator.describe()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# --------------------------------------------------------------------------------------
# tail
# --------------------------------------------------------------------------------------


async def _subscribers(monitor: str, subject: str) -> int:
    """How many connections subscribe to `subject`, per the server's monitoring port."""
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            answer = (await client.get(f"{monitor}/connz", params={"subs": 1})).json()
        except httpx.HTTPError:  # the monitoring listener may come up a moment later
            return 0
    return sum(subject in (c.get("subscriptions_list") or []) for c in answer["connections"])


@pytest.mark.anyio
async def test_tail_prints_each_event_readable_or_raw(tmp_path: Path) -> None:
    monitor_port = free_port()
    monitor = f"http://127.0.0.1:{monitor_port}"
    (tmp_path / "nats").mkdir()
    server = NatsServer(store_dir=tmp_path / "nats", extra_args=("-m", str(monitor_port)))
    env = cli_env({"DTS_WATCHER_NATS__URL": server.url})
    with (
        server,
        CliProcess("tail", "--count", "2", env=env, cwd=tmp_path) as readable,
        CliProcess("tail", "--count", "2", "--json", env=env, cwd=tmp_path) as raw,
    ):
        # publish only once both have subscribed (the server says so): a core NATS
        # subscriber does not see what was published before it subscribed
        async def both_subscribed() -> bool:
            assert readable.popen.poll() is None, readable.describe()
            assert raw.popen.poll() is None, raw.describe()
            return await _subscribers(monitor, "dts.>") >= 2

        await eventually(both_subscribed, what="both tails to subscribe")

        nc = await nats.connect(server.url)
        try:
            for event in (DISCOVERED, FAILED):
                await nc.publish(
                    event.nats_subject("dts"), event.to_json(), headers=event.headers()
                )
            await nc.flush()
        finally:
            await nc.close()

        assert await readable.wait_async() == 0, readable.describe()
        assert await raw.wait_async() == 0, raw.describe()

    lines = readable.stdout_lines
    assert len(lines) == 2, readable.describe()
    assert "discovered" in lines[0]
    assert "cn-hangzhou/dtse2e01" in lines[0]
    assert "orders -> warehouse" in lines[0]
    assert "Synchronizing" in lines[0]
    assert "status_changed" in lines[1]
    assert "Synchronizing -> Failed" in lines[1]
    assert "DTS-070211" in lines[1]
    assert "critical" in lines[1]

    assert len(raw.stdout_lines) == 2, raw.describe()
    assert [json.loads(line) for line in raw.stdout_lines] == [
        DISCOVERED.envelope(),
        FAILED.envelope(),
    ]


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def _refuses(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError:
        return True
    return False


DEMO_TEST = "test_demo_shows_every_kind_of_event_and_leaves_nothing_behind"


@pytest.fixture(scope="module", autouse=True)
def demo_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliProcess | None]:
    """`demo --duration 20` takes 20 s of wall time on any machine. When its test is
    selected, the demo starts with this module's first test and plays while the others
    run; its test, last in the module, then only waits for the outcome."""
    if not any(item.name == DEMO_TEST for item in request.session.items):
        yield None
        return
    folder = tmp_path_factory.mktemp("demo")
    args = ("demo", "--duration", "20", "--step", "1")
    with CliProcess(*args, env=cli_env(), cwd=folder) as demo:
        yield demo


def test_simulate_takes_the_scenario_as_docs_show_and_a_busy_port_in_one_line(
    tmp_path: Path,
) -> None:
    port = free_port()
    with CliProcess("simulate", "demo", "--port", str(port), env=cli_env(), cwd=tmp_path) as sim:
        banner = sim.wait_for_line(lambda line: "DTS simulator serving" in line)
        assert "scenario 'demo'" in banner
        busy = run_cli("simulate", "demo", "--port", str(port), env=cli_env(), cwd=tmp_path)
        sim.send_signal(signal.SIGINT)
        assert sim.wait() == 0
    assert busy.returncode == 2
    assert len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr


def test_check_config_warns_about_a_region_dts_does_not_serve(tmp_path: Path) -> None:
    env = cli_env({"DTS_WATCHER_DTS__REGIONS": '["cn-hangzou"]'})
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # valid, but probably wrong: a warning
    assert json.loads(result.stdout)["dts"]["regions"] == ["cn-hangzou"]
    assert "warning: region 'cn-hangzou' is not one DTS serves" in result.stderr
    assert "did you mean 'cn-hangzhou'?" in result.stderr


@pytest.mark.parametrize("command", ["demo", "simulate"])
def test_without_the_simulator_the_command_says_how_to_get_it(command: str, tmp_path: Path) -> None:
    """A runtime install has no `dts_sim`: one line saying which extra to install."""
    hide = "import sys, runpy; sys.modules['dts_sim'] = None; sys.argv[1:] = sys.argv[2:]; "
    run = "runpy.run_module('watcher', run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", hide + run, "--", command],
        env=cli_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"dts-watcher: {command} needs the simulator, which is not installed: "
        "pip install 'dts-watcher[sim]' (in a clone of the repository: python3 dev.py demo)"
    ]


def test_demo_shows_every_kind_of_event_and_leaves_nothing_behind(
    demo_process: CliProcess | None,
) -> None:
    assert demo_process is not None
    code = demo_process.wait(60)
    stdout = demo_process.stdout

    assert code == 0, demo_process.describe()
    banner = re.search(r"nats-server at (nats://\S+), DTS simulator at (http://[^\s,]+)", stdout)
    assert banner, demo_process.describe()
    nats_url, simulator_url = banner.group(1), banner.group(2)

    kinds = set()
    for line in demo_process.stdout_lines:
        fields = line.split()
        if len(fields) >= 3 and re.match(r"\d{4}-\d\d-\d\dT", fields[0]):
            kinds.add(fields[2])
    watcher_kinds = {
        "started",
        "stopped",
        "cycle_incomplete",
        "source_unavailable",
        "source_recovered",
    }
    missing = {*JOB_KINDS, *watcher_kinds} - kinds
    assert not missing, f"never shown: {sorted(missing)}\n{stdout}"
    assert "demo: stopped" in demo_process.stdout_lines

    assert _refuses(nats_url), f"something still listens on {nats_url}"
    assert _refuses(simulator_url), f"something still listens on {simulator_url}"


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("entry", "how"),
    [
        ("dev.py", "ctrl-c"),  # the terminal signals the whole foreground group
        ("dev.py", "dev.py alone"),  # `kill -INT` of the dev.py process only
        ("dts-watcher", "ctrl-c"),
        ("dts-watcher", "demo alone"),
    ],
)
def test_ctrl_c_stops_the_demo_in_order_and_leaves_nothing_behind(
    entry: str, how: str, tmp_path: Path
) -> None:
    argv = [sys.executable, str(ROOT / "dev.py")] if entry == "dev.py" else None
    env = cli_env({"TMPDIR": str(tmp_path)})  # the demo's folder goes here, to be checked
    with CliProcess("demo", "--step", "1", env=env, cwd=ROOT, argv=argv, own_group=True) as demo:
        banner = demo.wait_for_line(lambda line: line.startswith("demo: nats-server at"))
        demo.wait_for_line(lambda line: " discovered " in line)  # the watcher is at work
        if how == "ctrl-c":
            demo.interrupt_group()
        else:
            demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
        left = demo.descendants()
    assert code == 0, demo.describe()
    assert "Traceback" not in demo.stderr and "KeyboardInterrupt" not in demo.stderr
    lines = demo.stdout_lines
    assert lines[-1] == "demo: stopped", demo.describe()
    assert any(" stopped " in line and " watcher " in line for line in lines), demo.describe()
    assert not left, f"processes left behind: {left}"
    assert not list(tmp_path.glob("dts-watcher-demo-*")), "the demo's folder is still there"
    urls = re.search(r"at (nats://\S+), DTS simulator at (http://[^\s,]+)", banner)
    assert urls is not None
    assert _refuses(urls.group(1)) and _refuses(urls.group(2))
