"""Names as key-value keys, reversibly.

A JetStream key-value key allows only `[-/_=.a-zA-Z0-9]`, and `.` separates subject
tokens. Shard and member names are the caller's (an account name, a region, a pod name)
and may hold anything, so each becomes one token: letters, digits, `-` and `_` stay as
they are, every other byte of its UTF-8 form is written `=XX` (upper-case hex). The
result is readable for the usual names (`default/cn-hangzhou` is `default=2Fcn-hangzhou`)
and decodes back exactly.

The bucket holds two kinds of entries: `lease.<shard>` (who holds a shard) and
`member.<name>` (a replica's heartbeat).
"""

from __future__ import annotations

import re

__all__ = [
    "LEASE",
    "MEMBER",
    "decode",
    "encode",
    "lease_key",
    "member_key",
    "parse_key",
    "shard_name",
]

LEASE = "lease"
MEMBER = "member"
_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ENCODED = re.compile(r"^(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+$")


def encode(name: str) -> str:
    """`name` as one key token (never empty: an empty name is refused)."""
    if not name:
        raise ValueError("an empty name cannot be a key")
    return "".join(chr(b) if b in _KEPT else f"={b:02X}" for b in name.encode("utf-8"))


def decode(token: str) -> str:
    """The name `encode` made `token` from; ValueError for anything it cannot have made."""
    if not _ENCODED.match(token):
        raise ValueError(f"{token!r} is not an encoded name")
    out = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "=":
            out.append(int(token[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(ord(token[index]))
            index += 1
    try:
        name = out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{token!r} is not an encoded name") from None
    if encode(name) != token:  # e.g. "=41" for "A": not what encode writes
        raise ValueError(f"{token!r} is not an encoded name")
    return name


def lease_key(shard: str) -> str:
    return f"{LEASE}.{encode(shard)}"


def member_key(member: str) -> str:
    return f"{MEMBER}.{encode(member)}"


def parse_key(key: str) -> tuple[str, str] | None:
    """(`lease` or `member`, the decoded name) for a key of ours; None for any other."""
    kind, _, token = key.partition(".")
    if kind not in (LEASE, MEMBER):
        return None
    try:
        return kind, decode(token)
    except ValueError:
        return None


def shard_name(account: str, region: str) -> str:
    """The shard of an (account, region) pair: `account/region` (a region id never holds
    `/`, so the pair is recoverable: split at the last `/`)."""
    if not account or not region or "/" in region:
        raise ValueError(f"({account!r}, {region!r}) is not an (account, region) pair")
    return f"{account}/{region}"
