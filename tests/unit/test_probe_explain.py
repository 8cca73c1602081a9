"""The probe's translation of errors into advice, without a network."""

from __future__ import annotations

import socket
import ssl

import nats.errors
import pytest

from watcher.dts.client import DtsError
from watcher.probe import Verdict, explain_connection, explain_dts, explain_network

WHERE = "https://dts.cn-hangzhou.aliyuncs.com"


def dts_error(code: str, status: int | None = 400, message: str = "text") -> DtsError:
    return DtsError(message, code=code, region="cn-hangzhou", status=status)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InvalidAccessKeyId.NotFound", 404, "the access key id is unknown"),
        ("InvalidAccessKeyId.Inactive", 400, "the access key is disabled"),
        ("SignatureDoesNotMatch", 400, "signature rejected: the secret does not match the key id"),
        ("IncompleteSignature", 400, "signature rejected"),
        (
            "Forbidden.RAM",
            403,
            "the key has no permission for dts:DescribeSynchronizationJobs",
        ),
        ("NoPermission", 403, "the key has no permission"),
        ("InvalidSecurityToken.Expired", 403, "the STS security token has expired"),
        ("InvalidSecurityToken.Malformed", 400, "the STS security token is malformed"),
        ("InvalidTimeStamp.Expired", 400, "clock"),
        ("Throttling.User", 400, "throttled"),
        ("InvalidRegionId", 400, "does not serve this region"),
        ("InternalError", 500, "DTS failed on its side"),
        ("Timeout", None, "no answer within 10s from https://dts.cn-hangzhou"),
        ("MalformedResponse", 200, "is not DTS's"),
        ("SomethingNew", 400, "SomethingNew: text"),
    ],
)
def test_each_dts_error_code_gets_plain_words(code: str, status: int | None, expected: str) -> None:
    text = explain_dts(dts_error(code, status), WHERE)
    assert expected in text
    if code not in {"Timeout", "MalformedResponse", "SomethingNew"}:
        assert f"({code}" in text  # the code is always there to search for


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("[Errno -2] Name or service not known", "host not found (DNS): dts.cn-hangzhou"),
        ("[Errno -3] Temporary failure in name resolution", "host not found (DNS)"),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
            "issuer certificate (_ssl.c:1006)",
            "TLS handshake failed with https://dts.cn-hangzhou.aliyuncs.com: certificate verify "
            "failed: unable to get local issuer certificate",
        ),
        ("[Errno 111] Connection refused", "connection refused at dts.cn-hangzhou.aliyuncs.com"),
        ("[Errno 101] Network is unreachable", "network unreachable"),
        ("weird", "cannot connect to https://dts.cn-hangzhou.aliyuncs.com: weird"),
    ],
)
def test_network_failures_are_told_apart(detail: str, expected: str) -> None:
    assert explain_network(detail, WHERE).startswith(expected)


def test_a_connection_error_is_explained_by_its_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 443)")
        except OSError as inner:
            raise OSError("All connection attempts failed") from inner
    except OSError as outer:
        try:
            raise dts_error("ConnectionError", None, "ConnectError: All connection attempts failed")
        except DtsError as exc:
            error = exc
        error.__context__ = outer
    assert explain_dts(error, "https://10.0.0.1:443") == "connection refused at 10.0.0.1:443"


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([socket.gaierror(-2, "Name or service not known")], "host not found (DNS): nats.internal"),
        (
            [
                ssl.SSLCertVerificationError(
                    1,
                    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                    "verify failed: self-signed certificate (_ssl.c:1006)",
                )
            ],
            "TLS handshake failed with nats://nats.internal:4222: certificate verify failed: "
            "self-signed certificate",
        ),
        (
            [nats.errors.Error("nats: 'Authorization Violation'")],
            "authorization failed at nats://nats.internal:4222",
        ),
        (
            [ConnectionRefusedError(111, "refused"), nats.errors.NoServersError()],
            "connection refused at nats.internal:4222",
        ),
        (
            # the specific cause wins over a later, vaguer one
            [socket.gaierror(-2, "Name or service not known"), ConnectionRefusedError(111, "x")],
            "host not found (DNS)",
        ),
        ([nats.errors.NoServersError()], "no server could be reached at nats://nats.internal"),
    ],
)
def test_nats_connection_failures_are_told_apart(
    errors: list[BaseException], expected: str
) -> None:
    assert explain_connection(errors, "nats://nats.internal:4222").startswith(expected)


def test_a_verdict_reads_as_one_line() -> None:
    assert str(Verdict("NATS", True, "connected")) == "ok   NATS: connected"
    assert str(Verdict("DTS cn-hangzhou", False, "x")) == "FAIL DTS cn-hangzhou: x"
