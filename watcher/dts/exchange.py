"""One request to DTS and its answer: the exchange, within a deadline and a size cap, and
the answer's decoding into a JSON object or a `DtsError`.

Every way an exchange can go wrong ends here as a `DtsError` with a code (counted in the
client's statistics under a bounded label: `watcher.dts.upstream.code_label`) and a
reason that is safe to log: never the text of a transport exception, which may quote
the request's own headers, and an upstream message only bounded (`upstream.clean`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from watcher import __version__, fastjson
from watcher.dts.body import ACCEPT_ENCODING, BodyError, read_body
from watcher.dts.models import ApiError
from watcher.dts.signing import SignedRequest
from watcher.dts.upstream import clean, code_label, safe_code, transport_reason
from watcher.errors import SourceError
from watcher.settings import DtsSettings

# Sent with every call besides the signed headers (which include Host).
_HEADERS = {"Accept-Encoding": ACCEPT_ENCODING, "User-Agent": f"dts-watcher/{__version__}"}
# Codes of failures where another try may get an answer.
_RETRYABLE = frozenset({"Timeout", "ConnectionError", "MalformedResponse"})


class DtsError(SourceError):
    """A DTS call that failed for good. Safe to log: no credentials inside."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        region: str,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        code = safe_code(code)
        request_id = safe_code(request_id) if request_id else None
        message = clean(message)
        self.code = code
        self.retry_after = retry_after
        self.region = region
        self.status = status
        self.request_id = request_id
        self.retryable = retryable
        self.api_message = message
        detail = f"{code}: {message}"
        if status is not None:
            detail += f" (HTTP {status}"
            detail += f", RequestId {request_id})" if request_id else ")"
        super().__init__(f"DTS {region}: {detail}")


def failed(counts: Counter[tuple[str, str]], region: str, code: str, reason: str) -> DtsError:
    """A request that got no usable answer, counted under `code`."""
    counts[(region, code)] += 1
    return DtsError(reason, code=code, region=region, retryable=code in _RETRYABLE)


async def exchange(
    http: httpx.AsyncBaseTransport,
    request: SignedRequest,
    region: str,
    counts: Counter[tuple[str, str]],
    settings: DtsSettings,
    on_sent: Callable[[], None] | None = None,
) -> tuple[httpx.Response, bytes]:
    """Send `request` through the transport `http` and read its answer whole: within
    `settings.timeout` for all of it (a server dripping its answer a byte at a time is cut
    off like one that never answers), and at most `settings.max_response_bytes` once
    decompressed. `on_sent` is called once the request is on the wire (its pacing counts
    from then).

    No httpx client sits in between: a DTS call needs none of its cookies, redirects or
    authentication, and each cost CPU on every one of a cycle's hundreds of requests."""
    failure: DtsError | None = None
    timeout = settings.timeout
    extensions: dict[str, Any] = {"timeout": {"connect": timeout}}
    if on_sent is not None:
        extensions["trace"] = _tracer(on_sent)
    try:
        with anyio.fail_after(timeout):
            headers = {**request.headers, **_HEADERS}
            outgoing = httpx.Request(
                request.method, request.url, headers=headers, extensions=extensions
            )
            response = await http.handle_async_request(outgoing)
            try:
                content = await read_body(response, settings.max_response_bytes)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        failure = failed(counts, region, "Timeout", f"no complete answer within {timeout:g}s")
    except (httpx.LocalProtocolError, UnicodeEncodeError) as exc:  # ours is at fault: no retry
        failure = failed(counts, region, "RequestNotSendable", transport_reason(exc))
    except httpx.TransportError as exc:
        failure = failed(counts, region, "ConnectionError", transport_reason(exc))
    except BodyError as exc:
        failure = failed(counts, region, exc.code, exc.reason)
    except Exception as exc:  # anything else on the way: this request's failure
        failure = failed(counts, region, "MalformedResponse", type(exc).__name__)
    if failure is not None:
        # Raised here, outside the handlers: the error has no context that could carry
        # a transport exception's text (which may quote a header: a security token).
        raise failure
    return response, content


def _tracer(on_sent: Callable[[], None]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """The `trace` extension (httpcore's names, which `connections` calls): `on_sent`
    once the request's headers (all of a GET) are written to the connection."""

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.complete"):
            on_sent()

    return trace


def decode(
    region: str, response: httpx.Response, content: bytes, counts: Counter[tuple[str, str]]
) -> tuple[dict[str, Any], bool]:
    """The body as a JSON object, and whether orjson decoded it (`fastjson.loads`)."""
    request_id = response.headers.get("x-acs-request-id")
    exact = False
    try:
        body, exact = fastjson.loads(content)
    except Exception:  # not JSON, nested too deep (RecursionError), not UTF-8...
        body = None
    if response.is_success:
        if not isinstance(body, dict):
            counts[(region, "MalformedResponse")] += 1
            raise DtsError(
                f"body is not a JSON object ({_preview(response, content)})",
                code="MalformedResponse",
                region=region,
                status=response.status_code,
                request_id=request_id,
                retryable=True,
            )
        counts[(region, "OK")] += 1
        return body, exact
    try:
        error = ApiError.model_validate(body if isinstance(body, dict) else {})
    except Exception:
        error = ApiError()
    code = safe_code(error.code or f"HTTP{response.status_code}")
    counts[(region, code_label(code))] += 1
    retryable = (
        response.status_code >= 500
        or code.startswith("Throttling")
        or code in {"ServiceUnavailable", "SignatureNonceUsed"}
    )
    raise DtsError(
        error.message or _preview(response, content),
        code=code,
        region=region,
        status=response.status_code,
        request_id=error.request_id or request_id,
        retryable=retryable,
        retry_after=_retry_after(response),
    )


def _retry_after(response: httpx.Response) -> float | None:
    """`x-acs-retry-after` is in milliseconds (as Alibaba's SDKs read it)."""
    raw = (response.headers.get("x-acs-retry-after") or "").strip()
    if not raw.isdigit() or len(raw) > 12:
        return None
    millis = int(raw)
    return millis / 1000 if millis > 0 else None


def _preview(response: httpx.Response, content: bytes) -> str:
    kind = clean(response.headers.get("content-type", "no content type"), limit=60)
    return f"HTTP {response.status_code}, {kind}, {len(content)} bytes"
