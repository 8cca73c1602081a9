"""`dts-watcher check-config --probe`: try the configuration for real, say what is wrong.

A configuration can be valid and still useless: a key id with a typo, a secret from
another key, a RAM user without the DTS permission, a role that cannot be assumed, a NATS
host that does not resolve, a certificate nobody trusts. The probe gets every account's
credentials (assuming its role, if it has one), makes one real call per listing of every
shard (an account's region; the configured API, one page, no retries) with them, and
connects to NATS (short timeout, no reconnect loop) and looks the stream up; then it
says, per check and in plain words, what it found, e.g.

    ok   DTS cn-hangzhou: credentials accepted, 12 jobs visible (https://dts...)
    FAIL DTS cn-shanghai: the key has no permission for dts:Describe... (Forbidden.RAM)
    FAIL NATS: host not found (DNS): nats://nats.internal:4222

Nothing is published and no consumer or stream is created. The translation of errors
into advice (`explain_dts`, `explain_network`) is pure and tested on its own.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import nats.errors
import nats.js.errors

from watcher import natsconn
from watcher.dts.apis import ShardSource
from watcher.dts.client import ACTION, DtsClient, DtsError, endpoint_host
from watcher.dts.credentials import CredentialsError, describe
from watcher.dts.credentials.accounts import account_providers
from watcher.dts.wiring import shard_sources
from watcher.errors import why
from watcher.settings import Settings
from watcher.settings.regions import unknown_region_warnings
from watcher.streamcheck import stream_problems

PROBE_PAGE_SIZE = 10


@dataclass(frozen=True)
class Verdict:
    check: str  # "DTS cn-hangzhou", "DTS credentials", "NATS"
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}: {self.message}"


async def probe(settings: Settings, config_file: str | None = None) -> list[Verdict]:
    """Every check, in a fixed order: credentials, each region, NATS."""
    results: dict[str, list[Verdict]] = {}

    async def dts() -> None:
        results["dts"] = await probe_dts(settings, config_file)

    async def messaging() -> None:
        results["nats"] = [await probe_nats(settings)]

    async with anyio.create_task_group() as tg:
        tg.start_soon(dts)
        tg.start_soon(messaging)
    return [*results["dts"], *results["nats"]]


# -- DTS ---------------------------------------------------------------------------------


async def probe_dts(settings: Settings, config_file: str | None = None) -> list[Verdict]:
    """The credentials of every account, then one page of every listing of every shard
    (an account's region) with the configured API."""
    try:
        providers = account_providers(settings, config_file)
    except CredentialsError as exc:  # no usable base credentials: its message is safe
        return [Verdict("DTS credentials", False, str(exc))]
    except Exception as exc:  # anything else: its type, never its text (it may quote a key)
        return [Verdict("DTS credentials", False, f"unexpected {type(exc).__name__}")]
    verdicts: list[Verdict] = []
    usable: set[str] = set()
    for name, provider in providers.items():
        check = "DTS credentials" if not settings.accounts else f"DTS credentials {name}"
        try:
            await provider.get()
        except CredentialsError as exc:  # a role that cannot be assumed, an endpoint failing
            verdicts.append(Verdict(check, False, str(exc)))
            continue
        except Exception as exc:  # its type, never its text
            verdicts.append(Verdict(check, False, f"unexpected {type(exc).__name__}"))
            continue
        usable.add(name)
        verdicts.append(Verdict(check, True, f"from {describe(provider)}"))
    dts = settings.dts.model_copy(update={"page_size": PROBE_PAGE_SIZE, "max_attempts": 1})
    probed = settings.model_copy(update={"dts": dts})
    sources = shard_sources(probed, providers)
    found: dict[str, Verdict] = {}
    readable = [s for s in sources if s.shard.account in usable]
    for source in sources:
        if source.shard.account not in usable:
            found[source.label] = Verdict(
                f"DTS {source.label}", False, "not tried: the account's credentials are unusable"
            )
    async with DtsClient(dts, sources[0].credentials, shards=readable) as client:

        async def one(source: ShardSource) -> None:
            found[source.label] = await _probe_shard(client, source, settings)

        async with anyio.create_task_group() as tg:
            for source in readable:
                tg.start_soon(one, source)
    return verdicts + [found[source.label] for source in sources]


async def _probe_shard(client: DtsClient, source: ShardSource, settings: Settings) -> Verdict:
    region, label, api = source.shard.region, source.label, source.api
    where = _endpoint(settings, region)
    check = f"DTS {label}"
    totals: dict[str, int | None] = {}
    try:
        with anyio.fail_after((settings.dts.timeout + 5) * len(api.listings)):
            for listing in api.listings:
                # One page, through the client's own signing and decoding (no retries).
                page = await client.read_page(label, 1, listing)
                totals[listing.job_type] = page.total_record_count
    except DtsError as exc:
        return Verdict(check, False, explain_dts(exc, where, settings.dts.timeout, api.action))
    except TimeoutError:
        return Verdict(check, False, f"no answer within {settings.dts.timeout:g}s from {where}")
    total = sum(n or 0 for n in totals.values())
    jobs = "jobs visible" if total != 1 else "job visible"
    detail = ""
    if api.action != ACTION:
        counts = ", ".join(f"{kind} {n}" for kind, n in totals.items())
        detail = f" with {api.action} ({counts})"
    seen = f"credentials accepted, {total} {jobs}{detail}"
    doubts = unknown_region_warnings([region], settings.dts.allow_regions)
    if total == 0 and doubts:
        return Verdict(check, False, f"{seen} ({where}), and {doubts[0]}")
    if total == 0:
        seen += ": is the region right?"
    return Verdict(check, True, f"{seen} ({where})")


def _endpoint(settings: Settings, region: str) -> str:
    return settings.dts.endpoint or f"https://{endpoint_host(region)}"


def explain_dts(exc: DtsError, where: str, timeout: float = 10.0, action: str = ACTION) -> str:
    """What a failed listing call (`action`) means, in plain words."""
    code = exc.code
    c = code.lower()
    if c.startswith("invalidaccesskeyid.inactive"):
        return f"the access key is disabled ({code})"
    if c.startswith("invalidaccesskeyid"):
        return f"the access key id is unknown ({code})"
    if c in {"signaturedoesnotmatch", "incompletesignature", "invalidsignature"}:
        return f"signature rejected: the secret does not match the key id ({code})"
    if c.startswith(("forbidden", "nopermission", "notauthorized", "unauthorized")):
        return f"the key has no permission for dts:{action} ({code})"
    if c == "invalidsecuritytoken.expired":
        return f"the STS security token has expired ({code})"
    if c.startswith("invalidsecuritytoken"):
        return f"the STS security token is malformed or does not belong to the key ({code})"
    if c.startswith("invalidtimestamp"):
        return f"the request time was rejected: is this machine's clock off by minutes? ({code})"
    if code == "CredentialsUnavailable":
        return f"no credentials: {exc.api_message}"
    if c.startswith("throttling"):
        return f"throttled by DTS right now; try again in a moment ({code})"
    if "regionid" in c or c.startswith("invalidregion"):
        return f"DTS does not serve this region at {where} ({code}: {exc.api_message})"
    if code == "Timeout":
        return f"no answer within {timeout:g}s from {where} (a firewall or proxy in the way?)"
    if code == "ConnectionError":
        # The client keeps the transport error as the context: its causes say more.
        return explain_connection([*_chain(exc)][1:], where, fallback=exc.api_message)
    if code == "MalformedResponse":
        return f"the answer from {where} is not DTS's: {exc.api_message}; is the endpoint right?"
    if exc.status is not None and exc.status >= 500:
        return f"DTS failed on its side, try again later ({code}: {exc.api_message})"
    return f"{code}: {exc.api_message}"


_DNS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated with hostname",
    "getaddrinfo failed",
    "name resolution",
)
_TLS = ("ssl", "tls", "certificate")
_REFUSED = ("connection refused", "errno 111", "connect call failed", "actively refused")
_UNREACHABLE = ("network is unreachable", "no route to host", "host is unreachable")


