"""The DTS look-alike HTTP server: answers DescribeSynchronizationJobs the way DTS does.

Why a real server rather than a mocked transport: the watcher's client has to get the
details right that only show up on the wire: the ACS3-HMAC-SHA256 signature over the
exact query and headers, the error bodies and status codes DTS uses, throttling with
`x-acs-retry-after`, pages that shift while being read. The simulator checks requests
the way DTS does (same order, same codes) and answers from a scripted scenario
(`scenario.py`), so the tests, the demo and users testing their own consumers all talk
to something that behaves like the service.

Why the standard library's ThreadingHTTPServer in a daemon thread: it needs no event
loop, so the same object works from synchronous tests, from anyio/asyncio tests, from the
demo and from `dts-watcher simulate`, and it costs no dependency. `stop()` is careful to
leave nothing behind: it wakes any sleeping "slow" fault, stops the accept loop, shuts
down idle keep-alive connections and joins every handler thread.

Request checks, in order (each answered with DTS's HTTP status and Code):

    Authorization / x-acs-* headers missing    400 MissingParameter
    Authorization garbled or not signing them  400 IncompleteSignature
    unknown access key id                      404 InvalidAccessKeyId.NotFound
    STS key without its token (or vice versa)  400 InvalidSecurityToken.Malformed
    wrong signature or payload hash            400 SignatureDoesNotMatch
    x-acs-date unreadable                      400 InvalidTimeStamp.Format
    x-acs-date more than 15 minutes off        400 InvalidTimeStamp.Expired
    nonce already seen within 15 minutes       400 SignatureNonceUsed
    x-acs-action not DescribeSynchronizationJobs  400 InvalidAction.NotFound
    x-acs-version not 2020-01-01               400 InvalidVersion
    PageSize / PageNum / Tag.N.* invalid        400 InvalidParameter

Then injected faults (see `Fault`), then the page itself. `/_sim/...` is an admin API
for people and scripts (no signature, loopback clients only); see docs/simulator.md.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import signal
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
from pydantic import ValidationError

from watcher.dts.signing import (
    ALGORITHM,
    API_VERSION,
    acs_date,
    parse_authorization,
    signature,
    string_to_sign,
)
from watcher.simulator.scenario import (
    Fault,
    JobKey,
    JobSpec,
    Scenario,
    ScenarioError,
    ScenarioState,
    describe_validation_error,
    load_scenario,
    page_body,
)

__all__ = [
    "ACTION",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "RequestRecord",
    "Simulator",
    "serve",
]

log = logging.getLogger("watcher.simulator")

DEFAULT_ACCESS_KEY_ID = "sim-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "sim-access-key-secret"  # noqa: S105 - a public test credential
ACTION = "DescribeSynchronizationJobs"
DEFAULT_REGION = "cn-hangzhou"
PAGE_SIZES = (10, 20, 30)
DEFAULT_PAGE_SIZE = 30
TIME_WINDOW = timedelta(minutes=15)  # both for x-acs-date skew and nonce memory
_MAX_INT = 2**31 - 1
_REQUIRED_HEADERS = (
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)
_TAG_PARAM = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")


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


class _ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _ActiveFault:
    fault: Fault
    remaining: int  # -1: until cleared


@dataclass(slots=True)
class _Outcome:
    """What gets recorded about an API request while it is being answered."""

    region: str | None = None
    page: int | None = None
    page_size: int | None = None
    fault: str | None = None
    access_key_id: str | None = None
    delay: float = 0.0  # a slow fault: seconds to wait before sending the answer


# Stands in for the RequestId in cached page bodies (see Simulator._page_parts).
_REQUEST_ID_SLOT = "@@dts-simulator-request-id@@"


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


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
    ) -> None:
        """
        scenario: a Scenario, a built-in name or a file path; None for no jobs at all.
        credentials: access key id -> secret (default: DEFAULT_ACCESS_KEY_ID/SECRET).
        sts_credentials: STS access key id -> (secret, security token); requests with such
            a key must carry the token in `x-acs-security-token`.
        clock: returns the simulator's "now" (aware datetime) for x-acs-date checks.
        auto_advance: apply the next step every this many seconds (None: only manually).
        """
        if scenario is None:
            scenario = Scenario(name="empty")
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self._scenario = scenario
        self._host = host
        self._port = port
        self._credentials = dict(
            credentials
            if credentials is not None
            else {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}
        )
        self._sts = dict(sts_credentials or {})
        self._clock = clock or (lambda: datetime.now(UTC))
        if auto_advance is not None and auto_advance <= 0:
            raise ValueError("auto_advance must be a positive number of seconds, or None")
        self._auto_advance = auto_advance

        self._lock = threading.RLock()
        self._advanced = threading.Condition(self._lock)  # notified on every step change
        self._state = ScenarioState(scenario)
        self._faults: list[_ActiveFault] = []
        self._requests: list[RequestRecord] = []
        # Nonces seen in the last 15 minutes, and the order they expire in.
        self._nonces: dict[str, datetime] = {}
        self._nonce_order: collections.deque[tuple[datetime, str]] = collections.deque()
        # Page bodies, see _page_parts.
        self._selections: dict[Any, list[JobSpec]] = {}
        self._selection_of: ScenarioState | None = None
        self._selection_version = -1
        self._pages: dict[Any, tuple[int, tuple[dict[str, Any], ...], bytes, bytes]] = {}

        self._stopping = threading.Event()
        self._server: _Server | None = None
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
        server = _Server((self._host, self._port), self)
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

    @property
    def credentials(self) -> dict[str, str]:
        """Accepted access key id -> secret (plain keys, not STS ones)."""
        return dict(self._credentials)

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
                self._faults.append(_ActiveFault(fault, fault.count))
            self._advanced.notify_all()
            return self._state.step

    def wait_for_step(self, step: int, timeout: float | None = None) -> bool:
        """Block until `step` has been reached (auto-advance); False on timeout."""
        with self._advanced:
            return self._advanced.wait_for(lambda: self._state.step >= step, timeout)

    def reset(self) -> None:
        """Back to step 0: the scenario's initial jobs, no faults (requests are kept)."""
        with self._lock:
            self._state = ScenarioState(self._scenario)
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
            return self._state.add_job(job)

    def remove_job(self, key: JobKey | str) -> JobSpec:
        with self._lock:
            return self._state.remove_job(key)

    def state(self) -> dict[str, Any]:
        """What `GET /_sim/state` shows: step, note, faults and the jobs per region."""
        with self._lock:
            summary = self._state.summary()
            summary["faults"] = self._fault_list()
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
            self._faults.append(_ActiveFault(fault, fault.count))
        return fault

    def clear_faults(self) -> int:
        """Remove every pending fault; returns how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return [active.fault for active in self._faults]

    def _fault_list(self) -> list[dict[str, Any]]:
        return [
            {
                **active.fault.model_dump(mode="json", exclude_defaults=True),
                "remaining": active.remaining,
            }
            for active in self._faults
        ]

    def _take_fault(self, region: str, page: int) -> Fault | None:
        with self._lock:
            for active in self._faults:
                if active.fault.matches(region, page):
                    if active.remaining > 0:
                        active.remaining -= 1
                        if active.remaining == 0:
                            self._faults.remove(active)
                    return active.fault
        return None

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
    ) -> _Response:
        parts = urlsplit(target)
        if parts.path == "/_sim" or parts.path.startswith("/_sim/"):
            return self._handle_admin(method, parts.path, body, client)
        return self._handle_api(method, parts.path, parts.query, headers, body)

    def _handle_api(
        self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        arrived = time.monotonic()
        request_id = _request_id()
        outcome = _Outcome()
        host_id = headers.get("host", "dts.aliyuncs.com")
        try:
            response = self._answer(method, path, raw_query, headers, body, request_id, outcome)
            code = "Success"
        except _ApiError as err:
            code = err.code
            response = _Response(
                status=err.status,
                body=_json(
                    {
                        "RequestId": request_id,
                        "HostId": host_id,
                        "Code": err.code,
                        "Message": err.message,
                        "Recommend": (
                            f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Dts"
                        ),
                    }
                ),
                headers=err.headers,
            )
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
    ) -> _Response:
        if method not in ("GET", "POST"):
            raise _ApiError(405, "UnsupportedHTTPMethod", f"HTTP method {method} is not supported.")
        if path != "/":
            raise _ApiError(404, "InvalidApi.NotFound", f"Specified path {path} is not found.")
        query_params = dict(parse_qsl(raw_query, keep_blank_values=True))
        outcome.access_key_id = self._authenticate(method, path, query_params, headers, body)

        params = dict(query_params)
        content_type = headers.get("content-type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

        if headers["x-acs-action"] != ACTION:
            raise _ApiError(
                400,
                "InvalidAction.NotFound",
                f"Specified api {headers['x-acs-action']} is not found, please check your url"
                " and method.",
            )
        if headers["x-acs-version"] != API_VERSION:
            raise _ApiError(
                400,
                "InvalidVersion",
                f"Specified parameter Version {headers['x-acs-version']} is not valid.",
            )
        region = params.get("RegionId") or DEFAULT_REGION
        outcome.region = region
        page_size = _page_size(params.get("PageSize"))
        page = _page_num(params.get("PageNum"))
        outcome.page, outcome.page_size = page, page_size
        tags = _tags(params)

        fault = self._take_fault(region, page)
        if fault is not None:
            outcome.fault = fault.kind
            early = self._apply_fault(fault, region)
            if early is not None:
                return early
            if fault.kind == "slow":
                outcome.delay = fault.seconds

        filters = (
            region,
            params.get("SynchronizationJobName") or None,
            tuple(tags),
            params.get("ResourceGroupId") or None,
        )
        with self._lock:
            head, tail = self._page_parts(filters, page, page_size)
        return _Response(200, head + request_id.encode() + tail)

    def _page_parts(
        self,
        filters: tuple[str, str | None, tuple[tuple[str, str | None], ...], str | None],
        page: int,
        page_size: int,
    ) -> tuple[bytes, bytes]:
        """A page's body, split where its RequestId goes. Caller holds the lock.

        Serving 10,000 jobs every few seconds (the benchmarks) means the same pages over
        and over: the selection is cached per version of the jobs, and each page's bytes
        for as long as the very same job specs (immutable) are on it. A change to one job
        re-renders only the page that shows it.
        """
        state = self._state
        if self._selection_of is not state or self._selection_version != state.version:
            self._selections.clear()
            self._selection_of, self._selection_version = state, state.version
        selected = self._selections.get(filters)
        if selected is None:
            region, name, tags, resource_group = filters
            selected = state.select(region, name=name, tags=tags, resource_group=resource_group)
            self._selections[filters] = selected
        start = (page - 1) * page_size
        # `render` answers from its own cache with the same dict for as long as a job is
        # unchanged, so the identity of those dicts says whether the page is still valid.
        jobs = selected[start : start + page_size]
        rendered = tuple(state.render(job) for job in jobs)
        key = (filters, page, page_size)
        cached = self._pages.get(key)
        if (
            cached is not None
            and cached[0] == len(selected)
            and len(cached[1]) == len(rendered)
            and all(a is b for a, b in zip(cached[1], rendered, strict=True))
        ):
            return cached[2], cached[3]
        payload = page_body(
            jobs,
            total=len(selected),
            page_number=page,
            request_id=_REQUEST_ID_SLOT,
            quirks=self._scenario.quirks,
            render=state.render,
        )
        # RequestId comes before the jobs in the body, so the first occurrence is the slot.
        head, _, tail = _json(payload).partition(_REQUEST_ID_SLOT.encode())
        self._pages[key] = (len(selected), rendered, head, tail)
        return head, tail

    def _authenticate(
        self,
        method: str,
        path: str,
        query_params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> str:
        """The checks DTS makes before looking at the action; returns the access key id."""
        auth = headers.get("authorization")
        if not auth:
            raise _ApiError(
                400,
                "MissingParameter",
                'The input parameter "Authorization" that is mandatory for processing this'
                " request is not supplied.",
            )
        for name in _REQUIRED_HEADERS:
            if not headers.get(name):
                raise _ApiError(
                    400,
                    "MissingParameter",
                    f'The input parameter "{name}" that is mandatory for processing this'
                    " request is not supplied.",
                )
        parsed = parse_authorization(auth)
        if parsed is None or parsed["algorithm"] != ALGORITHM:
            raise _ApiError(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards: expected"
                f" '{ALGORITHM} Credential=...,SignedHeaders=...,Signature=...'.",
            )
        signed = [n.strip().lower() for n in parsed["SignedHeaders"].split(";") if n.strip()]
        must_sign = {"host"} | {name for name in headers if name.startswith("x-acs-")}
        unsigned = sorted(must_sign - set(signed))
        if unsigned:
            raise _ApiError(
                400,
                "IncompleteSignature",
                f"The request signature does not cover the header(s) {', '.join(unsigned)}.",
            )

        key_id = parsed["Credential"]
        token_sent = headers.get("x-acs-security-token")
        if key_id in self._credentials:
            secret, token = self._credentials[key_id], None
        elif key_id in self._sts:
            secret, token = self._sts[key_id]
        else:
            raise _ApiError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        if token is not None and not (
            token_sent and hmac.compare_digest(token_sent.encode(), token.encode())
        ):
            raise _ApiError(
                400,
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed or does not belong to this access key.",
            )
        if token is None and token_sent:
            raise _ApiError(
                400,
                "InvalidSecurityToken.Malformed",
                "A SecurityToken was sent with an access key that is not an STS key.",
            )

        claimed = headers["x-acs-content-sha256"]
        to_sign, _ = string_to_sign(
            method,
            path,
            query_params,
            headers,
            payload_sha256=claimed,
            signed_header_names=signed,
        )
        expected = signature(secret, to_sign)
        if not hmac.compare_digest(expected, parsed["Signature"].strip().lower()):
            raise _ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation. server string to sign"
                f" is:{to_sign}",
            )
        if hashlib.sha256(body).hexdigest() != claimed.lower():
            raise _ApiError(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the request body.",
            )

        sent_at = _parse_acs_date(headers["x-acs-date"])
        now = self._clock()
        if abs(now - sent_at) > TIME_WINDOW:
            raise _ApiError(
                400,
                "InvalidTimeStamp.Expired",
                f"Specified time stamp or date value is expired: {headers['x-acs-date']} is more"
                f" than 15 minutes away from the server time {acs_date(now)}.",
            )
        nonce = headers["x-acs-signature-nonce"]
        with self._lock:
            horizon = now - TIME_WINDOW
            order = self._nonce_order
            while order and order[0][0] < horizon:  # forget the expired, oldest first
                seen_at, old = order.popleft()
                if self._nonces.get(old) == seen_at:
                    del self._nonces[old]
            seen = self._nonces.get(nonce)
            if seen is not None and seen >= horizon:
                raise _ApiError(
                    400,
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                )
            self._nonces[nonce] = now
            order.append((now, nonce))
        return key_id

    def _apply_fault(self, fault: Fault, region: str) -> _Response | None:
        """The response a fault replaces the page with, or None to answer normally."""
        kind = fault.kind
        if kind == "throttle":
            raise _ApiError(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
                headers={"x-acs-retry-after": str(fault.retry_after_ms)},
            )
        if kind == "unavailable":
            raise _ApiError(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        if kind == "internal":
            raise _ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        if kind == "expired_token":
            raise _ApiError(
                403, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."
            )
        if kind == "forbidden":
            raise _ApiError(
                403,
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource, or this API does not"
                " support RAM.",
            )
        if kind == "malformed":
            if fault.variant == "html":
                page = (
                    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                    "<body><h1>502 Bad Gateway</h1><p>Tengine</p></body></html>"
                )
                return _Response(200, page.encode(), content_type="text/html;charset=utf-8")
            if fault.variant == "array":
                return _Response(200, _json([{"SynchronizationJobId": "dtsnotapage"}]))
            return _Response(200, b'{"TotalRecordCount": 3, "SynchronizationInstances": [{"Synchr')
        if kind == "slow":
            return None  # answered normally, after `seconds` (see _handle_api)
        if kind == "drift":
            with self._lock:
                self._state.drift(region, fault.action)
            return None
        raise AssertionError(f"unhandled fault kind {kind}")  # pragma: no cover

    # -- admin API ---------------------------------------------------------------------

    def _handle_admin(self, method: str, path: str, body: bytes, client: str) -> _Response:
        try:
            loopback = ipaddress.ip_address(client.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _admin(403, {"error": "the admin API only answers loopback clients"})
        try:
            data = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            return _admin(400, {"error": "request body is not JSON"})
        route = path.rstrip("/").removeprefix("/_sim")
        try:
            return self._route_admin(method, route, data)
        except ScenarioError as exc:
            return _admin(400, {"error": str(exc)})
        except ValidationError as exc:
            return _admin(400, {"error": describe_validation_error(exc)})

    def _route_admin(self, method: str, route: str, data: Any) -> _Response:
        if route == "/advance" and method == "POST":
            n = data.get("n", 1) if isinstance(data, dict) else 1
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                return _admin(400, {"error": "n must be a positive integer"})
            step = self.advance(n)
            return _admin(200, {"step": step, "steps": self.total_steps, "note": self.note})
        if route == "/reset" and method == "POST":
            self.reset()
            return _admin(200, {"step": self.step})
        if route == "/faults":
            if method == "GET":
                with self._lock:
                    return _admin(200, {"faults": self._fault_list()})
            if method == "POST":
                items = data if isinstance(data, list) else [data]
                if not items or not all(isinstance(item, dict) for item in items):
                    return _admin(400, {"error": "send a fault object or a list of them"})
                for item in items:
                    Fault.model_validate(item)  # all or nothing
                for item in items:
                    self.inject(item)
                with self._lock:
                    return _admin(201, {"faults": self._fault_list()})
            if method == "DELETE":
                return _admin(200, {"cleared": self.clear_faults()})
        if route == "/state" and method == "GET":
            return _admin(200, self.state())
        if route == "/requests":
            if method == "GET":
                return _admin(200, {"requests": [asdict(r) for r in self.requests]})
            if method == "DELETE":
                self.clear_requests()
                return _admin(200, {"requests": []})
        if route == "/jobs" and method == "POST":
            if not isinstance(data, dict):
                return _admin(400, {"error": "send a job object"})
            job = self.add_job(data)
            return _admin(201, job.model_dump(mode="json", by_alias=True, exclude_none=True))
        if route.startswith("/jobs/"):
            key = route.removeprefix("/jobs/")
            if method == "PATCH":
                if not isinstance(data, dict):
                    return _admin(400, {"error": "send an object of fields to change"})
                job = self.set_job(key, **data)
                return _admin(200, job.model_dump(mode="json", by_alias=True, exclude_none=True))
            if method == "DELETE":
                self.remove_job(key)
                return _admin(200, {"removed": key})
        return _admin(404, {"error": f"no admin route {method} /_sim{route}"})

    # -- auto-advance ------------------------------------------------------------------

    def _auto_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            if self.step >= self.total_steps:
                return
            step = self.advance()
            log.info("simulator advanced to step %d/%d %s", step, self.total_steps, self.note)


def _admin(status: int, data: Any) -> _Response:
    return _Response(status, _json(data))


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise _ApiError(
            400,
            "InvalidParameter",
            f"The parameter PageSize {raw!r} is invalid; valid values are 10, 20 and 30.",
        )
    return int(raw)


def _page_num(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_INT:
        raise _ApiError(
            400,
            "InvalidParameter",
            f"The parameter PageNum {raw!r} is invalid; it must be a positive integer.",
        )
    return int(raw)


def _tags(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Tag.N.Key / Tag.N.Value pairs; a value that is not sent matches any value."""
    keys: dict[int, str] = {}
    values: dict[int, str] = {}
    for name, value in params.items():
        match = _TAG_PARAM.match(name)
        if not match:
            continue
        n = int(match.group(1))
        if not 1 <= n <= 20:
            raise _ApiError(400, "InvalidParameter", f"The parameter {name} is invalid: N is 1-20.")
        (keys if match.group(2) == "Key" else values)[n] = value
    for n in values:
        if n not in keys:
            raise _ApiError(400, "InvalidParameter", f"Tag.{n}.Value was sent without Tag.{n}.Key.")
    for n, key in keys.items():
        if key == "":
            raise _ApiError(400, "InvalidParameter", f"Tag.{n}.Key cannot be an empty string.")
    return [(keys[n], values.get(n)) for n in sorted(keys)]


