"""Injected faults: the pending ones, and what each kind answers instead of the page.

Faults only hit requests that passed authentication and parameter checks, so a test that
injects one knows which request it hits. `Fault` itself (what a scenario file or the
admin API describes) is in `scenario.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dts_sim.api import ApiError, Response
from dts_sim.render import json_bytes
from dts_sim.scenario import Fault

__all__ = ["FaultQueue", "fault_answer"]


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int  # -1: until cleared


class FaultQueue:
    """Faults waiting for matching requests, oldest first. Not thread-safe: callers
    serialize (the simulator holds its lock)."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    def add(self, fault: Fault) -> None:
        self._pending.append(_Pending(fault, fault.count))

    def clear(self) -> int:
        """Forget every pending fault; returns how many there were."""
        count = len(self._pending)
        self._pending.clear()
        return count

    def faults(self) -> list[Fault]:
        return [pending.fault for pending in self._pending]

    def summary(self) -> list[dict[str, Any]]:
        """JSON-ready, for the admin API: each fault's non-default fields and `remaining`."""
        return [
            {
                **pending.fault.model_dump(mode="json", exclude_defaults=True),
                "remaining": pending.remaining,
            }
            for pending in self._pending
        ]

    def take(
        self, region: str, page: int, account: str = "default", job_type: str = "sync"
    ) -> Fault | None:
        """The first fault matching this request, counted as used; None if none does."""
        for pending in self._pending:
            if pending.fault.matches(region, page, account, job_type):
                if pending.remaining > 0:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._pending.remove(pending)
                return pending.fault
        return None


_BAD_GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>Tengine</p></body></html>"
)


def fault_answer(fault: Fault) -> Response | None:
    """What a fault answers instead of the page (an error is raised as ApiError), or None
    when the page is answered after all: `slow` (later) and `drift` (the caller changes
    the jobs first)."""
    kind = fault.kind
    if kind == "throttle":
        raise ApiError(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
            headers={"x-acs-retry-after": str(fault.retry_after_ms)},
        )
    if kind == "unavailable":
        raise ApiError(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )
    if kind == "internal":
        raise ApiError(
            500, "InternalError", "The request processing has failed due to some unknown error."
        )
    if kind == "expired_token":
        raise ApiError(403, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
    if kind == "forbidden":
        raise ApiError(
            403,
            "Forbidden.RAM",
            "User not authorized to operate on the specified resource, or this API does not"
            " support RAM.",
        )
    if kind == "malformed":
        if fault.variant == "html":
            return Response(200, _BAD_GATEWAY_PAGE.encode(), content_type="text/html;charset=utf-8")
        if fault.variant == "array":
            return Response(200, json_bytes([{"SynchronizationJobId": "dtsnotapage"}]))
        return Response(200, b'{"TotalRecordCount": 3, "SynchronizationInstances": [{"Synchr')
    if kind in ("slow", "drift"):
        return None
    raise AssertionError(f"unhandled fault kind {kind}")  # pragma: no cover
