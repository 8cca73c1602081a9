"""Running `dts-watcher` as a user would: a separate process, an environment we build.

Every command runs as `python -m watcher ...` in a subprocess whose environment is a copy
of ours without any `DTS_WATCHER_*` or `ALIBABA_CLOUD_*` variable (so a developer's own
settings never leak into a test), plus exactly what the test sets. Long-running commands
(`run`, `simulate`, `tail`) are wrapped in `CliProcess`, which collects their output
line by line in background threads so a test can wait for a line to appear, and which is
always killed on the way out.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import anyio

from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

# Generous: these bound a wait for something that normally takes well under a second
# or two; they are never the thing a test measures.
DEADLINE = 30.0

_DROPPED_PREFIXES = ("DTS_WATCHER_", "ALIBABA_CLOUD_")


def cli_env(values: Mapping[str, str | os.PathLike[str]] | None = None) -> dict[str, str]:
    """Our environment without DTS_WATCHER_* / ALIBABA_CLOUD_*, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    for key, value in (values or {}).items():
        env[key] = str(value)
    return env


def dts_env(
    dts_url: str,
    regions: Sequence[str],
    *,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
) -> dict[str, str]:
    """The variables that point the watcher at a simulator."""
    return {
        "DTS_WATCHER_DTS__ENDPOINT": dts_url,
        "DTS_WATCHER_DTS__REGIONS": json.dumps(list(regions)),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": key_secret,
        # fast retries: a failing region is reported in well under a second
        "DTS_WATCHER_DTS__BACKOFF_INITIAL": "0.01",
        "DTS_WATCHER_DTS__BACKOFF_MAX": "0.05",
    }


def watcher_env(
    state: Path, nats_url: str, dts_url: str, regions: Sequence[str], **extra: str
) -> dict[str, str]:
    """A complete environment for `run` / `once`: simulator, NATS, state file."""
    return cli_env(
        {
            **dts_env(dts_url, regions),
            "DTS_WATCHER_NATS__URL": nats_url,
            "DTS_WATCHER_NATS__CONNECT_TIMEOUT": "2",
            "DTS_WATCHER_NATS__PUBLISH_TIMEOUT": "2",
            "DTS_WATCHER_STATE__PATH": str(state),
            **extra,
        }
    )


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "watcher", *args]


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 60.0,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run one command to completion (killed if it outlives `timeout`); `prefix` runs it
    through another command (see tests/support/brokenfs.py)."""
    return subprocess.run(
        [*prefix, *command(*args)],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


Describe = str | Callable[[], str]


def _say(what: Describe) -> str:
    return what() if callable(what) else what


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    within: float = DEADLINE,
    what: Describe = "a condition",
) -> None:
    """Poll `condition` (a function or coroutine function) until it holds; fail the test
    after `within` seconds, saying `what` was awaited (a callable is asked only then, e.g.
    for a process's output so far)."""
    deadline = time.monotonic() + within
    while True:
        done = condition()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {_say(what)}")
        await anyio.sleep(0.02)


class CliProcess:
    """A `dts-watcher` command running in the background, its output collected by line."""

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str],
        cwd: Path,
        argv: Sequence[str] | None = None,
        own_group: bool = False,
        prefix: Sequence[str] = (),
    ) -> None:
        """`argv` replaces `python -m watcher` (e.g. `python3 dev.py`); `prefix` goes before
        the whole command (e.g. `setpriv ...`); `own_group` starts it as a terminal starts
        a foreground job: a process group of its own, which `interrupt_group` sends SIGINT
        to, as Ctrl-C does."""
        self.args = args
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            [*prefix, *argv, *args] if argv is not None else [*prefix, *command(*args)],
            env=dict(env),
            cwd=cwd,
            start_new_session=own_group,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout_lines)),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        stream.close()

    # -- output ------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.stderr_lines)

    def describe(self) -> str:
        return (
            f"`dts-watcher {' '.join(self.args)}` (exit {self.popen.poll()})\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def wait_for_line(
        self, predicate: Callable[[str], bool], *, stream: str = "stdout", timeout: float = DEADLINE
    ) -> str:
        """The first line of `stream` that satisfies `predicate`, waiting for it."""
        lines = self.stdout_lines if stream == "stdout" else self.stderr_lines
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(lines)
                if self.popen.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(
                        f"process ended before the line appeared\n{self.describe()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for a line\n{self.describe()}")
                self._changed.wait(min(left, 0.1))

    # -- lifecycle ---------------------------------------------------------------------

    def send_signal(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def interrupt_group(self) -> None:
        """Ctrl-C at a terminal: SIGINT to every process of the job's group."""
        os.killpg(self.popen.pid, signal.SIGINT)

    def descendants(self) -> list[int]:
        """Pids of every process started under this one, still alive (Linux /proc)."""
        found, todo = [], [self.popen.pid]
        while todo:
            pid = todo.pop()
            try:
                text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            except OSError:
                continue
            children = [int(c) for c in text.split()]
            found += children
            todo += children
        return found

    def wait(self, timeout: float = DEADLINE) -> int:
        """The exit code; fails the test (and kills the process) after `timeout`."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not exit within {timeout:g}s\n{self.describe()}") from None
        for reader in self._readers:
            reader.join(DEADLINE)
        return code

    async def wait_async(self, within: float = DEADLINE) -> int:
        return await anyio.to_thread.run_sync(self.wait, within)

    def kill(self) -> None:
        for pid in self.descendants():  # those in sessions of their own too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for reader in self._readers:
            reader.join(5)

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each non-empty line parsed as a JSON object (fails naming the first bad line)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(document, dict), f"not a JSON object: {line!r}"
        out.append(document)
    return out
