"""How the service runs: polling, state, health, the HTTP endpoint, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from watcher.settings.common import Section


class PollSettings(Section):
    interval: float = Field(30.0, ge=1, description="seconds between cycle starts")
    jitter: float = Field(0.1, ge=0, le=0.5, description="fraction of the interval, random")
    emit: Literal["listing", "page"] = Field(
        "page",
        description="when job events go out: as each consistent page arrives (page: within "
        "one cycle even when a listing takes seconds; `removed` still waits for complete "
        "listings), or once the whole listing is read (listing)",
    )
    cycle_timeout: float = Field(
        600.0,
        gt=0,
        description="seconds a cycle may spend reading DTS (credentials included); a region "
        "not read completely by then is incomplete for that cycle",
    )
    gc_freeze: bool = Field(
        True,
        description="after each cycle, collect garbage and freeze what survived (gc.freeze) "
        "so full collections skip the long-lived baseline; process-wide (watcher/heap.py)",
    )


class StateSettings(Section):
    path: Path = Field(Path("var/dts-watcher.sqlite3"), description="file or folder")
    events_per_transaction: int = Field(
        1000,
        ge=1,
        description="a cycle's events are saved in transactions of about this many, each "
        "with the states of their jobs; publishing starts after the first",
    )

    @property
    def file(self) -> Path:
        return self.path / "dts-watcher.sqlite3" if self.path.is_dir() else self.path


class HealthSettings(Section):
    unavailable_after: int = Field(
        3, ge=1, description="incomplete cycles before a region is announced unavailable"
    )
    heartbeat_interval: float = Field(60.0, ge=0, description="seconds; 0 = no heartbeat")
    stale_after: float | None = Field(
        None,
        gt=0,
        description="seconds without a complete cycle after which /readyz says not ready "
        "(default: 10 poll intervals)",
    )


class HttpSettings(Section):
    """The health and metrics endpoint (/healthz, /readyz, /metrics); see watcher/http.py."""

    port: int = Field(0, ge=0, le=65535, description="TCP port; 0 = no HTTP endpoint")
    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