def explain_network(detail: str, where: str) -> str:
    """A connection failure (as text) in plain words: DNS, TLS, refused, unreachable."""
    text = detail.lower()
    if any(marker in text for marker in _DNS):
        return f"host not found (DNS): {_host(where)}"
    if any(marker in text for marker in _TLS):
        return f"TLS handshake failed with {where}: {_tls_reason(detail)}"
    if any(marker in text for marker in _REFUSED):
        return f"connection refused at {_hostport(where)}"
    if any(marker in text for marker in _UNREACHABLE):
        return f"network unreachable on the way to {_hostport(where)}"
    return f"cannot connect to {where}: {detail}"


def _tls_reason(detail: str) -> str:
    # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed ... (_ssl.c:1006)"
    text = detail.split("] ", 1)[-1]
    text = text.split(" (_ssl.c", 1)[0]
    return text.strip() or detail


def _host(url: str) -> str:
    return urlsplit(url if "://" in url else f"//{url}").hostname or url


def _hostport(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"//{url}")
    if parts.hostname is None:
        return url
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


# -- NATS --------------------------------------------------------------------------------


async def probe_nats(settings: Settings) -> Verdict:
    s = settings.nats
    where = s.display_url
    try:
        natsconn.connect_options(s)
    except (OSError, ssl.SSLError) as exc:
        return Verdict("NATS", False, f"the TLS files cannot be loaded: {exc}")
    errors: list[BaseException] = []

    async def collect(exc: Exception) -> None:
        errors.append(exc)

    budget = s.connect_timeout * 2 * len(s.servers) + 2
    try:
        with anyio.fail_after(budget):
            nc = await natsconn.connect(
                s,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # each server tried twice, then NoServersError
                reconnect_time_wait=0.1,
                error_cb=collect,
            )
    except TimeoutError:
        why = explain_connection(errors, where) if errors else None
        return Verdict("NATS", False, why or f"no answer within {budget:g}s from {where}")
    except Exception as exc:
        return Verdict("NATS", False, explain_connection([*errors, exc], where))
    try:
        return await _check_stream(nc, settings)
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


