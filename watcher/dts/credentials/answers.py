"""Reading what credential endpoints and files answer, the same way for every source.

Every answer is bounded before it is believed: HTTP answers are read within a size cap
(`ANSWER_CAP`, decoded; see `watcher.dts.body`), files are opened without blocking and
must be regular files (a FIFO would hang the read forever) no larger than their cap, and
what the answers say is bounded before it reaches a message (`clean`). What a source
issues is checked the way configured keys are (`checked`): a key with a newline, a space
or a non-ASCII character is that source's failure, not a crash of the request it signs.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from pydantic import SecretStr

from watcher.dts.body import BodyError, read_body
from watcher.dts.credentials.base import Credentials, CredentialsError
from watcher.dts.upstream import clean
from watcher.settings.common import header_safe

__all__ = [
    "ANSWER_CAP",
    "FILE_CAP",
    "checked",
    "clean",
    "json_object",
    "parse_expiration",
    "read_answer",
    "read_text",
    "temporary",
]

ANSWER_CAP = 64 * 1024  # a credentials answer is about a kilobyte
FILE_CAP = 1 << 20  # a profile file or an OIDC token (a JWT of a few kilobytes)


def parse_expiration(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise CredentialsError(f"{where}: the answer has no Expiration")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CredentialsError(
            f"{where}: Expiration {clean(raw, limit=60)!r} is not an ISO 8601 time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def temporary(data: Mapping[str, Any], where: str) -> Credentials:
    """AccessKeyId / AccessKeySecret / SecurityToken / Expiration, as STS and ECS send them."""
    names = ("AccessKeyId", "AccessKeySecret", "SecurityToken")
    missing = [name for name in names if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise CredentialsError(f"{where}: the answer lacks {', '.join(missing)}")
    return Credentials(
        access_key_id=data["AccessKeyId"],
        access_key_secret=SecretStr(data["AccessKeySecret"]),
        security_token=SecretStr(data["SecurityToken"]),
        expiration=parse_expiration(data.get("Expiration"), where),
    )


def checked(credentials: Credentials, where: str) -> Credentials:
    """What a source issued, as the configured keys are checked when loaded: surrounding
    whitespace stripped, anything an HTTP header cannot carry refused (naming the field,
    never quoting it)."""
    fields = {
        "access key id": credentials.access_key_id,
        "access key secret": credentials.access_key_secret.get_secret_value(),
        "security token": (
            credentials.security_token.get_secret_value() if credentials.security_token else ""
        ),
    }
    clean_values: dict[str, str] = {}
    for name, value in fields.items():
        try:
            clean_values[name] = header_safe(value)
        except ValueError as exc:
            raise CredentialsError(f"{where}: the issued {name} {exc}") from None
    if not clean_values["access key id"] or not clean_values["access key secret"]:
        raise CredentialsError(f"{where}: issued an empty access key")
    token = clean_values["security token"]
    return replace(
        credentials,
        access_key_id=clean_values["access key id"],
        access_key_secret=SecretStr(clean_values["access key secret"]),
        security_token=SecretStr(token) if token else None,
    )


def json_object(content: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except Exception:  # not JSON, not UTF-8, nested too deep
        return None
    return data if isinstance(data, dict) else None


async def read_answer(response: httpx.Response, where: str) -> bytes:
    """A streamed credentials answer, at most ANSWER_CAP bytes once decoded."""
    try:
        return await read_body(response, ANSWER_CAP)
    except BodyError as exc:
        raise CredentialsError(f"{where}: {exc.reason}") from None


async def read_text(path: Path, what: str, cap: int = FILE_CAP) -> str:
    """A small regular file as text; a FIFO, a device or a huge file is refused (the
    read runs in a worker thread that a deadline may abandon)."""
    return await anyio.to_thread.run_sync(read_text_now, path, what, cap, abandon_on_cancel=True)


def read_text_now(path: Path, what: str, cap: int = FILE_CAP) -> str:
    """`read_text`, blocking (for start-up)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CredentialsError(f"{what} {path} is not a regular file (a FIFO, a device?)")
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= cap:
            chunk = os.read(fd, cap + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > cap:
            raise CredentialsError(f"{what} {path} is larger than {cap:,} bytes")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialsError(f"{what} {path} cannot be read: it is not UTF-8 text") from None
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