def _parse_acs_date(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _ApiError(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp {raw!r} is not in the format yyyy-MM-ddTHH:mm:ssZ.",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------
# The HTTP plumbing
# --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers open connections, so stop() can close them.

    Handler threads are daemon threads (a forgotten simulator never blocks interpreter
    exit), and `block_on_close` keeps them tracked so `server_close()` joins them.
    """

    block_on_close = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds
        # where reverse DNS is slow; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are normal (timeouts, stop()); no tracebacks.
        log.debug("simulator connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as DTS's gateway does
    server_version = "dts-simulator"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would add ~40 ms to every response.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        simulator = cast(_Server, self.server).simulator
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or self.headers.get("Transfer-Encoding"):
            self.send_error(411, "a Content-Length is required")
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = simulator._handle(
                self.command, self.path, headers, body, self.client_address[0]
            )
        except Exception:  # a bug in the simulator: say so like DTS would, keep serving
            log.exception("simulator failed to answer %s %s", self.command, self.path)
            response = _Response(
                500,
                _json(
                    {
                        "Code": "InternalError",
                        "Message": "simulator error",
                        "RequestId": _request_id(),
                    }
                ),
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator %s " + format, self.address_string(), *args)


# --------------------------------------------------------------------------------------
# Standalone runner (`dts-watcher simulate`)
# --------------------------------------------------------------------------------------


def serve(
    scenario: str,
    host: str = "127.0.0.1",
    port: int = 0,
    auto_advance: float | None = None,
) -> int:
    """Run a simulator in the foreground until SIGINT/SIGTERM; returns the exit code 0.

    scenario: a built-in name or a file path. auto_advance: seconds between steps; None
    uses the scenario's `step_seconds`, 0 (or less) means steps only advance through
    `POST /_sim/advance`.
    """
    loaded = load_scenario(scenario)
    interval = loaded.step_seconds if auto_advance is None else auto_advance
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Outside the main thread this fails; Ctrl+C then arrives as KeyboardInterrupt.
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        with Simulator(
            loaded, host=host, port=port, auto_advance=interval if interval > 0 else None
        ) as sim:
            regions = json.dumps(sim.regions(), separators=(",", ":"))
            advancing = (
                f"every {interval:g} s" if interval > 0 else f"on POST {sim.url}/_sim/advance"
            )
            lines = [
                f"DTS simulator serving scenario {loaded.name!r} at {sim.url}",
                f"  {loaded.description}" if loaded.description else None,
                f"  regions: {', '.join(sim.regions()) or '(none)'}; {sim.total_steps} steps,"
                f" advancing {advancing}",
                f"  access key id: {DEFAULT_ACCESS_KEY_ID}",
                f"  access key secret: {DEFAULT_ACCESS_KEY_SECRET}",
                f"  admin API: {sim.url}/_sim/state (see docs/simulator.md)",
                "",
                "Point a watcher at it with:",
                f"  export DTS_WATCHER_DTS__ENDPOINT={sim.url}",
                f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
                f"  export ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEFAULT_ACCESS_KEY_SECRET}",
                f"  export DTS_WATCHER_DTS__REGIONS='{regions}'",
                "",
                "Press Ctrl+C to stop.",
            ]
            print("\n".join(line for line in lines if line is not None), flush=True)
            try:
                while not done.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        print("DTS simulator stopped.", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
