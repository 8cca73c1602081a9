"""Where events go (`[nats]`): the servers, the stream, authentication and TLS.

Every server URL is checked here, so that `check-config` refuses what `run` could not
use: an empty list (`DTS_WATCHER_NATS__URL=` or `,,,`) made nats-py spin forever looking
for a server. A URL is `nats://`, `tls://`, `ws://` or `wss://` (a bare `host:port` means
`nats://`), with a host; WebSocket and plain servers cannot be mixed, as nats-py refuses.

TLS is wanted when a URL says `tls://` or `wss://` or any TLS file is set (`tls_wanted`):
then the connection is encrypted or refused (`watcher.natsconn`), never plain text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from watcher.settings.common import TOKEN, Section, redact_url

SCHEMES = ("nats", "tls", "ws", "wss")


class NatsSettings(Section):
    url: str = Field("nats://127.0.0.1:4222", description="one URL or a comma-separated list")
    subject_prefix: str = "dts"
    stream: str = "DTS_EVENTS"
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    connect_timeout: float = Field(5.0, gt=0)
    duplicate_window: float = Field(
        300.0, ge=120, description="seconds; JetStream dedupe window (at least 2 minutes)"
    )
    stream_max_age: float = Field(7 * 24 * 3600.0, ge=0, description="seconds, 0 = no limit")
    stream_max_bytes: int = Field(-1, description="-1 = no limit")
    stream_replicas: int = Field(1, ge=1, le=5)
    publish_timeout: float = Field(5.0, gt=0)
    silence_bucket: str = Field(
        "dts_watcher_silences", description="JetStream key-value bucket of the silences"
    )
    tls_handshake_first: bool = Field(
        False,
        description="start TLS before the server's first words (servers configured with "
        "`handshake_first`); TLS is required either way when configured",
    )
    max_event_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        description="bytes; an event over it (or over the server's max_payload, or the "
        "stream's max_msg_size, when smaller) is trimmed, and says so in data.truncated",
    )

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str) -> str:
        servers = [u.strip() for u in value.split(",") if u.strip()]
        if not servers:
            raise ValueError("no NATS server given: set a URL like nats://host:4222")
        schemes = [check_server_url(u) for u in servers]
        if {"ws", "wss"} & set(schemes) and {"nats", "tls"} & set(schemes):
            raise ValueError("WebSocket (ws, wss) and plain (nats, tls) URLs cannot be mixed")
        if {"ws", "wss"} & set(schemes) and importlib.util.find_spec("aiohttp") is None:
            raise ValueError("ws:// and wss:// need the aiohttp package, which is not installed")
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _prefix_tokens(cls, value: str) -> str:
        if not value or not all(TOKEN.match(token) for token in value.split(".")):
            raise ValueError(f"{value!r} is not a NATS subject prefix like 'dts' or 'acme.dts'")
        return value

    @field_validator("stream", "silence_bucket")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits, - and _)")
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> NatsSettings:
        if self.tls_key_file and not self.tls_cert_file:
            raise ValueError(
                "nats.tls_key_file (DTS_WATCHER_NATS__TLS_KEY_FILE) needs "
                "nats.tls_cert_file (DTS_WATCHER_NATS__TLS_CERT_FILE)"
            )
        return self

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def tls_wanted(self) -> bool:
        """TLS is configured: by a tls:// or wss:// URL, or by any TLS setting."""
        schemes = {urlsplit(_with_scheme(u)).scheme for u in self.servers}
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        return bool(schemes & {"tls", "wss"}) or any(files) or self.tls_handshake_first

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (self.display_url if name == "url" else value)

    @property
    def display_url(self) -> str:
        """The server list with any password in it masked, for logs and errors."""
        return ",".join(redact_url(u) for u in self.servers)


def _with_scheme(url: str) -> str:
    return url if "://" in url else f"nats://{url}"


def check_server_url(url: str) -> str:
    """The scheme of one server URL; ValueError saying what is wrong with it."""
    shown = redact_url(url)
    try:
        parts = urlsplit(_with_scheme(url))
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a NATS URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"{shown!r}: the scheme must be one of {', '.join(SCHEMES)} (e.g. nats://host:4222)"
        )
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"{shown!r} holds white space or control characters")
    if not parts.hostname:
        raise ValueError(f"{shown!r} has no host (e.g. nats://host:4222)")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port")
    if parts.scheme in ("nats", "tls") and parts.path not in ("", "/"):
        raise ValueError(f"{shown!r}: a nats:// or tls:// URL has no path")
    return parts.scheme
