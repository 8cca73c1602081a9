"""The `--clock-shift` check bites: a test tied to today's date fails under it, a test
with an injected clock does not, and tests that share the wall clock are left out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
from datetime import UTC, datetime, timedelta

import pytest

BUILT = datetime.now(UTC)  # when the module was imported, before any shift


def test_tied_to_today() -> None:
    # "fixtures pinned to a date, checked against the real clock"
    expires = BUILT + timedelta(hours=1)
    assert datetime.now(UTC) < expires


def test_with_an_injected_clock() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert now + timedelta(hours=1) > now


@pytest.mark.wall_clock
def test_sharing_the_clock_with_another_process() -> None:
    raise AssertionError("must not run under --clock-shift")
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_dates.py").write_text(TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    options = ["-o", "markers=wall_clock: shared", "--rootdir", str(tmp_path), "-q", *args]
    return subprocess.run(
        [*command, *options, str(tmp_path / "test_dates.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_a_test_tied_to_the_date_fails_a_year_ahead(tmp_path: Path) -> None:
    shifted = run(tmp_path, "--clock-shift=365")
    assert "1 failed, 1 passed, 1 deselected" in shifted.stdout, shifted.stdout
    assert "test_tied_to_today" in shifted.stdout


def test_without_the_shift_every_test_runs(tmp_path: Path) -> None:
    plain = run(tmp_path)
    assert "1 failed, 2 passed" in plain.stdout, plain.stdout  # the wall-clock one fails
