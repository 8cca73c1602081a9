"""The DTS client and the cycle against a hostile DTS endpoint on 127.0.0.1.

Each test is one finding of the adversarial reviews (issues 12 and 17), reproduced with a
real HTTP server that answers what an attacker, a broken proxy or a buggy DTS would: a
body that claims gzip and is not, JSON nested 100,000 deep, a gzip bomb, an answer
dripped a byte at a time, pages that come back empty, error codes made up on the spot,
records whose id is an object. What must hold: the failure is that one region's, for
that cycle; nothing secret or unbounded reaches a log, an event or a metric; memory and
time stay bounded; and no job is declared `removed` on the strength of a listing that
could not be read whole.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from dts_sim.natsserver import NatsServer
from tests.support.hostile import (
    Answer,
    Dts,
    HostileServer,
    Request,
    capture_logs,
    deep_json,
    gzip_bomb,
    job_record,
    json_answer,
    page,
    self_signed,
    server_tls,
    stream_of,
)
from tests.support.watcher import make_settings
from watcher.dts.client import DtsClient
from watcher.dts.credentials import Credentials, StaticProvider
from watcher.dts.upstream import KNOWN_CODES, OWN_OUTCOMES
from watcher.service import Watcher, open_watcher
from watcher.settings import DtsSettings
from watcher.snapshot import Snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEY_ID, SECRET = "hostile-key-id", "hostile-secret-never-shown"
TOKEN = "CAIShostileSTStokenNEVERshown"
GUARD = 60.0  # seconds: bounds a test that would otherwise hang; never what is measured


def dts_settings(url: str, regions: list[str] | None = None, **values: Any) -> DtsSettings:
    base: dict[str, Any] = {
        "regions": regions or ["cn-hangzhou"],
        "endpoint": url,
        "rate_limit": 20,
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
        "max_attempts": 2,
        "timeout": 5,
    }
    return DtsSettings(**{**base, **values})


def client(settings: DtsSettings, token: str | None = TOKEN) -> DtsClient:
    provider = StaticProvider(
        Credentials(KEY_ID, SecretStr(SECRET), SecretStr(token) if token else None)
    )
    return DtsClient(settings, provider)


async def fetch(settings: DtsSettings, token: str | None = TOKEN) -> Snapshot:
    with anyio.fail_after(GUARD):
        async with client(settings, token) as dts:
            return await dts.fetch()


def everything_said(snapshot: Snapshot, logs: str) -> str:
    return logs + repr(snapshot) + json.dumps(snapshot.to_dict(), default=str)


# -- 12.1: transport exception text never reaches an output ------------------------------


@pytest.mark.parametrize(
    "token",
    [TOKEN + "\n", TOKEN + "\r\nX-Injected: 1", "CAIS-tok\u00e9n-NEVERshown", TOKEN + "\x00"],
    ids=["newline", "header-injection", "non-ascii", "nul"],
)
async def test_a_credential_no_header_can_carry_fails_its_region_and_is_never_quoted(
    token: str,
) -> None:
    """Credentials that bypass the settings' checks (a provider's, a bug's) still cannot
    crash the cycle or leak through the transport's error text."""
    with HostileServer(Dts({"cn-hangzhou": [job_record("a")]})) as server, capture_logs() as logs:
        snapshot = await fetch(dts_settings(server.url), token)
    outcome = snapshot.regions["cn-hangzhou"]
    assert not outcome.complete
    assert outcome.error_code == "RequestNotSendable"
    said = everything_said(snapshot, logs.text)
    secret_part = token.split("\n")[0].split("\x00")[0].replace("\u00e9", "")
    assert "NEVERshown" not in said and secret_part not in said
    assert SECRET not in said


# -- 12.3: one malformed answer fails one region -----------------------------------------

