"""A DTS look-alike: a local HTTP server that answers DescribeSynchronizationJobs.

It checks ACS3-HMAC-SHA256 signatures the way DTS does, serves the jobs of a scripted
scenario step by step, and injects faults (throttling, outages, malformed bodies, pages
that shift mid-listing) on demand. The project's tests and demo use it, and so can anyone
testing a consumer of dts-watcher's events without a DTS account. The scenario format and
the admin API are documented in docs/simulator.md.

    from dts_sim import Simulator, Fault

    with Simulator("demo") as sim:
        ...  # point a client at sim.url with DEFAULT_ACCESS_KEY_ID / _SECRET
        sim.advance()
        sim.inject(Fault(kind="throttle", count=2))

This package also holds what the demo needs besides: `NatsServer` runs the real
nats-server on loopback, and `run_demo` plays a scenario through a watcher. It is the
`dts-watcher-sim` distribution (the `sim` extra of dts-watcher); it may import the
watcher, never the reverse. The modules, by concern: `scenario` (the file format) and
`jobs` (a job's description), `timeline` (the jobs as steps change them), `render` (the
JSON DTS answers with), `auth` (signatures, dates, nonces), `api` (the call's parameters
and errors), `faults`, `admin` (the `/_sim` API), `server` (the Simulator), `httpd` (HTTP
plumbing), `runner` (`dts-watcher simulate`), `natsserver` and `demo`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dts_sim.api import ACTION
from dts_sim.auth import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from dts_sim.jobs import (
    QUIRKS,
    EndpointSpec,
    JobKey,
    JobSpec,
    ObjectSpec,
    PrecheckItemSpec,
    PrecheckSpec,
    Quirk,
    ScenarioError,
    StageSpec,
    parse_job_key,
)
from dts_sim.natsserver import NatsServer, NatsServerError, find_binary, free_port
from dts_sim.render import job_to_api, page_body
from dts_sim.runner import serve
from dts_sim.scenario import (
    Fault,
    FaultKind,
    GenerateSpec,
    Scenario,
    StepSpec,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
)
from dts_sim.server import RequestRecord, Simulator, SimulatorBindError
from dts_sim.timeline import ScenarioState

if TYPE_CHECKING:
    from dts_sim.demo import demo_settings, run_demo

__all__ = [
    "ACTION",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "QUIRKS",
    "EndpointSpec",
    "Fault",
    "FaultKind",
    "GenerateSpec",
    "JobKey",
    "JobSpec",
    "NatsServer",
    "NatsServerError",
    "ObjectSpec",
    "PrecheckItemSpec",
    "PrecheckSpec",
    "Quirk",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "ScenarioState",
    "Simulator",
    "SimulatorBindError",
    "StageSpec",
    "StepSpec",
    "builtin_scenarios",
    "demo_settings",
    "find_binary",
    "free_port",
    "job_to_api",
    "load_scenario",
    "page_body",
    "parse_job_key",
    "parse_scenario",
    "run_demo",
    "serve",
]

_DEMO_NAMES = frozenset({"run_demo", "demo_settings"})


def __getattr__(name: str) -> Any:
    # The demo pulls in the whole watcher service and the NATS client; the simulator
    # alone (tests, benchmarks, `simulate`) should not pay for that, so it loads on use.
    if name in _DEMO_NAMES:
        from dts_sim import demo

        return getattr(demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