async def _check_stream(nc: Any, settings: Settings) -> Verdict:
    s = settings.nats
    server = nc.connected_url.netloc if nc.connected_url else s.display_url
    js = nc.jetstream(timeout=s.publish_timeout)
    wanted = f"{s.subject_prefix}.>"
    try:
        info = await js.stream_info(s.stream)
    except nats.js.errors.NotFoundError:
        return Verdict(
            "NATS",
            True,
            f"connected to {server}; stream {s.stream} does not exist yet, the watcher will "
            f"create it (subjects {wanted})",
        )
    except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
        return Verdict(
            "NATS", False, f"connected to {server}, but JetStream is not enabled for this account"
        )
    except Exception as exc:
        return Verdict(
            "NATS", False, f"connected to {server}, but the stream lookup failed: {why(exc)}"
        )
    tls = ", TLS" if natsconn.encrypted(nc) else ""
    problems = stream_problems(info, s.subject_prefix)
    wrong = [str(p) for p in problems if p.level != "note"]
    notes = "".join(f"; note: it {p}" for p in problems if p.level == "note")
    if wrong:
        return Verdict(
            "NATS",
            False,
            f"connected to {server}{tls}; stream {s.stream} " + "; and it ".join(wrong),
        )
    return Verdict(
        "NATS",
        True,
        f"connected to {server}{tls}; stream {s.stream} holds {info.state.messages} events" + notes,
    )


def explain_connection(
    errors: Sequence[BaseException], where: str, fallback: str | None = None
) -> str:
    """The most telling of the errors a failed connection produced, in plain words."""
    causes = [c for e in errors for c in _chain(e)]
    meaningful = [e for e in causes if not isinstance(e, nats.errors.NoServersError)]
    # the most specific cause wins, whatever the order they came in
    if any(isinstance(e, socket.gaierror) for e in meaningful):
        return f"host not found (DNS): {_host(where)}"
    for exc in meaningful:
        if isinstance(exc, ssl.SSLError):
            return f"TLS handshake failed with {where}: {_tls_reason(str(exc))}"
    if any(
        isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in str(e).lower()
        for e in meaningful
    ):
        return (
            f"authorization failed at {where}: the server rejected the user, password, "
            "token or credentials"
        )
    if any(isinstance(e, ConnectionRefusedError) for e in meaningful):
        return f"connection refused at {_hostport(where)}"
    for exc in meaningful:
        if isinstance(exc, natsconn.TlsNotOffered):
            return f"{where}: {exc}"
    if any(isinstance(e, TimeoutError | nats.errors.TimeoutError) for e in meaningful):
        return f"no answer from {where} in time (a firewall in the way?)"
    if meaningful:
        return explain_network(why(meaningful[0]), where)
    if fallback:
        return explain_network(fallback, where)
    return f"no server could be reached at {where}"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from or during, depth first, each once."""
    out: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is seen for seen in out):
            continue
        out.append(current)
        nested = getattr(current, "exceptions", ())
        stack.extend(reversed([e for e in nested if isinstance(e, BaseException)]))
        for linked in (current.__context__, current.__cause__):
            if linked is not None:
                stack.append(linked)
    return out
