"""A broken file system under a real process, without root tricks CI lacks.

- `fill_disk(pid)` / `free_disk(pid)`: from now on, the process cannot make any file
  grow (RLIMIT_FSIZE of one byte, set from outside with prlimit), as on a full disk: its
  writes fail with EFBIG, which SQLite reports as a disk I/O error, until `free_disk`.
  Start the process under `IGNORING_XFSZ`, or the signal that comes with it kills it.
- `as_plain_user()`: a command prefix under which file permissions bind even for root
  (CI runs as root): `setpriv` drops the capabilities that override them. Not root: none
  is needed. A test skips if neither works.
"""

from __future__ import annotations

import os
import resource
import shutil

import pytest

__all__ = ["IGNORING_XFSZ", "as_plain_user", "fill_disk", "free_disk"]

# `sh -c 'trap "" XFSZ; exec "$@"' sh COMMAND...`: SIGXFSZ ignored, inherited through exec.
IGNORING_XFSZ = ("sh", "-c", 'trap "" XFSZ; exec "$@"', "sh")


def fill_disk(pid: int) -> None:
    """The process can no longer grow a file (its writes past one byte fail)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))


def free_disk(pid: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


def as_plain_user() -> tuple[str, ...]:
    """A command prefix under which file permissions apply to this user."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv: file permissions cannot be made to bind")
    drop = "-dac_override,-dac_read_search,-fowner"
    return (setpriv, f"--bounding-set={drop}", "--inh-caps=-all")
