"""The checks DTS makes on a request before it looks at the action: who signed it, with
what, and when. Signatures are verified with the watcher's own ACS3-HMAC-SHA256 code
(`watcher.dts.signing`), recomputed from what arrived on the wire.

Checked in this order, each answered with DTS's HTTP status and Code:

    Authorization / x-acs-* headers missing    400 MissingParameter
    Authorization garbled or not signing them  400 IncompleteSignature
    unknown access key id                      404 InvalidAccessKeyId.NotFound
    STS key without its token (or vice versa)  400 InvalidSecurityToken.Malformed
    wrong signature or payload hash            400 SignatureDoesNotMatch
    x-acs-date unreadable                      400 InvalidTimeStamp.Format
    x-acs-date more than 15 minutes off        400 InvalidTimeStamp.Expired
    nonce already seen within 15 minutes       400 SignatureNonceUsed
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from dts_sim.api import ApiError
from watcher.dts.signing import (
    ALGORITHM,
    acs_date,
    parse_authorization,
    signature,
    string_to_sign,
)

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "TIME_WINDOW",
    "Authenticator",
    "parse_acs_date",
]

DEFAULT_ACCESS_KEY_ID = "sim-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "sim-access-key-secret"  # noqa: S105 - a public test credential
TIME_WINDOW = timedelta(minutes=15)  # both for x-acs-date skew and nonce memory
_REQUIRED_HEADERS = (
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)


class Authenticator:
    """Accepted keys, the clock, and the nonces seen lately. Thread-safe."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        sts_credentials: Mapping[str, tuple[str, str]],
        clock: Callable[[], datetime],
    ) -> None:
        """
        credentials: access key id -> secret.
        sts_credentials: STS access key id -> (secret, security token).
        clock: returns "now" (an aware datetime) for the x-acs-date and nonce checks.
        """
        self.credentials = dict(credentials)
        self._sts = dict(sts_credentials)
        self._clock = clock
        self._lock = threading.Lock()
        # Whose key each is (keys not listed: the default account's), and when issued
        # STS keys expire.
        self._accounts: dict[str, str] = {}
        self._expires: dict[str, datetime] = {}
        # Nonces seen in the last 15 minutes, and the order they expire in.
        self._nonces: dict[str, datetime] = {}
        self._nonce_order: collections.deque[tuple[datetime, str]] = collections.deque()

    def check(
        self,
        method: str,
        path: str,
        query_params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> str:
        """Raise the ApiError DTS would answer with, or return the access key id."""
        parsed, signed = _signed_header_names(headers)
        key_id = parsed["Credential"]
        secret = self._secret(key_id, headers.get("x-acs-security-token"))
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
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation. server string to sign"
                f" is:{to_sign}",
            )
        if hashlib.sha256(body).hexdigest() != claimed.lower():
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the request body.",
            )
        now = self._check_date(headers["x-acs-date"])
        self._remember_nonce(headers["x-acs-signature-nonce"], now)
        return key_id

    def add_key(self, key_id: str, secret: str, account: str) -> None:
        """Accept a plain access key of `account`."""
        with self._lock:
            self.credentials[key_id] = secret
            self._accounts[key_id] = account

    def issue(self, account: str, expires: datetime) -> tuple[str, str, str]:
        """A temporary (STS) key of `account`: (key id, secret, security token)."""
        key_id = "STS.sim" + secrets.token_hex(10)
        secret, token = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        with self._lock:
            self._sts[key_id] = (secret, token)
            self._accounts[key_id] = account
            self._expires[key_id] = expires
        return key_id, secret, token

    def account_of(self, key_id: str) -> str:
        return self._accounts.get(key_id, "default")

    def _secret(self, key_id: str, token_sent: str | None) -> str:
        """The secret of `key_id`, once its security token (if an STS key) is right."""
        if key_id in self.credentials:
            secret, token = self.credentials[key_id], None
        elif key_id in self._sts:
            secret, token = self._sts[key_id]
            expires = self._expires.get(key_id)
            if expires is not None and self._clock() >= expires:
                raise ApiError(
                    403, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."
                )
        else:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if token is not None and not (
            token_sent and hmac.compare_digest(token_sent.encode(), token.encode())
        ):
            raise ApiError(
                400,
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed or does not belong to this access key.",
            )
        if token is None and token_sent:
            raise ApiError(
                400,
                "InvalidSecurityToken.Malformed",
                "A SecurityToken was sent with an access key that is not an STS key.",
            )
        return secret

    def _check_date(self, raw: str) -> datetime:
        """x-acs-date within 15 minutes of the clock; returns the clock's now."""
        sent_at = parse_acs_date(raw)
        now = self._clock()
        if abs(now - sent_at) > TIME_WINDOW:
            raise ApiError(
                400,
                "InvalidTimeStamp.Expired",
                f"Specified time stamp or date value is expired: {raw} is more"
                f" than 15 minutes away from the server time {acs_date(now)}.",
            )
        return now

    def _remember_nonce(self, nonce: str, now: datetime) -> None:
        """Refuse a nonce seen within the time window; remember this one."""
        with self._lock:
            horizon = now - TIME_WINDOW
            order = self._nonce_order
            while order and order[0][0] < horizon:  # forget the expired, oldest first
                seen_at, old = order.popleft()
                if self._nonces.get(old) == seen_at:
                    del self._nonces[old]
            seen = self._nonces.get(nonce)
            if seen is not None and seen >= horizon:
                raise ApiError(
                    400,
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                )
            self._nonces[nonce] = now
            order.append((now, nonce))


def _signed_header_names(headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The parsed Authorization header and the header names it signs, once both are
    present and well-formed and every header that must be signed is."""
    auth = headers.get("authorization")
    if not auth:
        raise ApiError(
            400,
            "MissingParameter",
            'The input parameter "Authorization" that is mandatory for processing this'
            " request is not supplied.",
        )
    for name in _REQUIRED_HEADERS:
        if not headers.get(name):
            raise ApiError(
                400,
                "MissingParameter",
                f'The input parameter "{name}" that is mandatory for processing this'
                " request is not supplied.",
            )
    parsed = parse_authorization(auth)
    if parsed is None or parsed["algorithm"] != ALGORITHM:
        raise ApiError(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: expected"
            f" '{ALGORITHM} Credential=...,SignedHeaders=...,Signature=...'.",
        )
    signed = [n.strip().lower() for n in parsed["SignedHeaders"].split(";") if n.strip()]
    must_sign = {"host"} | {name for name in headers if name.startswith("x-acs-")}
    unsigned = sorted(must_sign - set(signed))
    if unsigned:
        raise ApiError(
            400,
            "IncompleteSignature",
            f"The request signature does not cover the header(s) {', '.join(unsigned)}.",
        )
    return parsed, signed


def parse_acs_date(raw: str) -> datetime:
    """An x-acs-date value as an aware datetime (UTC if it names no zone)."""
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp {raw!r} is not in the format yyyy-MM-ddTHH:mm:ssZ.",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
