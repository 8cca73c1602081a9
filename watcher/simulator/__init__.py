"""A DTS look-alike: a local HTTP server that answers DescribeSynchronizationJobs.

It checks ACS3-HMAC-SHA256 signatures the way DTS does, serves the jobs of a scripted
scenario step by step, and injects faults (throttling, outages, malformed bodies, pages
that shift mid-listing) on demand. The project's tests and demo use it, and so can anyone
testing a consumer of dts-watcher's events without a DTS account. The scenario format and
the admin API are documented in docs/simulator.md.

    from watcher.simulator import Simulator, Fault

    with Simulator("demo") as sim:
        ...  # point a client at sim.url with DEFAULT_ACCESS_KEY_ID / _SECRET
        sim.advance()
        sim.inject(Fault(kind="throttle", count=2))
"""

from watcher.simulator.scenario import (
    QUIRKS,
    EndpointSpec,
    Fault,
    FaultKind,
    GenerateSpec,
    JobKey,
    JobSpec,
    ObjectSpec,
    PrecheckItemSpec,
    PrecheckSpec,
    Quirk,
    Scenario,
    ScenarioError,
    ScenarioState,
    StageSpec,
    StepSpec,
    builtin_scenarios,
    job_to_api,
    load_scenario,
    page_body,
    parse_job_key,
    parse_scenario,
)
from watcher.simulator.server import (
    ACTION,
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    RequestRecord,
    Simulator,
    serve,
)

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
    "ObjectSpec",
    "PrecheckItemSpec",
    "PrecheckSpec",
    "Quirk",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "ScenarioState",
    "Simulator",
    "StageSpec",
    "StepSpec",
    "builtin_scenarios",
    "job_to_api",
    "load_scenario",
    "page_body",
    "parse_job_key",
    "parse_scenario",
    "serve",
]
