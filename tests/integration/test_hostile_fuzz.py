"""Property test: the watcher's cycle against a DTS that answers anything (issue 12).

Hypothesis scripts a real HTTP server on 127.0.0.1 to answer each request with something
drawn from what a hostile or broken endpoint can send: pages whose totals lie, records
that cannot be jobs, duplicates, bytes that are not JSON, JSON nested thousands deep,
bodies that claim gzip and are not, gzip bombs, bodies over the cap with and without a
length, made-up error codes and request ids, 5xx storms, answers dripped a byte at a
time, connections cut mid-answer, and garbage instead of a status line. Whatever it
sends, across cycles of one watcher:

- the cycle never raises (one region's failure is never the cycle's);
- no secret (the key secret, the STS token) appears in a log line, an event or an error;
- no job is declared `removed`: both real jobs are in every listing the server could
  send whole, so a `removed` could only come from a listing misread as complete;
- memory stays bounded (traced peak per cycle) and time too (every cycle ends within a
  guard, with a half-second request deadline).

The example count is kept small for CI (each example is a cycle or two over loopback).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dts_sim.natsserver import NatsServer
from tests.support.hostile import (
    Answer,
    HostileServer,
    Request,
    capture_logs,
    deep_json,
    gzip_bomb,
    job_record,
    stream_of,
)
from tests.support.watcher import make_settings
from watcher.service import Watcher, open_watcher

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SECRET, TOKEN = "fuzz-secret-NEVERshown", "CAISfuzzTokenNEVERshown"
REAL = [job_record("real-a"), job_record("real-b", SynchronizationDirection="Reverse")]
CAP = 64 * 1024
GUARD = 60.0

# -- what a hostile endpoint sends ---------------------------------------------------------

text = st.text(max_size=40)
unusable_records = st.sampled_from(
    [
        {"SynchronizationJobId": {"id": "x"}},
        {"SynchronizationJobId": ["x"]},
        {"SynchronizationJobId": ""},
        {"SynchronizationJobId": None},
        {"SynchronizationJobId": "x", "SynchronizationDirection": {"d": 1}},
        {"Status": "Failed"},
        "a string",
        42,
        None,
    ]
)
odd_records = st.one_of(
    unusable_records,
    st.builds(
        lambda job_id, status, extra: job_record(job_id, status, **extra),
        st.sampled_from(["real-a", "x1", "x2", "\u202ex3", "x" * 300]),
        st.sampled_from(["Synchronizing", "Failed", "", "\x1b[2J"]),
        st.dictionaries(
            st.sampled_from(["Delay", "ErrorMessage", "Tags", "CreateTime", "Performance"]),
            st.one_of(text, st.integers(), st.floats(), st.lists(text, max_size=3)),
            max_size=3,
        ),
    ),
)


@st.composite
def page_documents(draw: st.DrawFn) -> bytes:
    """A page that always shows both real jobs, plus lies and odd records."""
    records: list[Any] = [*REAL, *draw(st.lists(odd_records, max_size=4))]
    records = draw(st.permutations(records))
    total = draw(
        st.one_of(
            st.just(len(records)),
            st.integers(-3, 200),
            st.sampled_from([None, "12", "many", 10**30, 1.5]),
        )
    )
    document = {
        "RequestId": draw(text),
        "TotalRecordCount": total,
        "PageRecordCount": len(records),
        "SynchronizationInstances": records,
    }
    if draw(st.booleans()):
        document = {k.lower(): v for k, v in document.items()}
    return json.dumps(document).encode()


bodies = st.one_of(
    page_documents(),
    st.binary(max_size=200),
    st.integers(500, 5000).map(deep_json),
    st.just(deep_json(100_000)),
    st.builds(lambda c, m: json.dumps({"Code": c, "Message": m}).encode(), text, text),
    st.just(b""),
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    kind = draw(
        st.sampled_from(["plain", "gzip", "fake-gzip", "deflate", "bomb", "huge", "raw", "drip"])
    )
    status = draw(st.sampled_from([200, 200, 200, 400, 403, 500, 503]))
    headers = [("Content-Type", draw(st.sampled_from(["application/json", "text/html", "x"])))]
    if draw(st.booleans()):
        headers.append(
            (
                "x-acs-request-id",
                draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)),
            )
        )
    if draw(st.booleans()):
        headers.append(("x-acs-retry-after", draw(st.sampled_from(["5", "-1", "9" * 30, "x"]))))
    body = draw(bodies)
    if kind == "plain":
        return Answer(status, headers, body)
    if kind == "gzip":
        return Answer(status, [*headers, ("Content-Encoding", "gzip")], gzip.compress(body))
    if kind == "fake-gzip":
        return Answer(status, [*headers, ("Content-Encoding", "gzip")], body)
    if kind == "deflate":
        return Answer(status, [*headers, ("Content-Encoding", "deflate")], zlib.compress(body))
    if kind == "bomb":
        return Answer(status, [*headers, ("Content-Encoding", "gzip")], BOMB)
    if kind == "huge":
        length = draw(st.sampled_from([None, 2 << 20, 10]))
        return Answer(status, headers, stream_of(2 << 20), length=length)
    if kind == "drip":
        return Answer(status, headers, body[:40], drip=0.05)
    raw = draw(
        st.sampled_from(
            [
                b"",
                b"NOT HTTP\r\n\r\n",
                b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"Tot',
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"HTTP/1.1 200 OK\r\nX: \x00\x01\r\n\r\n",
            ]
        )
    )
    return Answer(raw=raw)


BOMB = gzip_bomb(8 << 20)


# -- the watcher under attack ------------------------------------------------------------


class Script:
    def __init__(self) -> None:
        self.answers: list[Answer] = [Answer()]
        self.count = 0

    def __call__(self, request: Request) -> Answer:
        answer = self.answers[self.count % len(self.answers)]
        self.count += 1
        if not isinstance(answer.body, bytes) and answer.raw is None:  # a generator: anew
            return Answer(answer.status, answer.headers, stream_of(2 << 20), answer.length)
        return answer


@pytest.fixture
async def attacked(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Any]:
    script = Script()
    with HostileServer(script) as server:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            server.url,
            ["cn-hangzhou", "cn-shanghai"],
            dts={
                "timeout": 0.5,
                "max_attempts": 2,
                "max_response_bytes": CAP,
                "drift_rereads": 1,
            },
            poll={"cycle_timeout": 10},
            rules={"removed_after": 1},
            credentials={
                "access_key_id": "fuzz-key",
                "access_key_secret": SECRET,
                "security_token": TOKEN,
            },
        )
        async with open_watcher(settings) as watcher:
            # a first, honest cycle: both real jobs are known
            script.answers = [_honest()]
            first = await watcher.cycle()
            assert first.complete and len(first.snapshot) == 4
            yield watcher, script


def _honest() -> Answer:
    document = {"TotalRecordCount": 2, "SynchronizationInstances": REAL}
    return Answer(200, [("Content-Type", "application/json")], json.dumps(document).encode())


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(answers(), min_size=1, max_size=4))
async def test_no_answer_crashes_the_cycle_leaks_a_secret_or_invents_a_removal(
    attacked: Any, script: list[Answer]
) -> None:
    watcher: Watcher
    watcher, server_script = attacked
    server_script.answers, server_script.count = script, 0
    with capture_logs() as logs:
        tracemalloc.start()
        try:
            with anyio.fail_after(GUARD):
                result = await watcher.cycle()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    said = logs.text + "".join(event.to_json().decode() for event in result.events)
    said += json.dumps(result.snapshot.to_dict(), default=str)
    assert SECRET not in said and TOKEN not in said
    assert "NEVERshown" not in said
    # Other jobs come and go as the hostile listings say; the real ones never leave.
    removed = [e.data["job_id"] for e in result.events if e.kind == "removed"]
    assert not {"real-a", "real-b"} & set(removed), removed
    assert peak < 64 << 20, f"{peak:,} bytes traced in one cycle"
    for outcome in result.snapshot.regions.values():
        assert outcome.error is None or len(outcome.error) < 1000
