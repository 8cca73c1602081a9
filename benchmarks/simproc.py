"""The DTS simulator in a process of its own, so the watcher's CPU time is only its own.

Run as `python -m benchmarks.simproc --jobs N --regions R`: it builds the benchmark
scenario, starts `dts_sim.Simulator` on a free port (with the page cache of
`benchmarks.simcache`), prints one JSON line (`{"url": ..., "regions": [...]}`) and
serves until its stdin closes or it gets SIGTERM.
`SimProcess` is the driver's handle on it: start, stop, and the admin API.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simproc")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accounts", type=int, default=1)
    args = parser.parse_args()

    from benchmarks import workload
    from benchmarks.simcache import CachedPages
    from dts_sim import Simulator

    regions = workload.regions_for(args.regions)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scenario = workload.scenario(args.jobs, regions, args.seed, args.accounts)
    sim = Simulator(scenario, pages=CachedPages())
    shards = workload.shards_for(args.accounts, args.regions)
    with sim:
        print(json.dumps({"url": sim.url, "regions": regions, "shards": shards}), flush=True)

        def watch_stdin() -> None:
            sys.stdin.read()  # returns at end of file: the driver went away
            done.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        done.wait()
    return 0


class SimProcess:
    """A running `benchmarks.simproc`, and its admin API (`/_sim/...`)."""

    def __init__(self, jobs: int, regions: int, seed: int = 7, accounts: int = 1) -> None:
        self.jobs = jobs
        self._args = ["--jobs", str(jobs), "--regions", str(regions), "--seed", str(seed)]
        self._args += ["--accounts", str(accounts)]
        self.shards: list[tuple[str, str]] = []
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self.regions: list[str] = []
        self._http = httpx.Client(timeout=120, trust_env=False)

    def start(self, timeout: float = 300) -> SimProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.simproc", *self._args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self._process.stdout.readline()
        if not line or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError("the simulator process did not start")
        info = json.loads(line)
        self.url, self.regions = info["url"], info["regions"]
        self.shards = [(account, region) for account, region in info["shards"]]
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        process, self._process = self._process, None
        self._http.close()
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin API -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        # The admin API takes JSON only, body or not (a web page cannot forge that).
        headers = {"Content-Type": "application/json"}
        response = self._http.request(method, f"{self.url}/_sim{path}", json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    def advance(self, n: int = 1) -> int:
        return int(self._call("POST", "/advance", {"n": n})["step"])

    def tick(self, n: int = 1) -> int:
        return int(self._call("POST", "/tick", {"n": n})["ticks"])

    def reset(self) -> None:
        self._call("POST", "/reset")

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests")["requests"])

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def set_job(self, key: str, **changes: Any) -> None:
        self._call("PATCH", f"/jobs/{key}", changes)


def clean_env() -> dict[str, str]:
    """The environment for child processes: no DTS_WATCHER_* or ALIBABA_CLOUD_* settings
    of the person running the benchmark leak into the measured watcher."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_"))
    }
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return env


if __name__ == "__main__":
    sys.exit(main())
