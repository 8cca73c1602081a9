"""The DTS look-alike server: answers DescribeSynchronizationJobs the way DTS does.

Why a real server rather than a mocked transport: the watcher's client has to get the
details right that only show up on the wire: the ACS3-HMAC-SHA256 signature over the
exact query and headers, the error bodies and status codes DTS uses, throttling with
`x-acs-retry-after`, pages that shift while being read. The simulator checks requests
the way DTS does (same order, same codes) and answers from a scripted scenario, so the
tests, the demo and users testing their own consumers all talk to something that behaves
like the service.

A request goes through, in order: authentication (`auth.py`), the action, version and
parameters (`api.py`), injected faults (`faults.py`), then the page itself (`render.py`,
or the `pages` given to the Simulator). `/_sim/...` is the admin API (`admin.py`). The
HTTP plumbing is in `httpd.py`. `stop()` is careful to leave nothing behind: it wakes any
sleeping "slow" fault, stops the accept loop, shuts down idle keep-alive connections and
joins every handler thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
from pydantic import ValidationError

from dts_sim import api
from dts_sim.accounts import account_keys, role_arn
from dts_sim.admin import handle_admin
from dts_sim.api import ApiError, Response
from dts_sim.auth import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Authenticator
from dts_sim.faults import FaultQueue, fault_answer
from dts_sim.httpd import HttpServer
from dts_sim.jobs import JobKey, JobSpec, ScenarioError, describe_validation_error
from dts_sim.render import PageSource, render_page
from dts_sim.scenario import Fault, Scenario, load_scenario
from dts_sim.sts import STS_ACTION, STS_VERSION, assume_role
from dts_sim.timeline import ScenarioState
from watcher.errors import ConfigError

__all__ = ["RequestRecord", "Simulator", "SimulatorBindError"]

log = logging.getLogger("dts_sim")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request as the simulator saw it (admin requests are not recorded).

    Recorded as soon as its answer is decided, before a slow fault's wait.
    """

    at: float  # time.monotonic() when it arrived
    method: str
    region: str | None  # RegionId as resolved (None if the request failed before that)
    page: int | None
    page_size: int | None
    status: int  # HTTP status sent
    code: str  # "Success" or the error Code sent
    fault: str | None = None  # the kind of injected fault that hit it, if any
    access_key_id: str | None = None
    action: str | None = None  # x-acs-action, once authenticated
    account: str | None = None  # whose key signed it
    job_type: str | None = None  # the listing DescribeDtsJobs was asked for


@dataclass(slots=True)
class _Outcome:
    """What gets recorded about an API request while it is being answered."""

    region: str | None = None
    page: int | None = None
    page_size: int | None = None
    fault: str | None = None
    access_key_id: str | None = None
    action: str | None = None
    account: str | None = None
    job_type: str | None = None
    delay: float = 0.0  # a slow fault: seconds to wait before sending the answer


class SimulatorBindError(ConfigError):
    """The simulator cannot listen where it was told to (the CLI: one line, exit 2)."""


