#!/usr/bin/env python3
"""One entry point for people and CI: sets up `.venv` on first use, then runs a task.

    python3 dev.py demo [ARGS]   run the demo (embedded NATS + DTS simulator + watcher)
    python3 dev.py test [ARGS]   lint, type-check and run the whole test suite, then (without
                                 ARGS) its time-sensitive tests again a year ahead
    python3 dev.py lint          ruff check, ruff format --check, mypy
    python3 dev.py bench [ARGS]  the benchmark runner
    python3 dev.py run ARGS      any dts-watcher command, inside the project's venv

Only the standard library is used here, so a fresh machine needs nothing but Python 3.11+.
The venv is reinstalled when pyproject.toml or sim/pyproject.toml changes (a stamp file
records their hash). Both are installed editable: the watcher with its dev extra, and the
simulator (sim/, the `dts-watcher-sim` distribution that extra asks for).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".dts-watcher-installed"
# pytest-xdist workers for the whole suite: most tests wait on servers (nats-server, the
# simulator, subprocesses), so more workers than cores still shortens the run.
WORKERS = 4
SIM = ROOT / "sim"
PROJECT_FILES = (ROOT / "pyproject.toml", SIM / "pyproject.toml")


def _ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dts-watcher needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    digest = hashlib.sha256()
    for path in PROJECT_FILES:
        digest.update(path.read_bytes())
    wanted = digest.hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PY.exists():
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(
        "dev.py: installing dts-watcher with its dev extra and the simulator (first run only)",
        file=sys.stderr,
    )
    quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run([str(PY), "-m", "pip", "install", *quiet, "--upgrade", "pip"], check=True)
    # One command, so the dev extra's `dts-watcher-sim` resolves to the local sim/ folder.
    install = ["-e", str(SIM), "-e", f"{ROOT}[dev]"]
    subprocess.run([str(PY), "-m", "pip", "install", *quiet, *install], check=True)
    STAMP.write_text(wanted)


def _run(*args: str) -> int:
    """Run a task in the venv and return its exit code.

    The task runs in a session of its own, and SIGINT and SIGTERM that reach this process
    are passed on to it once: a terminal's Ctrl-C (sent to the whole foreground group)
    then reaches the task exactly once, whichever of the two gets it, and the task shuts
    down in its own order (the demo: watcher first, then NATS and the simulator).
    """
    env = dict(os.environ)
    # Put the venv first on PATH so `nats-server` and `dts-watcher` resolve to ours.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    child = subprocess.Popen(list(args), cwd=ROOT, env=env, start_new_session=True)

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def lint() -> int:
    for cmd in (
        [str(PY), "-m", "ruff", "check", "."],
        [str(PY), "-m", "ruff", "format", "--check", "."],
        [str(PY), "-m", "mypy"],
    ):
        code = _run(*cmd)
        if code:
            return code
    return 0


def clock_check() -> int:
    """No test may depend on the date it runs at: run those that handle absolute time
    again with the wall clock a year ahead (see tests/conftest.py)."""
    print("dev.py: the time-sensitive tests again, the clock a year ahead", file=sys.stderr)
    return _run(str(PY), "-m", "pytest", "-q", "-n", str(WORKERS), "--clock-shift=365")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    task, rest = argv[0], argv[1:]
    _ensure_venv()
    if task == "demo":
        return _run(str(PY), "-m", "watcher", "demo", *rest)
    if task == "test":
        suite = rest or ["-n", str(WORKERS)]
        return lint() or _run(str(PY), "-m", "pytest", *suite) or (0 if rest else clock_check())
    if task == "lint":
        return lint()
    if task == "bench":
        return _run(str(PY), "-m", "benchmarks", *rest)
    if task == "run":
        return _run(str(PY), "-m", "watcher", *rest)
    print(f"dev.py: unknown task {task!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
