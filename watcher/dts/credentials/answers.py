"""Reading what credential endpoints and files answer, the same way for every source."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from watcher.dts.credentials.base import Credentials, CredentialsError

_MAX_MESSAGE = 300


def clean(message: str, *secrets: str) -> str:
    """An upstream message fit for an error: one line, short, no secret echoed back."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = " ".join(message.split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def parse_expiration(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise CredentialsError(f"{where}: the answer has no Expiration")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CredentialsError(
            f"{where}: Expiration {clean(raw)!r} is not an ISO 8601 time"
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


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def read_text(path: Path, what: str) -> str:
    try:
        return await anyio.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CredentialsError(f"{what} {path} cannot be read: {reason}") from None
