"""Connecting to NATS: the options from settings, and a client that never speaks in plain
text when TLS is configured.

nats-py upgrades a connection to TLS only when the server's first words (its INFO) say
`tls_required`, even for a `tls://` URL with a CA file. A server that leaves that out (a
man in the middle, a misconfigured proxy) would then receive the CONNECT, and with it the
configured password or token, in the clear. So when TLS is wanted (`tls_wanted`: a
`tls://` or `wss://` URL, or any TLS setting), the client here checks, just before CONNECT
is written, that the connection under it is encrypted, and refuses to go on otherwise
(`TlsNotOffered`: nothing has been sent at that point). With `nats.tls_handshake_first`
the TLS handshake comes before the server says anything (servers configured with
`handshake_first`), so not even the INFO travels in the clear.

The same connection serves `run`, `once`, `tail` and `check-config --probe`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client

from watcher.settings import NatsSettings

__all__ = ["TlsNotOffered", "connect", "connect_options", "encrypted"]


class TlsNotOffered(nats.errors.Error):
    """TLS is configured, and the server offered a plain-text connection: refused."""

    def __str__(self) -> str:
        return (
            "TLS is configured, but the server did not start TLS (its INFO does not require "
            "it): refused before sending anything, credentials included; configure TLS on "
            "the server (or nats.tls_handshake_first for a server with handshake_first)"
        )


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py connect() arguments from our settings (secrets passed, never logged)."""
    options: dict[str, Any] = {
        "servers": settings.servers,
        "name": "dts-watcher",
        "connect_timeout": settings.connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
    }
    if settings.user:
        options["user"] = settings.user
    if settings.password:
        options["password"] = settings.password.get_secret_value()
    if settings.token:
        options["token"] = settings.token.get_secret_value()
    if settings.nkey_seed_file:
        options["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.creds_file:
        options["user_credentials"] = str(settings.creds_file)
    if settings.tls_wanted:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file:
            context.load_cert_chain(
                str(settings.tls_cert_file),
                str(settings.tls_key_file) if settings.tls_key_file else None,
            )
        options["tls"] = context
        options["tls_handshake_first"] = settings.tls_handshake_first
    return options


def encrypted(client: Client) -> bool:
    """Whether the client's connection is TLS (False when it cannot be told)."""
    transport = getattr(client, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    if writer is not None:  # TCP: TLS once the stream was upgraded
        return writer.get_extra_info("ssl_object") is not None
    return getattr(transport, "_using_tls", None) is True  # WebSocket: wss


class _TlsOnlyClient(Client):
    """nats-py's client, refusing to send CONNECT over a connection that is not TLS."""

    def _connect_command(self) -> bytes:
        if not encrypted(self):
            raise TlsNotOffered()
        return super()._connect_command()


ErrorCallback = Callable[[Exception], Awaitable[None]]


async def connect(settings: NatsSettings, **overrides: Any) -> Client:
    """A connected nats-py client (TLS or nothing, when TLS is configured).

    `overrides` replace options of `connect_options` (callbacks, reconnect policy).
    Raises what nats-py raises; the caller bounds the time it may take.
    """
    options = connect_options(settings)
    options.update(overrides)
    client = _TlsOnlyClient() if settings.tls_wanted else Client()
    await client.connect(**options)
    return client
