"""Subjects: how a job's region and id become NATS subject tokens, and what a stream must
capture for the watcher's events to land in it.

    <prefix>.job.<token(region)>.<token(job_id)>.<kind>     job events
    <prefix>.watcher.<kind>                                 the watcher's own

`subject_token` is an escape, so that two different values never share a token, and a
consumer can compute the subject of any job (README, "Subjects"):

- ASCII letters, digits, `-` and `_` stand for themselves: DTS job ids (alphanumeric) and
  region ids (`cn-hangzhou`) are their own tokens, as they always were;
- every other character becomes `%XX` for each byte of its UTF-8 form (uppercase hex; a
  lone surrogate, which JSON can carry, as its three-byte form): `a.b` is `a%2Eb`, `a_b`
  stays `a_b`, a NUL is `%00`, a zero-width space `%E2%80%8B`, `%` itself `%25`;
- an escaped form longer than 64 characters, or empty, is shortened to its first 32
  characters (less a `%XX` cut in two), then `%%`, then the first 32 hex digits of the
  SHA-256 of the value's UTF-8 form: at most 66 characters. `%%` never appears in an
  escaped form, so a short form is never mistaken for another value's token.

`urllib.parse.unquote` reverses a token that is not a short form. `data.job_id` in the
event always carries the id itself.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Sequence
from typing import Final

from watcher.kinds import JOB_KINDS, WATCHER_KINDS

ESCAPE: Final = "%"
_SAFE_TEXT: Final = string.ascii_letters + string.digits + "-_"
_SAFE: Final = frozenset(_SAFE_TEXT)
MAX_ESCAPED: Final = 64  # longer escaped forms are shortened
_HEAD, _DIGEST = 32, 32

__all__ = [
    "ESCAPE",
    "MAX_ESCAPED",
    "job_subject",
    "publishable",
    "subject_token",
    "uncovered",
    "wanted_subjects",
    "watcher_subject",
]


def subject_token(value: str) -> str:
    """`value` as one NATS subject token (see the module's docstring for the rule)."""
    if value and len(value) <= MAX_ESCAPED and value.isascii() and not value.strip(_SAFE_TEXT):
        return value  # only safe characters (a DTS id, a region), quickly: a storm has 10,000
    escaped = "".join(
        c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in value
    )
    if escaped and len(escaped) <= MAX_ESCAPED:
        return escaped
    head = escaped[:_HEAD]
    if ESCAPE in head[-2:]:  # do not cut a %XX in two
        head = head[: head.rindex(ESCAPE)]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    return f"{head}{ESCAPE}{ESCAPE}{digest}"


def job_subject(prefix: str, region: str, job_id: str, kind: str) -> str:
    return f"{prefix}.job.{subject_token(region)}.{subject_token(job_id)}.{kind}"


def watcher_subject(prefix: str, kind: str) -> str:
    return f"{prefix}.watcher.{kind}"


# The longest subject the publisher sends (a short form is 66 characters): far below
# nats-server's control line (4 KB), which a PUB line must fit in whole.
MAX_SUBJECT: Final = 512


def publishable(subject: str) -> str | None:
    """Why a subject cannot be published (an outbox row of an older version), or None."""
    if not subject or len(subject) > MAX_SUBJECT:
        return f"its subject is {len(subject)} characters long (at most {MAX_SUBJECT})"
    if any(c.isspace() or not c.isprintable() or c in "*>" for c in subject):
        return "its subject holds white space, control characters or wildcards"
    if "" in subject.split("."):
        return "its subject has an empty token"
    return None


# -- what a stream must capture ------------------------------------------------------------


def wanted_subjects(prefix: str) -> list[str]:
    """Every subject pattern the watcher publishes on (`*`: any region or job id)."""
    jobs = [f"{prefix}.job.*.*.{kind}" for kind in JOB_KINDS]
    return jobs + [watcher_subject(prefix, kind) for kind in WATCHER_KINDS]


def uncovered(filters: Iterable[str], prefix: str) -> list[str]:
    """The patterns of `wanted_subjects` that none of a stream's subject filters captures.

    A stream captures what the watcher publishes if each pattern falls under one filter:
    `dts.>` does, and so do `dts.job.>` with `dts.watcher.>`, or a filter per kind.
    """
    split = [f.split(".") for f in filters]
    return [p for p in wanted_subjects(prefix) if not any(_covers(f, p.split(".")) for f in split)]


def _covers(pattern: Sequence[str], subject: Sequence[str]) -> bool:
    """Whether the filter `pattern` matches every subject `subject` stands for (a `*` in
    `subject` is any token, so only a `*` or `>` of the filter covers it)."""
    for i, part in enumerate(pattern):
        if part == ">":
            return len(subject) > i
        if i >= len(subject):
            return False
        if part != "*" and part != subject[i]:  # a literal never covers a `*`
            return False
    return len(pattern) == len(subject)
