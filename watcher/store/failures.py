"""What a failing state file means, in words an operator can act on.

SQLite says what went wrong in an error code (`sqlite3.Error.sqlite_errorname`); the
service needs to know whose move it is:

- **it cannot be written right now** (`StateWriteError`): the disk is full, the file or
  its folder became read-only, an I/O error, another process holding a lock. The data in
  it is fine; the watcher stays up (not ready), and the next cycle tries again;
- **it is unusable** (`StateUnusable`): corrupt rows or pages, a file deleted, moved or
  replaced under the running watcher. Going on would announce every job again or fail
  every cycle; the watcher says so once and stops (exit 2), as it does at start-up.

`FileIdentity` notices a file deleted or replaced while the watcher has it open, which
SQLite would otherwise go on writing to (the deleted inode) until the next start made a
new, empty one.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from watcher.errors import StateError, StateUnusable, StateWriteError

RECOVERY = (
    "to start afresh, move the file aside (every job will then be announced as discovered "
    "again, and events still in its outbox are lost), or restore it from a backup"
)
_TRANSIENT = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED")
_READ_ONLY = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")

__all__ = ["RECOVERY", "FileIdentity", "at_open", "while_running"]


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _moved(code: str) -> bool:
    return code == "SQLITE_READONLY_DBMOVED"


def at_open(path: Path, exc: sqlite3.Error) -> StateError:
    """A failure while opening the file: read-only (with what to do, nothing lost) or
    unreadable (with the recovery advice)."""
    code = _code(exc)
    if code.startswith(_READ_ONLY) and not _moved(code):
        return StateError(read_only(path, f"{exc} ({code})"))
    if code.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        return StateError(
            f"state file {path} cannot be written ({exc}, {code}): free some space on its "
            "disk, then start again; nothing in it is lost"
        )
    return StateError(f"state file {path} is unreadable ({exc}); {RECOVERY}")


def read_only(path: Path, detail: str) -> str:
    return (
        f"state file {path} is read-only for this user ({detail}): make it and its folder "
        f"writable by uid {os.geteuid()} (SQLite writes {path.name}-wal and {path.name}-shm "
        "beside it), then start again; nothing in it is lost. Do not move it aside: that "
        "would lose the events waiting in its outbox"
    )


def while_running(path: Path, exc: BaseException, doing: str) -> StateError:
    """A failure of a running store: `StateWriteError` (retry later) or `StateUnusable`."""
    code = _code(exc)
    if _moved(code):
        return StateUnusable(deleted(path, "deleted or moved"))
    if isinstance(exc, sqlite3.Error) and code.startswith(_TRANSIENT):
        return StateWriteError(f"cannot {doing} state file {path}: {exc} ({code})")
    return StateUnusable(
        f"state file {path} became unusable while running ({type(exc).__name__}: {exc}); {RECOVERY}"
    )


def deleted(path: Path, how: str) -> str:
    return (
        f"state file {path} was {how} while the watcher ran: stopping rather than starting "
        "a new one, which would announce every job as discovered again. Put the file back "
        f"(or, {RECOVERY})"
    )


@dataclass(frozen=True)
class FileIdentity:
    """The file a path named when the store was opened (device and inode)."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        st = os.stat(path)
        return cls(path, st.st_dev, st.st_ino)

    def check(self) -> None:
        """StateUnusable if the path no longer names that file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StateUnusable(deleted(self.path, "deleted")) from None
        except OSError:
            return  # cannot tell (a folder made unreadable): SQLite will say
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            raise StateUnusable(deleted(self.path, "replaced by another file"))
