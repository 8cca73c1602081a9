"""The simulator's admin API and what a web page could make a browser send to it (issue 17,
item 9): a "simple" cross-origin POST (`text/plain`, a form), a rebound host name, a
foreign `Origin`. Real HTTP to the simulator on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dts_sim import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator("demo", auto_advance=None) as simulator:
        yield simulator


def post(sim: Simulator, headers: dict[str, str], body: bytes = b"{}") -> httpx.Response:
    return httpx.post(f"{sim.url}/_sim/advance", content=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({}, 415),
        ({"Content-Type": "application/json", "Host": "evil.example"}, 403),
        ({"Content-Type": "application/json", "Host": "127.0.0.1.nip.io"}, 403),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
    ],
    ids=["text-plain", "form", "multipart", "no-type", "host", "rebound", "origin", "null-origin"],
)
def test_what_a_web_page_could_send_changes_nothing(
    sim: Simulator, headers: dict[str, str], status: int
) -> None:
    answer = post(sim, headers)
    assert answer.status_code == status, answer.text
    assert "error" in answer.json()
    assert sim.step == 0  # nothing advanced


def test_reading_through_a_rebound_name_is_refused(sim: Simulator) -> None:
    answer = httpx.get(f"{sim.url}/_sim/state", headers={"Host": "evil.example"}, timeout=10)
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json; charset=utf-8", "Origin": "http://localhost:3000"},
        {"Content-Type": "application/json", "Host": "localhost"},
        {"Content-Type": "Application/JSON", "Host": "app.localhost:8080"},
    ],
    ids=["plain", "local-origin", "localhost", "sub-localhost"],
)
def test_scripts_and_tests_on_this_machine_still_drive_it(
    sim: Simulator, headers: dict[str, str]
) -> None:
    answer = post(sim, headers)
    assert answer.status_code == 200, answer.text
    assert sim.step == 1
