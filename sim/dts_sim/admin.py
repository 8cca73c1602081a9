"""`/_sim/...`: the simulator's admin API, for people and scripts (see docs/simulator.md).

No signature, loopback clients only, JSON in and out. Every route is a thin wrapper over
a public `Simulator` method, so a script over HTTP and a test in Python do the same thing.

Loopback is not enough against a browser: any web page may make the browser send a
"simple" request (a POST with a `text/plain` body, no preflight) to 127.0.0.1, and a
page served from a name that resolves to 127.0.0.1 (DNS rebinding) may even read the
answers. So, beside the peer's address:

- the `Host` header must name the loopback (`localhost`, `*.localhost`, a loopback
  address), or the request is refused (403): a rebound name is not;
- an `Origin` header, when sent, must be a loopback origin too (403);
- every request but GET must say `Content-Type: application/json` (415), which a page
  cannot send to another origin without a preflight the simulator never grants.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from dts_sim.api import Response
from dts_sim.jobs import ScenarioError, describe_validation_error
from dts_sim.render import json_bytes
from dts_sim.scenario import Fault

if TYPE_CHECKING:
    from dts_sim.server import Simulator

__all__ = ["handle_admin"]


def handle_admin(
    sim: Simulator,
    method: str,
    path: str,
    body: bytes,
    client: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Answer an admin request; `path` starts with /_sim, `client` is the peer's address,
    `headers` have lower-case names."""
    headers = headers or {}
    if not _loopback_address(client):
        return _answer(403, {"error": "the admin API only answers loopback clients"})
    if not _loopback_host(headers.get("host", "")):
        return _answer(403, {"error": "the admin API only answers requests for a loopback Host"})
    origin = headers.get("origin")
    if origin is not None and not _loopback_host(urlsplit(origin).netloc):
        return _answer(403, {"error": "the admin API does not answer other origins"})
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if method != "GET" and media != "application/json":
        return _answer(415, {"error": "send Content-Type: application/json"})
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


def _loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%")[0].strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_host(host: str) -> bool:
    """Whether a Host header (or an origin's netloc) names the loopback."""
    try:
        name = urlsplit(f"//{host.strip()}").hostname
    except ValueError:
        return False
    if not name:
        return False
    return name == "localhost" or name.endswith(".localhost") or _loopback_address(name)


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
    if route == "/tick" and method == "POST":
        n = data.get("n", 1) if isinstance(data, dict) else 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return _answer(400, {"error": "n must be a positive integer"})
        return _answer(200, {"ticks": sim.tick(n)})
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
