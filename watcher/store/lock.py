"""One watcher per state file: an exclusive lock, held for as long as the store is open.

Two watchers on one state file would both run, and announce every change twice with
different ids. So opening the store takes `flock(LOCK_EX | LOCK_NB)` on a lock file beside
it (`<state>.lock`, which holds the owner's process id), and closing it lets go; so does
the kernel when the process dies, however it dies, so a stale lock is never left behind.
The lock file itself is harmless to delete while nobody runs. The second watcher is
refused at once, with the first one's pid.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from watcher.errors import StateError

__all__ = ["StateLock", "lock_path"]


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".lock")


class StateLock:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def take(cls, state: Path) -> StateLock:
        """Lock `state` for this process; StateError naming the holder if it is taken."""
        path = lock_path(state)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(_cannot_lock(state, path, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError(_cannot_lock(state, path, exc)) from None
            who = f"pid {holder}" if holder else "another process"
            raise StateError(
                f"state file {state} is in use by another dts-watcher ({who}, per {path}): "
                "run one watcher per state file; stop that one first, or give this one "
                "its own DTS_WATCHER_STATE__PATH"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the lock holds without the pid written (a full disk): only the note is lost
        return cls(fd, path)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor lets go of the lock


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cannot_lock(state: Path, path: Path, exc: OSError) -> str:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f"state file {state} cannot be locked: its folder is read-only for this user "
            f"({exc.strerror}: {path}); make {state.parent} writable by uid {os.geteuid()} "
            "(the watcher writes its lock, and SQLite its -wal and -shm files, beside the "
            "state); nothing in it is lost"
        )
    return f"state file {state} cannot be locked ({exc.strerror}: {path})"
