"""What the settings' sections share: the base class, names, URLs, and redaction."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "DTS_WATCHER_"
CONFIG_ENV = "DTS_WATCHER_CONFIG"
# A NATS subject token: no dots, wildcards or whitespace.
TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
REGION = re.compile(r"^[a-z0-9][a-z0-9\-]*[a-z0-9]$")


class Section(BaseModel):
    # No setting of ours means anything at infinity or NaN (a threshold, an interval, a
    # duration): refused when loaded, naming the setting, rather than failing later.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_URL_SHOWN = 80  # characters of a refused URL quoted back in the error


def http_url(value: str | None) -> str | None:
    """`host[:port]` or `http(s)://host[:port]` -> a URL without a trailing slash.

    The host must be a DNS name or an IP address and the port a number from 1 to 65535;
    anything else (spaces, a user name, a path, a query) is refused here, when the
    settings are loaded, rather than by the first request."""
    if value is None or not value.strip():
        return None
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"https://{value}"
    shown = redact_url(value)
    shown = shown if len(shown) <= _URL_SHOWN else shown[: _URL_SHOWN - 3] + "..."
    scheme, _, rest = value.partition("://")
    problem = _url_problem(scheme.lower(), rest)
    if problem:
        raise ValueError(f"{shown!r} is not an http(s)://host[:port] URL ({problem})")
    return f"{scheme.lower()}://{rest}"


def _url_problem(scheme: str, rest: str) -> str | None:
    if scheme not in {"http", "https"}:
        return "the scheme must be http or https"
    if not rest or any(c in rest for c in "/?#@\\") or not rest.isascii() or not rest.isprintable():
        return "only a host and a port may follow the scheme"
    parts = urlsplit(f"{scheme}://{rest}")
    try:
        port = parts.port
    except ValueError:
        return "the port must be a number from 1 to 65535"
    if port == 0 or (rest.endswith(":") and port is None):
        return "the port must be a number from 1 to 65535"
    host = parts.hostname or ""
    if rest.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "not an IPv6 address in brackets"
        return None
    if not _HOSTNAME.match(host) or (host.replace(".", "").isdigit() and not _is_ipv4(host)):
        return "not a host name or an IP address"
    return None


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def is_loopback(url: str) -> bool:
    """Whether an http(s) URL (as `http_url` returns it) names this machine."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def header_safe(value: str) -> str:
    """A credential as it will be sent in an HTTP header: surrounding whitespace (a
    newline from a file) stripped; anything else that a header cannot carry refused.

    Raises ValueError with a message that never quotes the value (it is a secret)."""
    text = value.strip()
    for index, char in enumerate(text):
        if not "\x21" <= char <= "\x7e":
            what = "a space" if char == " " else "a non-ASCII" if ord(char) > 127 else "a control"
            raise ValueError(
                f"contains {what} character at position {index + 1}: an HTTP header "
                "cannot carry it (is the value pasted whole, from the right file?)"
            )
    return text


_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@", re.I)


def redact_url(url: str) -> str:
    """`nats://user:secret@host` -> `nats://user:**********@host`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:**********@", url)
