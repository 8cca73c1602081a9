"""The page cache: a page that comes back as it was (but for its RequestId) is neither
decoded nor parsed again, and whatever else changes is read as usual.

- `fingerprint` leaves out the value of the first `"RequestId"` key and nothing else;
- the client gives back the very jobs of a page found again, carries its records into
  the record cache (a later change on another page still finds them), and reads a page
  that changed in any way, or was answered with an error, as if there were no cache;
- cycle after cycle, whatever moves, a cached client's snapshot is a fresh client's.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import watcher.dts.page_cache as page_cache
from tests.unit.test_client import FakeDts, error, job, make_client
from watcher.dts.page_cache import fingerprint

pytestmark = pytest.mark.anyio
REGION = "cn-hangzhou"


def body(request_id: Any, jobs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps(
        {"TotalRecordCount": len(jobs), "RequestId": request_id, **extra, "Items": jobs}
    ).encode()


def test_the_request_id_alone_is_left_out() -> None:
    a = fingerprint(body("req-1", [job("a")]))
    b = fingerprint(body("req-2-longer", [job("a")]))
    assert a[0] == b[0] and (a[1], b[1]) == ("req-1", "req-2-longer")
    assert fingerprint(body("req-1", [job("b")]))[0] != a[0]
    assert fingerprint(body("req-1", [job("a")], PageNumber=2))[0] != a[0]


def test_a_request_id_with_escapes_and_spaces_is_read_whole() -> None:
    spaced = b'{"RequestId" :  "a\\"b\\\\", "Items": [1]}'
    other = b'{"RequestId" :  "zz", "Items": [1]}'
    assert fingerprint(spaced) == (fingerprint(other)[0], 'a"b\\')
    assert fingerprint(b'{"RequestId" :  "zz", "Items": [2]}')[0] != fingerprint(other)[0]


@pytest.mark.parametrize(
    "text",
    [
        b'{"Items": [1]}',  # no RequestId
        b'{"RequestId": 12, "Items": [1]}',  # not a string
        b'{"RequestId": "never closed',
        b'{"requestId": "x", "Items": [1]}',  # another letter case: the whole text
    ],
)
def test_without_a_request_id_string_the_whole_text_counts(text: bytes) -> None:
    digest, request_id = fingerprint(text)
    assert request_id is None
    assert digest == fingerprint(text)[0] != fingerprint(text + b" ")[0]


def test_the_cut_is_part_of_the_fingerprint() -> None:
    """Two texts whose remainders concatenate alike are told apart by where the cut is."""
    a = b'{"RequestId":"x","A":"yy"}'
    b = b'{"RequestId":"xy","A":"y"}'
    assert fingerprint(a)[0] != fingerprint(b)[0]


def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the answers decoded (instrumentation only: decoding itself is unchanged)."""
    calls: list[int] = []
    real = page_cache.decode

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(page_cache, "decode", counting)
    return calls


async def test_a_page_found_again_is_neither_decoded_nor_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeDts({REGION: [job(f"j{i:02}") for i in range(70)]})  # three pages of 30
    calls = decoded(monkeypatch)
    async with make_client(fake) as client:
        first = await client.fetch()
        assert len(calls) == 3
        second = await client.fetch()
        assert len(calls) == 3  # every page as it was: not decoded
        assert all(second.jobs[k] is first.jobs[k] for k in first.jobs)
        assert second.complete and client.stats.requests[(REGION, "OK")] == 6
        # One job of page 2 changes: that page alone is decoded and parsed again.
        fake.jobs[REGION][40] = job("j40", Status="Failed")
        third = await client.fetch()
        assert len(calls) == 4
        changed = next(k for k in third.jobs if k.job_id == "j40")
        assert third.jobs[changed].status == "Failed"
        assert all(third.jobs[k] is first.jobs[k] for k in first.jobs if k != changed)
        # The records of the pages found again stayed in the record cache: page 1
        # changing reuses every unchanged record of it.
        fake.jobs[REGION][0] = job("j00", Status="Failed")
        fourth = await client.fetch()
    assert len(calls) == 5
    assert all(
        fourth.jobs[k] is first.jobs[k] for k in first.jobs if k.job_id not in ("j00", "j40")
    )


async def test_an_error_answer_is_never_taken_for_a_page_found_again() -> None:
    fake = FakeDts({REGION: [job(f"j{i:02}") for i in range(40)]})
    async with make_client(fake, max_attempts=1) as client:
        assert (await client.fetch()).complete
        # The same bytes as page 2's, but with a 500: an error, whatever it says.
        fake.script[len(fake.requests) + 2] = lambda request: httpx.Response(
            500, content=fake.handler(request).content
        )
        failed = await client.fetch()
        assert not failed.complete
        fake.script[len(fake.requests) + 1] = error(403, "Forbidden.RAM")
        assert not (await client.fetch()).complete
        assert (await client.fetch()).complete


records = st.lists(
    st.builds(
        lambda i, status, delay: job(f"j{i:02}", Status=status, Delay=str(delay)),
        st.integers(0, 50),
        st.sampled_from(["Synchronizing", "Failed"]),
        st.integers(0, 3),
    ),
    max_size=70,
    unique_by=lambda j: j["SynchronizationJobId"],
)


@settings(max_examples=40, deadline=None)
@given(listings=st.lists(records, min_size=2, max_size=5))
async def test_property_a_cached_client_reads_what_a_fresh_one_reads(
    listings: list[list[dict[str, Any]]],
) -> None:
    cached = FakeDts({REGION: []})
    async with make_client(cached) as client:
        for jobs in listings:
            cached.jobs[REGION] = jobs
            fresh = FakeDts({REGION: jobs})
            async with make_client(fresh) as once:
                expected = await once.fetch()
            got = await client.fetch()
            assert got.jobs == expected.jobs
            assert got.complete == expected.complete
