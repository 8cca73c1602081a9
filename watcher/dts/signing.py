"""ACS3-HMAC-SHA256 request signing (Alibaba Cloud's V3 signature), pure functions.

The scheme, for an RPC-style API such as DTS:

    CanonicalRequest = Method \\n CanonicalURI \\n CanonicalQueryString \\n
                       CanonicalHeaders \\n SignedHeaders \\n HashedPayload
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(secret, StringToSign))
    Authorization    = "ACS3-HMAC-SHA256 Credential=<key id>,SignedHeaders=<h1;h2>,Signature=<sig>"

Query keys and values are percent-encoded as RFC 3986 unreserved-safe UTF-8 (only
`A-Z a-z 0-9 - _ . ~` stay literal), sorted by key. Signed headers are `host`, every
`x-acs-*` header and `content-type` when present, lower-cased and sorted.

The same functions serve the client (to sign) and the simulator (to verify), so there is
one implementation; the unit tests check it against Alibaba's own SDK utilities.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2020-01-01"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(text: str) -> str:
    return quote(text, safe="~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """`k=v&...` sorted by key, both percent-encoded; also the query string we send."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if v is not None
    )


def _is_signed(name: str) -> bool:
    return name == "host" or name == "content-type" or name.startswith("x-acs-")


def canonical_headers(
    headers: Mapping[str, str], names: Iterable[str] | None = None
) -> tuple[str, str]:
    """(canonical header block, signed header list).

    The signer picks the headers (`names` None); a verifier passes the names listed in the
    request's SignedHeaders, as the server does.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if names is None:
        signed = {k: v.strip() for k, v in lowered.items() if _is_signed(k)}
    else:
        signed = {n.lower(): lowered.get(n.lower(), "").strip() for n in names}
    names = sorted(signed)
    block = "".join(f"{name}:{signed[name]}\n" for name in names)
    return block, ";".join(names)


def string_to_sign(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str = EMPTY_SHA256,
    signed_header_names: Iterable[str] | None = None,
) -> tuple[str, str]:
    """(string to sign, signed header list)."""
    block, signed_names = canonical_headers(headers, signed_header_names)
    canonical_request = "\n".join(
        [method.upper(), path or "/", canonical_query(params), block, signed_names, payload_sha256]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{digest}", signed_names


def signature(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    access_key_id: str,
    secret: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str = EMPTY_SHA256,
) -> str:
    to_sign, signed_names = string_to_sign(method, path, params, headers, payload_sha256)
    return (
        f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_names},"
        f"Signature={signature(secret, to_sign)}"
    )


def acs_date(moment: datetime) -> str:
    """The x-acs-date format: ISO 8601 in UTC, seconds precision, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    url: str
    headers: dict[str, str]

    def __repr__(self) -> str:  # the Authorization header and token stay out of reprs
        return f"SignedRequest({self.method} {self.url})"


def sign_request(
    *,
    method: str,
    host: str,
    scheme: str,
    action: str,
    params: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    now: datetime,
    nonce: str,
    version: str = API_VERSION,
) -> SignedRequest:
    """Everything needed to send one signed RPC call with an empty body."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": acs_date(now),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    if security_token:
        headers["x-acs-security-token"] = security_token
    headers["Authorization"] = authorization(
        access_key_id, access_key_secret, method, "/", params, headers
    )
    query = canonical_query(params)
    url = f"{scheme}://{host}/" + (f"?{query}" if query else "")
    return SignedRequest(method=method.upper(), url=url, headers=headers)


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split an Authorization header into algorithm, Credential, SignedHeaders, Signature."""
    algorithm, _, rest = value.strip().partition(" ")
    if not rest:
        return None
    parts: dict[str, str] = {"algorithm": algorithm}
    for piece in rest.split(","):
        key, sep, val = piece.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    return parts
