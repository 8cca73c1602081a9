"""`/_sim/...`: the simulator's admin API, for people and scripts (see docs/simulator.md).

No signature, loopback clients only, JSON in and out. Every route is a thin wrapper over
a public `Simulator` method, so a script over HTTP and a test in Python do the same thing.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dts_sim.api import Response
from dts_sim.jobs import ScenarioError, describe_validation_error
from dts_sim.render import json_bytes
from dts_sim.scenario import Fault

if TYPE_CHECKING:
    from dts_sim.server import Simulator

__all__ = ["handle_admin"]


def handle_admin(sim: Simulator, method: str, path: str, body: bytes, client: str) -> Response:
    """Answer an admin request; `path` starts with /_sim, `client` is the peer's address."""
    try:
        loopback = ipaddress.ip_address(client.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return _answer(403, {"error": "the admin API only answers loopback clients"})
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return _answer(400, {"error": "request body is not JSON"})
    route = path.rstrip("/").removeprefix("/_sim")
    try:
        return _route(sim, method, route, data)
    except ScenarioError as exc:
        return _answer(400, {"error": str(exc)})
    except ValidationError as exc:
        return _answer(400, {"error": describe_validation_error(exc)})


def _answer(status: int, data: Any) -> Response:
    return Response(status, json_bytes(data))


def _route(sim: Simulator, method: str, route: str, data: Any) -> Response:
    answer: Response | None = None
    if route == "/advance" and method == "POST":
        n = data.get("n", 1) if isinstance(data, dict) else 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return _answer(400, {"error": "n must be a positive integer"})
        step = sim.advance(n)
        return _answer(200, {"step": step, "steps": sim.total_steps, "note": sim.note})
    if route == "/reset" and method == "POST":
        sim.reset()
        return _answer(200, {"step": sim.step})
    if route == "/faults":
        answer = _faults(sim, method, data)
    elif route == "/state" and method == "GET":
        answer = _answer(200, sim.state())
    elif route == "/requests":
        answer = _requests(sim, method)
    elif route == "/jobs" and method == "POST":
        if not isinstance(data, dict):
            return _answer(400, {"error": "send a job object"})
        job = sim.add_job(data)
        answer = _answer(201, job.model_dump(mode="json", by_alias=True, exclude_none=True))
    elif route.startswith("/jobs/"):
        answer = _job(sim, method, route.removeprefix("/jobs/"), data)
    return answer or _answer(404, {"error": f"no admin route {method} /_sim{route}"})


def _faults(sim: Simulator, method: str, data: Any) -> Response | None:
    if method == "GET":
        return _answer(200, {"faults": sim.fault_summary()})
    if method == "POST":
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(item, dict) for item in items):
            return _answer(400, {"error": "send a fault object or a list of them"})
        for item in items:
            Fault.model_validate(item)  # all or nothing
        for item in items:
            sim.inject(item)
        return _answer(201, {"faults": sim.fault_summary()})
    if method == "DELETE":
        return _answer(200, {"cleared": sim.clear_faults()})
    return None


def _requests(sim: Simulator, method: str) -> Response | None:
    if method == "GET":
        return _answer(200, {"requests": [asdict(r) for r in sim.requests]})
    if method == "DELETE":
        sim.clear_requests()
        return _answer(200, {"requests": []})
    return None


def _job(sim: Simulator, method: str, key: str, data: Any) -> Response | None:
    if method == "PATCH":
        if not isinstance(data, dict):
            return _answer(400, {"error": "send an object of fields to change"})
        job = sim.set_job(key, **data)
        return _answer(200, job.model_dump(mode="json", by_alias=True, exclude_none=True))
    if method == "DELETE":
        sim.remove_job(key)
        return _answer(200, {"removed": key})
    return None
