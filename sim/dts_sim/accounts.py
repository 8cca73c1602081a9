"""Several Alibaba Cloud accounts in one simulator, and STS AssumeRole into them.

Every job belongs to an account (`JobSpec.account`, `default` unless a scenario says
otherwise) and a listing shows the jobs of the caller's account only. Each account has
its own access key (`account_keys`) and a RAM role (`role_arn`) that any known key may
assume with STS `AssumeRole` (`sts.py`), which issues a temporary key of that account:
so a watcher can reach an account either with its key or, as in production, by assuming
its role from one base key. Keys and ARNs are derived from the account's name, so they
are stable and printable (`dts-watcher simulate` shows them).
"""

from __future__ import annotations

import hashlib

from dts_sim.auth import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

__all__ = ["account_keys", "account_uid", "role_arn"]


def account_uid(name: str) -> str:
    """The account's 16-digit id (what a RAM ARN names)."""
    digest = hashlib.sha256(f"dts-sim-account:{name}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big"))[:16].rjust(16, "1")


def account_keys(name: str) -> tuple[str, str]:
    """(access key id, secret) of an account; the default account's are the usual ones."""
    if name == "default":
        return DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
    return f"sim-{name}-key-id", f"sim-{name}-key-secret"


def role_arn(name: str) -> str:
    """The RAM role a watcher assumes to read `name`'s jobs."""
    return f"acs:ram::{account_uid(name)}:role/dts-watcher"
