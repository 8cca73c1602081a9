"""The state file failing under `run` and `once`, on a real file system (issue 12, items 9
and 10): two watchers on one file, a full disk, unreadable rows, a file deleted while
running, a read-only file.

What a user relies on: one watcher per state file; a disk that fills up turns `/readyz`
false with the reason and the watcher carries on once there is room (nothing lost, no
traceback, no crash loop); a state that became unusable is said once, clearly, and ends
`run` with exit 2 as at start-up; a read-only file is called read-only, with advice that
loses nothing."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer, free_port
from tests.support.brokenfs import IGNORING_XFSZ, as_plain_user, fill_disk, free_disk
from tests.support.cli import CliProcess, eventually, json_lines, run_cli, watcher_env
from tests.support.watcher import read_stream

pytestmark = pytest.mark.e2e

REGIONS = ["cn-hangzhou"]


def env_for(tmp_path: Path, nats: NatsServer, sim: Simulator, **extra: str) -> dict[str, str]:
    return watcher_env(
        tmp_path / "state.sqlite3",
        nats.url,
        sim.url,
        REGIONS,
        DTS_WATCHER_POLL__INTERVAL="1",
        DTS_WATCHER_POLL__JITTER="0",
        **extra,
    )


def events_logged(process: CliProcess, name: str) -> list[dict[str, object]]:
    return [line for line in json_lines_lenient(process.stderr) if line.get("event") == name]


def json_lines_lenient(text: str) -> list[dict[str, object]]:
    """The JSON lines of a process's stderr (its last line, `dts-watcher: ...`, is not)."""
    return json_lines("\n".join(line for line in text.splitlines() if line.startswith("{")))


def no_traceback(process: CliProcess) -> None:
    assert "Traceback" not in process.stderr, process.describe()
    assert not events_logged(process, "cycle.crashed"), process.describe()