class Simulator:
    """A DTS look-alike on 127.0.0.1, serving a scenario's jobs and injected faults.

    Use it as a context manager (`with Simulator("demo") as sim:` or `async with`), or
    call `start()` and `stop()`. `url` is valid once started. Everything here is
    thread-safe; the HTTP handlers run in their own threads.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        sts_credentials: Mapping[str, tuple[str, str]] | None = None,
        clock: Callable[[], datetime] | None = None,
        auto_advance: float | None = None,
        pages: PageSource | None = None,
        max_page_size: int = 100,
    ) -> None:
        """
        scenario: a Scenario, a built-in name or a file path; None for no jobs at all.
        credentials: access key id -> secret (default: DEFAULT_ACCESS_KEY_ID/SECRET).
        sts_credentials: STS access key id -> (secret, security token); requests with such
            a key must carry the token in `x-acs-security-token`.
        clock: returns the simulator's "now" (aware datetime) for x-acs-date checks, and
            what stalled jobs and `expires_in` are timed by.
        auto_advance: apply the next step every this many seconds (None: only manually).
        pages: produces a page's body (default: `render_page`, which renders afresh each
            time); called with the simulator's lock held. See `PageSource`.
        max_page_size: the largest PageSize DescribeDtsJobs accepts (Alibaba documents 30
            and 100 in different places).
        """
        if scenario is None:
            scenario = Scenario(name="empty")
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self._scenario = scenario
        self._host = host
        self._port = port
        self._clock = clock or (lambda: datetime.now(UTC))
        self._auth = Authenticator(
            credentials
            if credentials is not None
            else {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET},
            sts_credentials or {},
            self._clock,
        )
        self._max_page_size = max_page_size
        self._roles: dict[str, str] = {}  # role ARN -> account
        self._denied: set[str] = set()  # role ARNs AssumeRole refuses (NoPermission)
        for account in ["default", *scenario.all_accounts()]:
            self._add_account(account)
        if auto_advance is not None and auto_advance <= 0:
            raise ValueError("auto_advance must be a positive number of seconds, or None")
        self._auto_advance = auto_advance
        self._pages: PageSource = pages or render_page

        self._lock = threading.RLock()
        self._advanced = threading.Condition(self._lock)  # notified on every step change
        self._state = ScenarioState(scenario, self._clock)
        self._faults = FaultQueue()
        self._requests: list[RequestRecord] = []

        self._stopping = threading.Event()
        self._server: HttpServer | None = None
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:  # no credentials here
        where = self.url if self._server is not None else "not started"
        return f"<Simulator {self._scenario.name!r} step {self.step}/{self.total_steps} {where}>"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind the port and start serving in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        try:
            server = HttpServer((self._host, self._port), self._handle)
        except OSError as exc:  # the port is taken, the address is not ours
            raise SimulatorBindError(
                f"the simulator cannot listen on {self._host}:{self._port}: "
                f"{exc.strerror or exc} (choose another --port, or 0 for a free one)"
            ) from None
        self._server = server
        serving = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how quickly stop() is noticed
            name=f"dts-simulator:{server.server_address[1]}",
            daemon=True,
        )
        serving.start()
        self._threads = [serving]
        if self._auto_advance is not None:
            ticker = threading.Thread(
                target=self._auto_loop,
                args=(self._auto_advance,),
                name="dts-simulator-auto-advance",
                daemon=True,
            )
            ticker.start()
            self._threads.append(ticker)
        log.debug("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release every thread and socket. Safe to call twice."""
        server = self._server
        if server is None:
            return
        self._stopping.set()  # wakes slow faults and the auto-advance ticker
        with self._advanced:
            self._advanced.notify_all()  # and a ticker waiting at the end of the timeline
        server.shutdown()  # the accept loop ends
        server.close_connections()  # idle keep-alive readers see end of file
        server.server_close()  # listening socket closed, handler threads joined
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        return self.start()  # binding a socket and starting a thread does not block

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)  # joining threads may take a moment

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321" (an IPv6 host is bracketed)."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _add_account(self, account: str) -> None:
        if account in self._roles.values():
            return
        self._roles[role_arn(account)] = account
        if account != "default":
            self._auth.add_key(*account_keys(account), account)

    def accounts(self) -> dict[str, dict[str, str]]:
        """Each account's access key id, secret and role ARN (no STS keys)."""
        out = {}
        for arn, account in self._roles.items():
            key_id, secret = account_keys(account)
            out[account] = {"access_key_id": key_id, "access_key_secret": secret, "role_arn": arn}
        return out

    def deny_role(self, account_or_arn: str) -> str:
        """Make AssumeRole refuse a role (403 NoPermission), as a trust policy that does
        not name the watcher would; returns the ARN."""
        arn = account_or_arn if account_or_arn.startswith("acs:") else role_arn(account_or_arn)
        with self._lock:
            self._denied.add(arn)
        return arn

    @property
    def credentials(self) -> dict[str, str]:
        """Accepted access key id -> secret (plain keys, not STS ones)."""
        return dict(self._auth.credentials)

    # -- scenario and timeline ---------------------------------------------------------

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @property
    def step(self) -> int:
        """How many timeline steps have been applied (0 = the initial jobs)."""
        with self._lock:
            return self._state.step

    @property
    def total_steps(self) -> int:
        return len(self._scenario.steps)

    @property
    def note(self) -> str:
        """The `note` of the last applied step ("" before the first)."""
        with self._lock:
            return self._state.note

    def regions(self) -> list[str]:
        with self._lock:
            return self._state.regions()

    def advance(self, n: int = 1) -> int:
        """Apply the next `n` steps (past the end: nothing happens); returns `step`."""
        with self._lock:
            for fault in self._state.advance(n):
                self._faults.add(fault)
            self._advanced.notify_all()
            return self._state.step

    def tick(self, n: int = 1) -> int:
        """Move every job's delay and checkpoint, as between two polls of a real account
        (see `ScenarioState.tick`); returns how many ticks so far (a reset: 0)."""
        with self._lock:
            self._state.tick(n)
            return self._state.ticks

    def wait_for_step(self, step: int, timeout: float | None = None) -> bool:
        """Block until `step` has been reached (auto-advance); False on timeout."""
        with self._advanced:
            return self._advanced.wait_for(lambda: self._state.step >= step, timeout)

    def reset(self) -> None:
        """Back to step 0: the scenario's initial jobs, no faults (requests are kept)."""
        with self._lock:
            self._state = ScenarioState(self._scenario, self._clock)
            self._faults.clear()
            self._advanced.notify_all()

    def jobs(self, region: str | None = None) -> list[JobSpec]:
        """The jobs as they are now, in listing order."""
        with self._lock:
            return self._state.jobs(region)

    def job(self, key: JobKey | str) -> JobSpec | None:
        """A job by key: "id" (Forward) or "id/Reverse"."""
        with self._lock:
            return self._state.get(key)

    def set_job(self, key: JobKey | str, **changes: Any) -> JobSpec:
        """Change fields of a job now, as a step's `set` would ("" resets a field)."""
        with self._lock:
            return self._state.set_job(key, changes)

    def add_job(self, job: JobSpec | Mapping[str, Any]) -> JobSpec:
        with self._lock:
            added = self._state.add_job(job)
            self._add_account(added.account)
            return added

    def remove_job(self, key: JobKey | str) -> JobSpec:
        with self._lock:
            return self._state.remove_job(key)

    def state(self) -> dict[str, Any]:
        """What `GET /_sim/state` shows: step, note, faults and the jobs per region."""
        with self._lock:
            summary = self._state.summary()
            summary["faults"] = self._faults.summary()
            return summary

    # -- faults ------------------------------------------------------------------------

    def inject(self, fault: Fault | Mapping[str, Any]) -> Fault:
        """Add a fault; it hits the next `count` matching requests (-1: until cleared)."""
        if not isinstance(fault, Fault):
            try:
                fault = Fault.model_validate(dict(fault))
            except ValidationError as exc:
                raise ScenarioError(f"fault: {describe_validation_error(exc)}") from None
        with self._lock:
            self._faults.add(fault)
        return fault

    def clear_faults(self) -> int:
        """Remove every pending fault; returns how many there were."""
        with self._lock:
            return self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return self._faults.faults()

    def fault_summary(self) -> list[dict[str, Any]]:
        """The pending faults as `GET /_sim/faults` shows them (with `remaining`)."""
        with self._lock:
            return self._faults.summary()

    # -- requests ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- HTTP handling (called from handler threads) -----------------------------------

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, client: str
    ) -> Response:
        parts = urlsplit(target)
        if parts.path == "/_sim" or parts.path.startswith("/_sim/"):
            return handle_admin(self, method, parts.path, body, client, headers)
        return self._handle_api(method, parts.path, parts.query, headers, body)

    def _handle_api(
        self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        arrived = time.monotonic()
        request_id = api.new_request_id()
        outcome = _Outcome()
        try:
            response = self._answer(method, path, raw_query, headers, body, request_id, outcome)
            code = "Success"
        except ApiError as err:
            code = err.code
            response = api.error_response(err, request_id, headers.get("host", "dts.aliyuncs.com"))
        response.headers["x-acs-request-id"] = request_id
        record = RequestRecord(
            at=arrived,
            method=method,
            region=outcome.region,
            page=outcome.page,
            page_size=outcome.page_size,
            status=response.status,
            code=code,
            fault=outcome.fault,
            access_key_id=outcome.access_key_id,
            action=outcome.action,
            account=outcome.account,
            job_type=outcome.job_type,
        )
        with self._lock:
            self._requests.append(record)
        if outcome.delay:
            # Recorded first: a client that gives up on a slow answer still finds its
            # request in `requests` at once, not whenever the answer would have been sent.
            self._stopping.wait(outcome.delay)  # stop() cuts the wait short
        return response

    def _answer(
        self,
        method: str,
        path: str,
        raw_query: str,
        headers: dict[str, str],
        body: bytes,
        request_id: str,
        outcome: _Outcome,
    ) -> Response:
        if method not in ("GET", "POST"):
            raise ApiError(405, "UnsupportedHTTPMethod", f"HTTP method {method} is not supported.")
        if path != "/":
            raise ApiError(404, "InvalidApi.NotFound", f"Specified path {path} is not found.")
        query_params = dict(parse_qsl(raw_query, keep_blank_values=True))
        key_id = outcome.access_key_id = self._auth.check(method, path, query_params, headers, body)
        account = outcome.account = self._auth.account_of(key_id)
        params = api.request_params(query_params, headers, body)
        if headers["x-acs-action"] == STS_ACTION and headers["x-acs-version"] == STS_VERSION:
            outcome.action = STS_ACTION
            with self._lock:
                return assume_role(params, self._roles, self._denied, self._auth, self._clock())
        action = outcome.action = api.check_call(headers)
        region = params.get("RegionId") or api.DEFAULT_REGION
        outcome.region = region
        if action == api.DTS_JOBS_ACTION:
            page_size = api.dts_page_size(params.get("PageSize"), self._max_page_size)
            page = api.page_num(params.get("PageNumber"))
            filters = api.dts_filters_of(region, params, account)
            outcome.job_type = filters.job_type
        else:
            page_size = api.page_size(params.get("PageSize"))
            page = api.page_num(params.get("PageNum"))
            filters = api.filters_of(region, params, api.tag_filters(params), account)
        outcome.page, outcome.page_size = page, page_size

        fault = self._take_fault(region, page, account, filters.job_type)
        if fault is not None:
            outcome.fault = fault.kind
            early = fault_answer(fault)
            if early is not None:
                return early
            if fault.kind == "slow":
                outcome.delay = fault.seconds
            elif fault.kind == "drift":
                with self._lock:
                    self._state.drift(region, fault.action)
        with self._lock:
            body_bytes = self._pages(self._state, filters, page, page_size, request_id)
        return Response(200, body_bytes)

    def _take_fault(self, region: str, page: int, account: str, job_type: str) -> Fault | None:
        with self._lock:
            return self._faults.take(region, page, account, job_type)

    # -- auto-advance ------------------------------------------------------------------

    def _auto_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            with self._advanced:
                if self._state.step >= self.total_steps:
                    # The end: wait for a reset (back to step 0), or for stop().
                    self._advanced.wait_for(
                        lambda: self._stopping.is_set() or self._state.step < self.total_steps
                    )
                    continue
            step = self.advance()
            log.info("simulator advanced to step %d/%d %s", step, self.total_steps, self.note)
