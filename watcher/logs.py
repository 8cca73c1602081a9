"""Logging: one JSON object per line (the default) or colourless console lines for people.

structlog renders our own events; the standard library's loggers (httpx, nats-py, anyio)
are routed through the same processor chain, so a log pipeline sees one format with the
same keys: `timestamp` (ISO 8601, UTC), `level`, `logger`, `event`, then context.

Nothing secret is ever passed to a logger: credentials are SecretStr and the client logs
request ids and codes, never headers or signed URLs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
]


_FIRST = ("timestamp", "level", "logger", "event")


def _stable_key_order(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Put the stable keys first so a line reads the same way every time."""
    ordered = {key: event.pop(key) for key in _FIRST if key in event}
    ordered.update(event)
    return ordered


def configure(
    level: str = "info",
    fmt: Literal["json", "console"] = "json",
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and route the standard library's logging through it. Idempotent."""
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)

    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _stable_key_order,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Chatty third-party loggers: their INFO lines are per-request noise.
    for name in ("httpx", "httpcore", "nats", "asyncio"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