# -- one watcher per state file ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_second_watcher_on_the_same_state_is_refused(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtslock01", "region": "cn-hangzhou"})
    env = env_for(tmp_path, nats_server, simulator)
    with CliProcess("run", env=env, cwd=tmp_path) as first:
        first.wait_for_line(lambda line: '"cycle.done"' in line, stream="stderr")
        second = run_cli("run", env=env, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert f"is in use by another dts-watcher (pid {first.popen.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.popen.poll() is None  # the first goes on
        first.send_signal(signal.SIGTERM)
        assert await first.wait_async() == 0, first.describe()
    # and once it has stopped, the state is free again
    again = run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    discovered = [e for e in await read_stream(nats_server.url) if e["type"].endswith("discovered")]
    assert len(discovered) == 1  # announced once, by the one watcher that ran


# -- a full disk -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_disk_turns_readiness_false_and_the_watcher_recovers(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsdisk01", "region": "cn-hangzhou"})
    port = free_port()
    env = env_for(
        tmp_path,
        nats_server,
        simulator,
        DTS_WATCHER_HTTP__PORT=str(port),
        DTS_WATCHER_HTTP__HOST="127.0.0.1",
        DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL="1",
    )
    readyz = f"http://127.0.0.1:{port}/readyz"
    async with httpx.AsyncClient(timeout=5) as http:

        async def ready(expected: int, text: str = "") -> bool:
            try:
                answer = await http.get(readyz)
            except httpx.HTTPError:
                return False
            return answer.status_code == expected and text in answer.text

        with CliProcess("run", env=env, cwd=tmp_path, prefix=IGNORING_XFSZ) as watcher:
            await eventually(lambda: ready(200), what=watcher.describe)
            fill_disk(watcher.popen.pid)
            simulator.set_job("dtsdisk01", status="Failed", error_message="while full")
            await eventually(lambda: ready(503, "the state cannot be saved"), what=watcher.describe)
            await eventually(
                lambda: len(events_logged(watcher, "event.not_saved")) >= 1,  # a heartbeat
                what=watcher.describe,
            )
            assert watcher.popen.poll() is None
            free_disk(watcher.popen.pid)
            await eventually(lambda: ready(200), what=watcher.describe)
            await eventually(
                lambda: bool(events_logged(watcher, "state.recovered")), what=watcher.describe
            )
            watcher.send_signal(signal.SIGTERM)
            assert await watcher.wait_async() == 0, watcher.describe()
        no_traceback(watcher)
        assert len(events_logged(watcher, "state.write_failed")) == 1  # said once
    # the change made while the disk was full was detected again and published, once
    stream = await read_stream(nats_server.url)
    failed = [e for e in stream if e["type"] == "dts.job.status_changed"]
    assert [e["data"]["error_message"] for e in failed] == ["while full"]
    assert [e["type"] for e in stream][-1] == "dts.watcher.stopped"


@pytest.mark.anyio
async def test_stopped_while_the_disk_is_full_it_exits_cleanly_keeping_its_outbox(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsdisk02", "region": "cn-hangzhou"})
    env = env_for(tmp_path, nats_server, simulator, DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL="1")
    with CliProcess("run", env=env, cwd=tmp_path, prefix=IGNORING_XFSZ) as watcher:
        watcher.wait_for_line(lambda line: '"cycle.done"' in line, stream="stderr")
        fill_disk(watcher.popen.pid)
        await eventually(
            lambda: bool(events_logged(watcher, "state.write_failed")), what=watcher.describe
        )
        watcher.send_signal(signal.SIGTERM)
        assert await watcher.wait_async() == 0, watcher.describe()
    no_traceback(watcher)
    not_saved = [line["kind"] for line in events_logged(watcher, "event.not_saved")]
    assert "stopped" in not_saved  # said, not raised
    # the state is intact: the next run starts from it and announces nothing again
    again = run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    discovered = [e for e in await read_stream(nats_server.url) if e["type"].endswith("discovered")]
    assert len(discovered) == 1


# -- a state that became unusable ---------------------------------------------------------


@pytest.mark.anyio
async def test_unreadable_rows_end_run_once_with_exit_2(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsrows01", "region": "cn-hangzhou"})
    env = env_for(tmp_path, nats_server, simulator)
    assert run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE jobs SET state = '{not json'")
    with CliProcess("run", env=env, cwd=tmp_path) as watcher:
        assert await watcher.wait_async() == 2, watcher.describe()
    no_traceback(watcher)
    assert len(events_logged(watcher, "state.unusable")) == 1
    last = watcher.stderr_lines[-1]
    assert last.startswith("dts-watcher: state file") and "holds unreadable data" in last
    assert "move the file aside" in last  # the recovery advice, as at start-up


@pytest.mark.anyio
async def test_a_state_deleted_while_running_is_noticed_not_recreated(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    simulator.add_job({"id": "dtsgone01", "region": "cn-hangzhou"})
    env = env_for(tmp_path, nats_server, simulator)
    state = tmp_path / "state.sqlite3"
    with CliProcess("run", env=env, cwd=tmp_path) as watcher:
        watcher.wait_for_line(lambda line: '"cycle.done"' in line, stream="stderr")
        for suffix in ("", "-wal", "-shm"):
            state.with_name(state.name + suffix).unlink(missing_ok=True)
        assert await watcher.wait_async() == 2, watcher.describe()
    no_traceback(watcher)
    assert "was deleted while the watcher ran" in watcher.stderr_lines[-1]
    assert not state.exists()  # not silently recreated
    # what it had said before is in the stream: its outbox was flushed on the way out
    kinds = [e["type"] for e in await read_stream(nats_server.url)]
    assert "dts.job.discovered" in kinds


# -- a read-only state ---------------------------------------------------------------------


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_state_is_called_read_only(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator, what: str
) -> None:
    simulator.add_job({"id": "dtsro01", "region": "cn-hangzhou"})
    folder = tmp_path / "state"
    folder.mkdir()
    env = watcher_env(folder / "state.sqlite3", nats_server.url, simulator.url, REGIONS)
    assert run_cli("once", "--publish-timeout", "20", env=env, cwd=tmp_path).returncode == 0
    before = (folder / "state.sqlite3").read_bytes()
    target = folder / "state.sqlite3" if what == "file" else folder
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        result = run_cli("once", env=env, cwd=tmp_path, prefix=as_plain_user())
    finally:
        target.chmod(0o644 if what == "file" else 0o755)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "read-only" in message and "nothing in it is lost" in message, message
    assert "move the file aside" not in message  # that advice would lose the outbox
    assert (folder / "state.sqlite3").read_bytes() == before  # and nothing was written