MALFORMED: dict[str, Answer] = {
    "cn-hangzhou": Answer(  # claims gzip, is not
        200,
        [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        json.dumps(page([job_record("x")])).encode(),
    ),
    "cn-shanghai": Answer(200, [("Content-Type", "application/json")], deep_json(100_000)),
    "cn-beijing": Answer(  # a gzip body cut short
        200, [("Content-Encoding", "gzip")], gzip_bomb(1 << 20)[:100]
    ),
    "cn-qingdao": Answer(200, [("Content-Encoding", "br")], b"\x00" * 64),  # never asked for
    "cn-zhangjiakou": Answer(200, [], b'{"TotalRecordCount": 1, "SynchronizationInstances": [{'),
}


def malformed_dts() -> Dts:
    dts = Dts({"cn-shenzhen": [job_record("healthy")]})
    for region, answer in MALFORMED.items():
        dts.special[region] = lambda request, answer=answer: answer
    return dts


async def test_malformed_answers_fail_their_own_region_only() -> None:
    regions = [*MALFORMED, "cn-shenzhen"]
    with HostileServer(malformed_dts()) as server:
        snapshot = await fetch(dts_settings(server.url, regions))
    for region in MALFORMED:
        outcome = snapshot.regions[region]
        assert outcome.error_code == "MalformedResponse", (region, outcome)
    assert snapshot.regions["cn-shenzhen"].complete
    assert [job.job_id for job in snapshot] == ["healthy"]


@pytest.fixture
async def watcher_on(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Any]:
    """`watcher_on(dts_url, regions, **sections)`: a Watcher for a hostile endpoint."""
    opened: list[Any] = []

    async def make(url: str, regions: list[str], **sections: Any) -> Watcher:
        dts = {"timeout": 5, "max_attempts": 2, **sections.pop("dts", {})}
        state = {"path": tmp_path / f"state-{len(opened)}.sqlite3"}  # one state per watcher
        settings = make_settings(
            tmp_path, nats_server.url, url, regions, dts=dts, state=state, **sections
        )
        context = open_watcher(settings)
        opened.append(context)
        return await context.__aenter__()

    yield make
    for context in reversed(opened):
        await context.__aexit__(None, None, None)


async def test_malformed_answers_never_crash_the_cycle(watcher_on: Any) -> None:
    with HostileServer(malformed_dts()) as server:
        watcher = await watcher_on(server.url, [*MALFORMED, "cn-shenzhen"])
        with anyio.fail_after(GUARD):
            result = await watcher.cycle()
    assert not result.complete
    kinds = [event.type for event in result.events]
    assert "dts.job.discovered" in kinds  # the healthy region was reported
    (incomplete,) = [e for e in result.events if e.type == "dts.watcher.cycle_incomplete"]
    assert set(incomplete.data["regions"]) == set(MALFORMED)


# -- 12.4: a deadline for the whole request and a cap on the decoded size ----------------


async def test_an_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline() -> None:
    body = json.dumps(page([job_record("slow")])).encode()
    drip = Answer(200, [("Content-Type", "application/json")], body, drip=0.05)
    with HostileServer(lambda request: drip) as server:
        snapshot = await fetch(dts_settings(server.url, timeout=0.5, max_attempts=2))
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "Timeout"
    assert "within 0.5s" in (outcome.error or "")


def peak_while(run: Any) -> tuple[Any, int]:
    """Run an async function; return its result and the peak of traced allocations."""
    tracemalloc.start()
    try:
        result = anyio.run(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


CAP = 1 << 20  # a megabyte: the cap these tests set


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, [("Content-Encoding", "gzip")], gzip_bomb(256 << 20)),
        Answer(200, [], stream_of(64 << 20), length=64 << 20),  # a length that says so
        Answer(200, [], stream_of(64 << 20)),  # no length: the stream itself
        Answer(200, [("Content-Encoding", "deflate")], gzip_bomb(64 << 20)[10:-8]),
    ],
    ids=["gzip-bomb", "declared", "streamed", "deflate-bomb"],
)
def test_an_answer_over_the_cap_is_refused_in_bounded_memory(answer: Answer) -> None:
    with HostileServer(lambda request: answer) as server:
        settings = dts_settings(server.url, max_response_bytes=CAP, max_attempts=1)
        snapshot, peak = peak_while(lambda: fetch(settings))
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "ResponseTooLarge", outcome
    assert peak < 16 * CAP, f"{peak:,} bytes held for a {CAP:,}-byte cap"


async def test_real_pages_pass_the_default_cap_which_is_a_setting() -> None:
    # 30 jobs with long messages: about 200 KB, twice what a real page weighs.
    records = [job_record(f"j{i:02}", ErrorMessage="x" * 6000) for i in range(30)]
    with HostileServer(Dts({"cn-hangzhou": records})) as server:
        default = await fetch(dts_settings(server.url))
        small = await fetch(dts_settings(server.url, max_response_bytes=64 * 1024))
    assert default.complete and len(default) == 30
    assert small.regions["cn-hangzhou"].error_code == "ResponseTooLarge"


