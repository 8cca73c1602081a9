"""The container's health check: `python -m watcher.healthcheck`.

It asks the watcher's own `/healthz` (liveness) where the settings put it, reading only
the two environment variables that say where (`DTS_WATCHER_HTTP__PORT`,
`DTS_WATCHER_HTTP__HOST`), with the standard library alone: it runs every 30 seconds and
must be cheap. Exit 0 when `/healthz` answers 200, or when the endpoint is off
(`DTS_WATCHER_HTTP__PORT=0`: there is nothing to check, and an unhealthy mark would be a
lie); exit 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8080"  # the image's
_ANY = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - listening everywhere: ask on loopback


def target(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The /healthz URL to ask, or None when the endpoint is off."""
    port = environ.get("DTS_WATCHER_HTTP__PORT", DEFAULT_PORT).strip()
    if port == "0":
        return None
    host = environ.get("DTS_WATCHER_HTTP__HOST", "").strip()
    if host in _ANY:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = target(os.environ)
    if url is None:
        print("healthcheck: the HTTP endpoint is off (DTS_WATCHER_HTTP__PORT=0)")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - http(s) only
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"healthcheck: {url} did not answer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
