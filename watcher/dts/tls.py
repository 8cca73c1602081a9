"""Whom the HTTPS clients to DTS, STS and the metadata service trust.

By default the certificates bundled with httpx (certifi); with `dts.tls_ca_file`, only
the authorities in that PEM file (a private CA, a TLS-inspecting proxy). The clients are
built with `trust_env=False` (no proxy from the environment may sit between the watcher
and its credentials), which also means `SSL_CERT_FILE` is not read: this setting is the
way to trust another CA, so nobody has to fall back to plain http://.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What to give httpx's `verify=`: True (the default bundle) or a context."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The same trust as an `SSLContext` (for the DTS client's own transport)."""
    verify = tls_verify(ca_file)
    if isinstance(verify, ssl.SSLContext):
        return verify
    return httpx.create_ssl_context(verify, trust_env=False)