# -- 12.7: a record that cannot be a job withholds absence -------------------------------

UNUSABLE = {
    "id-object": {"SynchronizationJobId": {"id": "b"}, "SynchronizationDirection": "Reverse"},
    "id-list": {"SynchronizationJobId": ["b"], "SynchronizationDirection": "Reverse"},
    "direction-object": {"SynchronizationJobId": "b", "SynchronizationDirection": {"x": 1}},
    "not-an-object": "b",
}


@pytest.mark.parametrize("record", list(UNUSABLE.values()), ids=list(UNUSABLE))
async def test_a_record_that_cannot_be_a_job_never_makes_another_one_removed(
    watcher_on: Any, record: Any
) -> None:
    dts = Dts(
        {"cn-hangzhou": [job_record("a"), job_record("b", SynchronizationDirection="Reverse")]}
    )
    with HostileServer(dts) as server:
        watcher = await watcher_on(server.url, ["cn-hangzhou"])
        with anyio.fail_after(GUARD):
            first = await watcher.cycle()
            assert {e.data["job_id"] for e in first.events if e.kind == "discovered"} == {"a", "b"}
            dts.listings["cn-hangzhou"] = [job_record("a", Status="Failed"), record]
            later = [await watcher.cycle() for _ in range(3)]
            kinds = [e.kind for result in later for e in result.events]
            assert "status_changed" in kinds  # the jobs it could read are still judged
            assert "removed" not in kinds and "discovered" not in kinds
            dts.listings["cn-hangzhou"] = [job_record("a", Status="Failed")]  # honest, whole
            after = [await watcher.cycle() for _ in range(2)]
    removed = [e.data["job_id"] for result in after for e in result.events if e.kind == "removed"]
    assert removed == ["b"]  # absence is still proven, by listings that can prove it


# -- 12.12: a short page ends the listing --------------------------------------------------


async def test_empty_pages_after_the_first_stop_the_listing_at_once() -> None:
    dts = Dts()
    records = [job_record(f"j{i:02}") for i in range(30)]
    dts.special["cn-hangzhou"] = lambda request: json_answer(
        page(
            records if request.query["PageNum"] == "1" else [], 9000, int(request.query["PageNum"])
        )
    )
    with HostileServer(dts) as server:
        settings = dts_settings(server.url, drift_rereads=2, max_concurrent_pages=4)
        snapshot = await fetch(settings)
    outcome = snapshot.regions["cn-hangzhou"]
    assert outcome.error_code == "ListingDrift"
    # each of the 3 reads: page 1, then at most the pages already in flight when the
    # first short one came back (300 pages per read before)
    assert len(server.seen) <= 3 * (1 + 4 + 1), len(server.seen)


async def test_a_listing_whose_last_page_is_short_is_still_complete() -> None:
    records = [job_record(f"j{i:03}") for i in range(75)]
    with HostileServer(Dts({"cn-hangzhou": records})) as server:
        snapshot = await fetch(dts_settings(server.url))
    assert snapshot.complete and len(snapshot) == 75
    assert len(server.seen) == 3


# -- 12.12 and 17.4: upstream codes and messages are bounded -------------------------------


async def test_made_up_error_codes_and_huge_messages_stay_bounded() -> None:
    counter = iter(range(10**6))

    def made_up(request: Request) -> Answer:
        n = next(counter)
        code = f"Made.Up.{n}." + "Z" * 5000
        message = "line\x1b[2J\r\n" * 2000 + TOKEN
        return json_answer({"Code": code, "Message": message, "RequestId": "r" * 5000}, 400)

    regions = ["cn-hangzhou", "cn-shanghai", "cn-beijing"]
    with HostileServer(made_up) as server, capture_logs() as logs:
        async with client(dts_settings(server.url, regions)) as dts:
            with anyio.fail_after(GUARD):
                for _ in range(3):
                    snapshot = await dts.fetch()
            labels = {outcome for (_, outcome) in dts.stats.requests}
    assert labels <= OWN_OUTCOMES | KNOWN_CODES | {"other"}, labels
    assert labels == {"other"}
    for outcome in snapshot.regions.values():
        assert outcome.error_code is not None and len(outcome.error_code) <= 64
        assert outcome.error is not None and len(outcome.error) <= 600
        assert "\x1b" not in outcome.error and "\n" not in outcome.error
    assert max(len(line) for line in logs.text.splitlines()) < 2000


