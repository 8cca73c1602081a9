"""Where events go (`[nats]`): the servers, the stream, authentication and TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator

from watcher.settings.common import TOKEN, Section, redact_url


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

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (self.display_url if name == "url" else value)

    @property
    def display_url(self) -> str:
        """The server list with any password in it masked, for logs and errors."""
        return ",".join(redact_url(u) for u in self.servers)
