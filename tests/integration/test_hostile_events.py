"""What reads the stream survives what anyone can publish on it (issue 17, item 8; issue 12,
item 12): terminal control sequences in every field and subject, payloads that are not
events, JSON nested 100,000 deep. `tail` escapes what it prints and counts what it skips;
the example consumer escapes, counts, and `term`s what can never be handled. A real
nats-server; the messages are published as a hostile publisher would."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from dts_sim.natsserver import NatsServer
from examples.remediation_consumer import MAX_DELIVER, Remediator, consume
from tests.support.watcher import make_settings
from watcher.tail import TailOptions, tail

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# Sixteen messages that are not events.
MALFORMED: list[bytes] = [
    b"not json",
    b"\xff\xfe\x00 not utf-8",
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b"[]",
    b'"a string"',
    b"123",
    b"null",
    b"NaN",
    b"1" * 5000,  # an integer the json module refuses to decode
    b'{"specversion": "0.3"}',
    b'{"specversion": 1.0}',
    b"{}",
    b"",
    b'{"specversion": "1.0"',
    b"\x00",
]
# What a hostile job name (or any field) may try on a terminal.
NASTY = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: write the clipboard
    "\rFAKE LINE"  # overwrite what the line showed
    "\x9b31m"  # C1 CSI
    "\u202egnp.exe"  # bidi override
    "\x7f"
)
UNSAFE = ("\x1b", "\r", "\x07", "\x9b", "\u202e", "\x7f", "\x00")


def hostile_event(n: int, kind: str = "status_changed") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"hostile-{n}",
        "source": f"/dts-watcher/{NASTY}",
        "type": f"dts.job.{kind}",
        "subject": f"dts{n}{NASTY}",
        "time": f"2026-11-28T00:00:0{n}Z{NASTY}",
        "datacontenttype": "application/json",
        "severity": "critical",
        "data": {
            "job_id": f"dts{n}{NASTY}",
            "job_name": f"orders {NASTY}",
            "region": f"cn-hangzhou{NASTY}",
            "direction": f"Reverse{NASTY}",
            "status": "Failed",
            "previous_status": f"Synchronizing{NASTY}",
            "error_message": f"boom {NASTY}",
        },
    }


def assert_printable(text: str) -> None:
    for char in UNSAFE:
        assert char not in text, f"{char!r} reached the terminal: {text!r}"


async def publish_all(url: str, messages: list[tuple[str, bytes]], stream: bool) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if stream:
            await js.add_stream(name="DTS_EVENTS", subjects=["dts.>"])
        for subject, payload in messages:
            if stream:
                await js.publish(subject, payload)
            else:
                await nc.publish(subject, payload)
        await nc.flush()
    finally:
        await nc.close()


def messages() -> list[tuple[str, bytes]]:
    bad = [(f"dts.job.cn-hangzhou.bad{i}\x1b[2J.discovered", m) for i, m in enumerate(MALFORMED)]
    good = [(f"dts.job.x.dts{n}.status_changed", json.dumps(hostile_event(n)).encode())
            for n in range(3)]  # fmt: skip
    return bad + good


@pytest.mark.parametrize("raw_json", [False, True], ids=["lines", "json"])
async def test_tail_escapes_everything_and_counts_what_it_skips(
    tmp_path: Path,
    nats_server: NatsServer,
    capsys: pytest.CaptureFixture[str],
    raw_json: bool,
) -> None:
    settings = make_settings(tmp_path, nats_server.url, "http://127.0.0.1:1", ["cn-hangzhou"])
    out = io.StringIO()
    ready = anyio.Event()
    options = TailOptions(raw_json=raw_json, count=3, color=True)
    codes: list[int] = []

    async def run() -> None:
        codes.append(await tail(settings, options, out=out, ready=ready.set, handle_signals=False))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await ready.wait()
            await publish_all(nats_server.url, messages(), stream=False)
    assert codes == [0]
    printed = out.getvalue()
    lines = printed.splitlines()
    assert len(lines) == 3
    # colours are ours: take them out, then nothing unsafe is left
    for colour in ("\x1b[1;31m", "\x1b[0m"):
        printed = printed.replace(colour, "")
    assert_printable(printed)
    if raw_json:
        for n, line in enumerate(lines):
            assert json.loads(line) == hostile_event(n)  # escaped, and still the same JSON
    else:
        assert "\\x1b[2J" in printed and "\\u202e" in printed and "\\rFAKE LINE" in printed
    errors = capsys.readouterr().err
    assert_printable(errors)
    skipped = [line for line in errors.splitlines() if "skipped a message on" in line]
    assert len(skipped) == len(MALFORMED)
    assert "bad0\\x1b[2J" in skipped[0]
    assert f"{len(MALFORMED)} message(s) skipped" in errors


class Collecting(Remediator):
    def __init__(self, fail: bool = False) -> None:
        self.lines: list[str] = []
        self.fail = fail
        super().__init__(self.lines.append)

    async def on_failed(self, data: Any) -> None:
        if self.fail:
            raise RuntimeError(f"cannot restart {NASTY}")
        await super().on_failed(data)


async def consumer_state(url: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("DTS_EVENTS", "remediation")
        return info.num_pending, info.num_ack_pending
    finally:
        await nc.close()


async def test_the_example_consumer_terms_what_it_cannot_handle_and_goes_on(
    nats_server: NatsServer,
) -> None:
    await publish_all(nats_server.url, messages(), stream=True)
    remediator = Collecting()
    with anyio.fail_after(120):
        tally = await consume(nats_server.url, remediator, exit_when_idle=True, idle=2.0)
    assert tally.rejected == len(MALFORMED)
    assert tally.acted == 3
    rejected = [line for line in remediator.lines if line.startswith("REJECTED")]
    assert len(rejected) == len(MALFORMED)
    assert any("nested too deeply" in line for line in rejected)
    for line in remediator.lines:
        assert_printable(line)
    assert await consumer_state(nats_server.url) == (0, 0)  # nothing left to redeliver


async def test_an_action_that_keeps_failing_is_given_up_at_its_last_delivery(
    nats_server: NatsServer,
) -> None:
    await publish_all(nats_server.url, messages()[-1:], stream=True)
    remediator = Collecting(fail=True)
    with anyio.fail_after(120):
        tally = await consume(
            nats_server.url, remediator, exit_when_idle=True, idle=3.0, retry_delay=0.01
        )
    assert (tally.retried, tally.gave_up, tally.acted) == (MAX_DELIVER - 1, 1, 0)
    for line in remediator.lines:
        assert_printable(line)
    assert await consumer_state(nats_server.url) == (0, 0)