# -- 17.2: a deadline on the whole cycle's reading ----------------------------------------


async def test_a_region_that_never_finishes_is_ended_by_the_cycle_deadline() -> None:
    dts = Dts({"cn-shanghai": [job_record("fine")]})
    dts.special["cn-hangzhou"] = lambda request: Answer(200, [], b" " * 10_000, drip=0.2)
    with HostileServer(dts) as server:
        settings = dts_settings(server.url, ["cn-hangzhou", "cn-shanghai"], timeout=120)
        with anyio.fail_after(GUARD):
            async with client(settings) as dts_client:
                snapshot = await dts_client.fetch(deadline=1.0)
    assert snapshot.regions["cn-hangzhou"].error_code == "CycleDeadline"
    assert snapshot.regions["cn-shanghai"].complete


async def test_the_cycle_deadline_is_a_setting_the_cycle_uses(watcher_on: Any) -> None:
    dts = Dts({"cn-shanghai": [job_record("fine")]})
    dts.special["cn-hangzhou"] = lambda request: Answer(200, [], b" " * 10_000, drip=0.2)
    with HostileServer(dts) as server:
        watcher = await watcher_on(
            server.url,
            ["cn-hangzhou", "cn-shanghai"],
            dts={"timeout": 120},
            poll={"cycle_timeout": 1.0},
        )
        with anyio.fail_after(GUARD):
            result = await watcher.cycle()
    assert result.snapshot.regions["cn-hangzhou"].error_code == "CycleDeadline"
    assert "dts.job.discovered" in [event.type for event in result.events]


# -- 17.6: a private CA instead of plain http ----------------------------------------------


@pytest.mark.wall_clock  # OpenSSL checks the certificate against the real clock
async def test_https_with_a_private_ca_is_trusted_through_tls_ca_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    dts = Dts({"cn-hangzhou": [job_record("a")]})
    with HostileServer(dts, tls=server_tls(cert, key)) as server:
        untrusted = await fetch(dts_settings(server.url, max_attempts=1))
        trusted = await fetch(dts_settings(server.url, tls_ca_file=cert))
    outcome = untrusted.regions["cn-hangzhou"]
    assert outcome.error_code == "ConnectionError"
    assert "certificate verify failed" in (outcome.error or "")
    assert trusted.complete and len(trusted) == 1


# -- 17.2: /readyz turns not ready when the last complete cycle is too old -----------------


def test_readiness_ends_when_the_last_complete_cycle_is_too_old() -> None:
    from datetime import UTC, datetime

    from watcher.status import Status

    then = datetime.fromtimestamp(0, UTC)  # any time: readiness reads the monotonic clock

    clock = [100.0]
    status = Status(nats_connected=lambda: True, stale_after=60.0, monotonic=lambda: clock[0])
    status.count_cycle(True, then)
    assert status.readiness() == []
    clock[0] += 59
    status.count_cycle(False, then)  # incomplete: no refresh
    assert status.readiness() == []
    clock[0] += 2
    (reason,) = status.readiness()
    assert "last complete cycle finished 61s ago" in reason
    status.count_cycle(True, then)
    assert status.readiness() == []


async def test_a_watcher_reading_nothing_whole_turns_not_ready(watcher_on: Any) -> None:
    from tests.support.cli import eventually

    dts = Dts({"cn-hangzhou": [job_record("a")]})
    with HostileServer(dts) as server:
        watcher = await watcher_on(server.url, ["cn-hangzhou"], health={"stale_after": 0.5})
        default = await watcher_on(server.url, ["cn-hangzhou"])
        assert default.status.stale_after == 10 * default.settings.poll.interval
        with anyio.fail_after(GUARD):
            assert (await watcher.cycle()).complete
        assert not any("last complete cycle" in r for r in watcher.status.readiness())
        dts.special["cn-hangzhou"] = lambda request: json_answer({"Code": "Boom"}, 503)

        async def stale() -> bool:
            await watcher.cycle()
            return any("last complete cycle" in r for r in watcher.status.readiness())

        await eventually(stale, within=GUARD, what="readiness to end")
