"""What the settings' sections share: the base class, names, URLs, and redaction."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "DTS_WATCHER_"
CONFIG_ENV = "DTS_WATCHER_CONFIG"
# A NATS subject token: no dots, wildcards or whitespace.
TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
REGION = re.compile(r"^[a-z0-9][a-z0-9\-]*[a-z0-9]$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def http_url(value: str | None) -> str | None:
    """`host[:port]` or `http(s)://host[:port]` -> a URL without a trailing slash."""
    if value is None or not value.strip():
        return None
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"https://{value}"
    scheme, _, rest = value.partition("://")
    if scheme not in {"http", "https"} or not rest or "/" in rest:
        raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
    return value


_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@", re.I)


def redact_url(url: str) -> str:
    """`nats://user:secret@host` -> `nats://user:**********@host`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:**********@", url)
