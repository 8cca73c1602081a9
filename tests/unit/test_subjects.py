"""Subjects (issue 12, item 6): an id or region becomes one subject token that no other
value shares, plain DTS ids stay as they are, and a consumer can compute it from the
README alone. And which stream filters capture what the watcher publishes (item 12)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from watcher.kinds import JOB_KINDS, WATCHER_KINDS
from watcher.subjects import job_subject, publishable, subject_token, uncovered

WATCHERS = [f"dts.watcher.{k}" for k in WATCHER_KINDS]
README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_%-]+$")


@pytest.mark.parametrize("value", ["dtsq2w3e4r5t6y7u8i", "cn-hangzhou", "a_b", "ap-southeast-1"])
def test_plain_ids_and_regions_are_their_own_token(value: str) -> None:
    assert subject_token(value) == value


def test_the_reviewed_collisions_are_gone() -> None:
    tokens = {subject_token(v) for v in ("a.b", "a_b", "a b", "a\x00b", "a\x7fb", "a\u200bb")}
    assert len(tokens) == 6
    assert subject_token("a\x00b") == "a%00b" and subject_token("a\u200bb") == "a%E2%80%8Bb"


def test_a_long_id_gets_a_stable_short_form_apart_from_every_other() -> None:
    long_a, long_b = "x" * 10_000, "x" * 9_999 + "y"
    token = subject_token(long_a)
    assert token == subject_token(long_a) and token != subject_token(long_b)
    assert len(token) <= 66 and token.startswith("x" * 32 + "%%")
    # a cut never splits an escape: the head ends before a `%XX` that would not fit
    dotted = subject_token("." * 40)
    assert dotted.split("%%")[0] == "%2E" * 10


def token_ok(token: str) -> bool:
    return bool(TOKEN_CHARS.match(token)) and len(token) <= 66


@settings(max_examples=500, deadline=None)
@given(a=st.text(), b=st.text())
@example(a="a.b", b="a_b")
@example(a="", b="%")
@example(a="x" * 65, b="x" * 66)
def test_property_distinct_values_never_share_a_token(a: str, b: str) -> None:
    ta, tb = subject_token(a), subject_token(b)
    assert token_ok(ta) and token_ok(tb)
    assert (ta == tb) == (a == b)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=21))
def test_property_a_token_that_is_not_short_decodes_back(value: str) -> None:
    from urllib.parse import unquote

    token = subject_token(value)
    if "%%" not in token:
        assert unquote(token, errors="surrogatepass") == value


def readme_snippet() -> dict[str, Callable[..., str]]:
    """The Python the README gives consumers to compute a subject, run as it is."""
    text = README.read_text(encoding="utf-8")
    marker = text.index("compute a job's subject")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block, "the README's subject snippet is missing"
    namespace: dict[str, Callable[..., str]] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    return namespace


@settings(max_examples=300, deadline=None)
@given(region=st.text(max_size=12), job_id=st.text(max_size=80))
def test_property_the_readme_computes_the_same_subject(region: str, job_id: str) -> None:
    snippet = readme_snippet()
    for kind in ("discovered", "status_changed"):
        expected = job_subject("dts", region, job_id, kind)
        assert snippet["job_subject"]("dts", region, job_id, kind) == expected


# -- what a stream must capture ----------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        ["dts.>"],
        [">"],
        ["dts.job.>", "dts.watcher.>"],
        ["dts.job.*.*.*", "dts.watcher.*"],
        ["dts.*.>"],
        [*(f"dts.job.*.*.{k}" for k in JOB_KINDS), *(f"dts.watcher.{k}" for k in WATCHER_KINDS)],
    ],
)
def test_filters_that_together_capture_everything(filters: list[str]) -> None:
    assert uncovered(filters, "dts") == []


@pytest.mark.parametrize(
    ("filters", "missing"),
    [
        (["dts.job.>"], WATCHERS),
        (["dts.job.cn-hangzhou.>", "dts.watcher.>"], [f"dts.job.*.*.{k}" for k in JOB_KINDS]),
        (["dts.job.*.*.*", "dts.watcher.started"], WATCHERS[1:]),
        (
            ["other.>"],
            [*(f"dts.job.*.*.{k}" for k in JOB_KINDS)]
            + [f"dts.watcher.{k}" for k in WATCHER_KINDS],
        ),
        (["dts"], None),
    ],
)
def test_filters_that_miss_something(filters: list[str], missing: list[str] | None) -> None:
    found = uncovered(filters, "dts")
    assert found
    if missing is not None:
        assert found == missing


def test_old_outbox_subjects_that_cannot_be_published_are_named() -> None:
    assert publishable("dts.job.cn-hangzhou.abc.discovered") is None
    assert "characters long" in (publishable("dts.job.r." + "x" * 10_000 + ".removed") or "")
    assert "white space" in (publishable("dts.job.r.a\x00b.removed") or "")
    assert "empty token" in (publishable("dts.job.r..removed") or "")
