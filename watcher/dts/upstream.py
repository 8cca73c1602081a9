"""What comes from upstream (DTS, STS, the metadata service, a transport error), made fit
for a log line, an event or a metric label.

Everything an upstream server says is attacker-controlled in the worst case: a huge error
code, a message with control characters, a request id that echoes a token back. And the
text of a transport exception may quote what *we* sent, headers included (h11's "Illegal
header value" quotes the value: an STS token). So:

- `clean` bounds a message to one short line and masks given secrets;
- `safe_code` keeps an error code to the characters codes are made of, bounded;
- `code_label` maps a code onto a known set (plus `other`) for metric labels, whose
  series would otherwise grow with every distinct code a server makes up;
- `transport_reason` describes a transport failure from the exception's *type* and a few
  fields that come from the operating system or OpenSSL, never from its text.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

import httpx

MAX_MESSAGE = 300
MAX_CODE = 64
_NOT_CODE = re.compile(r"[^A-Za-z0-9._\-]")

# Outcomes the client itself names, and the DTS (and common Alibaba Cloud) error codes
# worth a series of their own; any other code is counted as `other`.
OWN_OUTCOMES = frozenset(
    {
        "OK",
        "Timeout",
        "ConnectionError",
        "MalformedResponse",
        "ResponseTooLarge",
        "CredentialsUnavailable",
        "RequestNotSendable",
        "InternalError",
    }
)
KNOWN_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.System",
        "ServiceUnavailable",
        "InternalError",
        "UnknownError",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSignature",
        "SignatureNonceUsed",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
        "InvalidSecurityToken.MismatchWithAccessKey",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        "Forbidden",
        "Forbidden.RAM",
        "Forbidden.AccessDenied",
        "NoPermission",
        "InvalidRegionId",
        "InvalidParameter",
        "MissingParameter",
        "InvalidAction.NotFound",
        "InvalidVersion",
        "ListingDrift",
    }
)
_HTTP_STATUS = re.compile(r"^HTTP[1-5][0-9][0-9]$")


def clean(message: str, *secrets: str, limit: int = MAX_MESSAGE) -> str:
    """An upstream message fit for an error: one line, short, no secret echoed back."""
    text = str(message)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join("".join(c if c.isprintable() else " " for c in text[: limit * 4]).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_code(code: object, *secrets: str) -> str:
    """An error code as logs and events may carry it: `[A-Za-z0-9._-]`, at most 64."""
    text = clean(str(code), *secrets, limit=MAX_CODE * 2)
    text = _NOT_CODE.sub("_", text)
    return text if len(text) <= MAX_CODE else text[: MAX_CODE - 3] + "..."


def code_label(code: str) -> str:
    """An outcome for a metric label: a known code, `HTTPnnn`, or `other`."""
    if code in OWN_OUTCOMES or code in KNOWN_CODES or _HTTP_STATUS.match(code):
        return code
    return "other"


def transport_reason(exc: BaseException) -> str:
    """A transport failure in words that never quote the exception's own text."""
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return "host not found (DNS name resolution failed)"
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = clean(str(cause.verify_message or "unknown reason"), limit=120)
            return f"TLS certificate verify failed: {detail}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({clean(str(cause.reason or 'SSLError'), limit=80)})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno is not None:
            name = errno.errorcode.get(cause.errno, f"errno {cause.errno}")
            return f"{type(cause).__name__}: {name}"
    if isinstance(exc, httpx.LocalProtocolError | UnicodeEncodeError):
        return (
            "the request could not be sent: a header value is not valid "
            "(a credential with a space, control or non-ASCII character?)"
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server broke the HTTP protocol"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    return type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 16 and all(current is not e for e in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out
