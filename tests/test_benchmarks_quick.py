"""The benchmark runner keeps working: `python -m benchmarks --quick` runs every measure
on a small workload and prints its table. No number is asserted: timings belong to the
benchmarks, which compare against baselines measured in the same run, not to the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEGACY_ROWS = (
    *("1", "1b", "2a", "2b", "3", "4a", "4b", "5a", "5b", "6a", "6b", "6c", "7", "7b"),
    *("8a", "8b", "8c", "8d", "9a", "9b", "9c", "9d"),
)
# the same with DescribeDtsJobs (detection alone, 2, does not depend on the listing; the
# scale, 8, runs once in a quick run; several replicas, 9, once in any run)
ROWS = (*LEGACY_ROWS, *(f"D{row}" for row in LEGACY_ROWS if row[0] not in "289"))

pytestmark = pytest.mark.e2e


def test_the_quick_benchmark_runs_and_prints_every_measure() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTS_WATCHER_")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    table = [line.split()[0] for line in lines[header + 2 :] if line.strip()]
    for row in ROWS:
        assert row in table, f"no row {row} in:\n{done.stdout}"
    # The same results as JSON (the last line), every row with a value and a baseline.
    results = json.loads(lines[-1])
    assert sorted(r["number"] for r in results["rows"]) == sorted(ROWS)
    for row in results["rows"]:
        assert row["value"] and row["baseline"] and row["ratio"] and row["target"]
