"""ACS3-HMAC-SHA256 signing, checked against Alibaba's own SDK utilities.

The reference signature is computed by `alibabacloud_tea_openapi.utils.Utils.get_authorization`,
never re-derived here: if our canonicalization drifts from Alibaba's, these tests say so.

One known divergence is kept out of the comparisons on purpose: the Python SDK percent-encodes
query *values* but not query *names*, while Alibaba's V3 signature document says to encode
both (and we do). Every DTS parameter name is made of unreserved characters (`RegionId`,
`Tag.1.Key`, ...), where the two agree, so names in the SDK comparisons stay in that alphabet.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import pytest
from alibabacloud_tea_openapi.utils import Utils
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.dts.signing import (
    ALGORITHM,
    API_VERSION,
    EMPTY_SHA256,
    SignedRequest,
    acs_date,
    authorization,
    canonical_query,
    parse_authorization,
    sign_request,
    string_to_sign,
)

AK_ID = "LTAI5tTestAccessKeyId"
SECRET = "test-access-key-secret-0123456789"
TOKEN = "CAIS-test-sts-token/with+base64=chars"
HOST = "dts.cn-hangzhou.aliyuncs.com"
ACTION = "DescribeSynchronizationJobs"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NONCE = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"

Params = dict[str, str]

ACS_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

MANY_PARAMS = {
    "RegionId": "cn-hangzhou",
    "PageSize": "30",
    "PageNum": "7",
    "ResourceGroupId": "rg-acfmzawhxxc****",
    "ClientToken": "0c593ea1-3bea-11e9-b96b-88e9fe63****",
    **{f"Tag.{n}.Key": f"key-{n}" for n in range(1, 21)},
    **{f"Tag.{n}.Value": f"value {n}/{n * 7}" for n in range(1, 21)},
}

# Parameter sets that stress the canonical query: encoding, ordering, emptiness.
PARAM_CASES = {
    "no-params": {},
    "plain": {"RegionId": "cn-hangzhou", "PageSize": "30", "PageNum": "1"},
    "non-ascii-job-name": {"SynchronizationJobName": "订单 sync/1", "RegionId": "cn-hangzhou"},
    "plus": {"SynchronizationJobName": "a+b"},
    "star": {"SynchronizationJobName": "a*b"},
    "tilde": {"SynchronizationJobName": "a~b"},
    "percent": {"SynchronizationJobName": "100%"},
    "already-encoded-looking": {"SynchronizationJobName": "%20%E4%B8%AD+%2B"},
    "ampersand-equals": {"SynchronizationJobName": "a&b=c&d"},
    "spaces": {"SynchronizationJobName": "  two  spaces  "},
    "emoji": {"SynchronizationJobName": "sync 🚀 job 👩‍💻 🇨🇳"},
    "all-reserved": {"SynchronizationJobName": "!#$&'()*+,/:;=?@[]\"<>\\^`{|}%~ -_."},
    "control-chars": {"SynchronizationJobName": "line1\nline2\tx\r\x00\x7f"},
    "tags": {
        "Tag.1.Key": "env",
        "Tag.1.Value": "prod",
        "Tag.2.Key": "团队",
        "Tag.2.Value": "",
        "Tag.10.Key": "sorted-after-1-before-2",
    },
    "empty-values": {"SynchronizationJobName": "", "ResourceGroupId": "", "RegionId": "x"},
    "case-ordering": {"b": "1", "B": "2", "a": "3", "A": "4", "_": "5", "~": "6", "-": "7"},
    "many-params": MANY_PARAMS,
}

TOKENS = [pytest.param(None, id="no-token"), pytest.param(TOKEN, id="sts-token")]


def sdk_authorization(
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    payload: str = EMPTY_SHA256,
    access_key_id: str = AK_ID,
    secret: str = SECRET,
) -> str:
    """Alibaba's SDK computing the Authorization header for the same request."""
    request = SimpleNamespace(
        method=method, pathname=path, query=dict(params), headers=dict(headers)
    )
    return Utils.get_authorization(request, ALGORITHM, payload, access_key_id, secret)


def acs_headers(token: str | None = None) -> dict[str, str]:
    """The headers a real call carries and signs (everything but Authorization)."""
    headers = {
        "host": HOST,
        "x-acs-action": ACTION,
        "x-acs-version": API_VERSION,
        "x-acs-date": "2026-01-02T03:04:05Z",
        "x-acs-signature-nonce": NONCE,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    if token is not None:
        headers["x-acs-security-token"] = token
    return headers


def signed(
    params: Mapping[str, str],
    token: str | None = None,
    *,
    secret: str = SECRET,
    method: str = "GET",
    nonce: str = NONCE,
    now: datetime = NOW,
) -> SignedRequest:
    return sign_request(
        method=method,
        host=HOST,
        scheme="https",
        action=ACTION,
        params=params,
        access_key_id=AK_ID,
        access_key_secret=secret,
        security_token=token,
        now=now,
        nonce=nonce,
    )


def without_authorization(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def query_params(url: str) -> dict[str, str]:
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
    out = dict(pairs)
    assert len(out) == len(pairs), "a parameter appears twice in the URL"
    return out


# --- our Authorization header equals the SDK's ------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("params", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_authorization_matches_sdk(params: dict[str, str], token: str | None) -> None:
    headers = acs_headers(token)
    ours = authorization(AK_ID, SECRET, "GET", "/", params, headers)
    assert ours == sdk_authorization("GET", "/", params, headers)


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("params", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_sign_request_matches_sdk(params: dict[str, str], token: str | None) -> None:
    request = signed(params, token)
    expected = sdk_authorization("GET", "/", params, without_authorization(request.headers))
    assert request.headers["Authorization"] == expected


def test_sign_request_signature_depends_on_the_secret_like_the_sdk() -> None:
    params = PARAM_CASES["tags"]
    request = signed(params, TOKEN, secret="another-secret")
    headers = without_authorization(request.headers)
    assert request.headers["Authorization"] == sdk_authorization(
        "GET", "/", params, headers, secret="another-secret"
    )
    assert request.headers["Authorization"] != sdk_authorization("GET", "/", params, headers)


def test_authorization_with_body_content_type_and_post_matches_sdk() -> None:
    body = b'{"RegionId": "cn-hangzhou", "Name": "\xe8\xae\xa2\xe5\x8d\x95"}'
    payload = hashlib.sha256(body).hexdigest()
    headers = {**acs_headers(TOKEN), "content-type": "application/json; charset=utf-8"}
    headers["x-acs-content-sha256"] = payload
    params = {"RegionId": "cn-hangzhou"}
    ours = authorization(AK_ID, SECRET, "POST", "/", params, headers, payload)
    assert ours == sdk_authorization("POST", "/", params, headers, payload=payload)
    assert "content-type" in parse_authorization(ours)["SignedHeaders"].split(";")


def test_header_names_are_matched_in_any_letter_case_like_the_sdk() -> None:
    lower = acs_headers(TOKEN)
    mixed = {k.title() if i % 2 else k.upper(): v for i, (k, v) in enumerate(lower.items())}
    params = PARAM_CASES["non-ascii-job-name"]
    ours = authorization(AK_ID, SECRET, "GET", "/", params, mixed)
    assert ours == authorization(AK_ID, SECRET, "GET", "/", params, lower)
    assert ours == sdk_authorization("GET", "/", params, mixed)


def test_header_values_are_trimmed_like_the_sdk() -> None:
    padded = {k: f"  {v}\t" for k, v in acs_headers(TOKEN).items()}
    params = {"RegionId": "cn-hangzhou"}
    ours = authorization(AK_ID, SECRET, "GET", "/", params, padded)
    assert ours == sdk_authorization("GET", "/", params, padded)
    assert ours == authorization(AK_ID, SECRET, "GET", "/", params, acs_headers(TOKEN))


def test_only_host_content_type_and_x_acs_headers_are_signed() -> None:
    params = {"RegionId": "cn-hangzhou"}
    signed_only = acs_headers(TOKEN)
    extra = {**signed_only, "User-Agent": "dts-watcher/0.1", "Accept": "application/json"}
    ours = authorization(AK_ID, SECRET, "GET", "/", params, extra)
    # The SDK signs whatever it is given, so it is given only what we claim to sign.
    assert ours == sdk_authorization("GET", "/", params, signed_only)
    assert parse_authorization(ours)["SignedHeaders"] == ";".join(sorted(signed_only))


def test_method_is_upper_cased() -> None:
    params = {"RegionId": "cn-hangzhou"}
    headers = acs_headers()
    assert authorization(AK_ID, SECRET, "get", "/", params, headers) == sdk_authorization(
        "GET", "/", params, headers
    )
    request = signed(params, method="get")
    assert request.method == "GET"
    assert request.headers["Authorization"] == sdk_authorization(
        "GET", "/", params, without_authorization(request.headers)
    )


def test_none_values_are_left_out_like_the_sdk() -> None:
    params = {"RegionId": "cn-hangzhou", "SynchronizationJobName": None}
    headers = acs_headers()
    ours = authorization(AK_ID, SECRET, "GET", "/", params, headers)  # type: ignore[arg-type]
    assert ours == sdk_authorization("GET", "/", params, headers)
    assert ours == authorization(AK_ID, SECRET, "GET", "/", {"RegionId": "cn-hangzhou"}, headers)


# --- the request as sent -------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_url_carries_exactly_the_canonical_query(params: dict[str, str]) -> None:
    request = signed(params, TOKEN)
    parts = urlsplit(request.url)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == ("https", HOST, "/", "")
    assert parts.query == canonical_query(params)
    assert query_params(request.url) == params
    if not params:
        assert request.url == f"https://{HOST}/"


def test_canonical_query_encoding_is_rfc3986() -> None:
    query = canonical_query(
        {"Name": "a b+c*d~e/f%g&h=i", "Tag.1.Key": "订", "Empty": "", "Emoji": "🚀"}
    )
    assert query == (
        "Emoji=%F0%9F%9A%80&Empty=&Name=a%20b%2Bc%2Ad~e%2Ff%25g%26h%3Di&Tag.1.Key=%E8%AE%A2"
    )


@pytest.mark.parametrize("token", TOKENS)
def test_sign_request_headers(token: str | None) -> None:
    request = signed({"RegionId": "cn-hangzhou"}, token)
    headers = request.headers
    assert headers["host"] == HOST
    assert headers["x-acs-action"] == ACTION
    assert headers["x-acs-version"] == API_VERSION == "2020-01-01"
    assert headers["x-acs-signature-nonce"] == NONCE
    assert headers["x-acs-content-sha256"] == EMPTY_SHA256 == hashlib.sha256(b"").hexdigest()
    assert ACS_DATE_RE.match(headers["x-acs-date"])
    assert headers["x-acs-date"] == "2026-01-02T03:04:05Z"
    assert headers.get("x-acs-security-token") == token
    parsed = parse_authorization(headers["Authorization"])
    assert parsed is not None
    assert parsed["algorithm"] == ALGORITHM
    assert parsed["Credential"] == AK_ID
    expected_signed = [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        *(["x-acs-security-token"] if token else []),
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    assert parsed["SignedHeaders"].split(";") == expected_signed
    assert re.fullmatch(r"[0-9a-f]{64}", parsed["Signature"])


def test_nonce_and_date_change_the_signature() -> None:
    params = {"RegionId": "cn-hangzhou"}
    base = signed(params).headers["Authorization"]
    other_nonce = signed(params, nonce="another-nonce").headers["Authorization"]
    other_time = signed(params, now=NOW + timedelta(seconds=1)).headers["Authorization"]
    assert len({base, other_nonce, other_time}) == 3


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (
            datetime(2026, 1, 2, 11, 4, 5, tzinfo=timezone(timedelta(hours=8))),
            "2026-01-02T03:04:05Z",
        ),
        (
            datetime(2026, 1, 1, 22, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
            "2026-01-02T03:04:05Z",
        ),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "1999-12-31T23:59:59Z"),
    ],
)
def test_acs_date(moment: datetime, expected: str) -> None:
    assert acs_date(moment) == expected
    assert ACS_DATE_RE.match(acs_date(moment))


def test_repr_leaks_neither_authorization_nor_token() -> None:
    request = signed({"SynchronizationJobName": "orders"}, TOKEN)
    auth = request.headers["Authorization"]
    signature_hex = parse_authorization(auth)["Signature"]
    for text in (repr(request), str(request), f"{request!r}", repr([request]), repr({1: request})):
        assert "GET" in text
        assert request.url in text
        for secret in (auth, signature_hex, TOKEN, SECRET):
            assert secret not in text


# --- a verifier, the way the server (and our simulator) checks a request -------------------


def verify(method: str, url: str, headers: Mapping[str, str], secrets: Mapping[str, str]) -> bool:
    """Recompute the signature from what was received; True only for a genuine request."""
    lowered = {k.lower(): v for k, v in headers.items()}
    parsed = parse_authorization(lowered.get("authorization", ""))
    if parsed is None or parsed["algorithm"] != ALGORITHM:
        return False
    secret = secrets.get(parsed["Credential"])
    if secret is None:
        return False
    names = parsed["SignedHeaders"].split(";")
    if not {"host", "x-acs-date", "x-acs-signature-nonce", "x-acs-action"} <= set(names):
        return False
    to_sign, _ = string_to_sign(
        method,
        urlsplit(url).path,
        query_params(url),
        headers,
        lowered.get("x-acs-content-sha256", EMPTY_SHA256),
        signed_header_names=names,
    )
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parsed["Signature"])


SECRETS = {AK_ID: SECRET}


def url_with(params: Mapping[str, str]) -> str:
    query = canonical_query(params)
    return f"https://{HOST}/" + (f"?{query}" if query else "")


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("params", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_verifier_accepts_genuine_request(params: dict[str, str], token: str | None) -> None:
    request = signed(params, token)
    assert verify(request.method, request.url, request.headers, SECRETS)


def test_verifier_accepts_headers_delivered_in_other_case_and_extra_unsigned_headers() -> None:
    request = signed(PARAM_CASES["tags"], TOKEN)
    delivered = {k.title(): v for k, v in request.headers.items()}
    delivered["User-Agent"] = "something/1.0"
    delivered["X-Forwarded-For"] = "10.0.0.1"
    assert verify(request.method, request.url, delivered, SECRETS)


PARAM_TAMPERS = {
    "value-changed": lambda p: {**p, "SynchronizationJobName": "订单 sync/2"},
    "value-emptied": lambda p: {**p, "SynchronizationJobName": ""},
    "param-added": lambda p: {**p, "PageNum": "2"},
    "param-removed": lambda p: {k: v for k, v in p.items() if k != "Tag.1.Key"},
    "tag-value-changed": lambda p: {**p, "Tag.1.Value": "staging"},
    "key-renamed": lambda p: {
        ("Tag.1.Value" if k == "Tag.2.Value" else k): v for k, v in p.items() if k != "Tag.1.Value"
    },
}
BASE_PARAMS = {
    "RegionId": "cn-hangzhou",
    "SynchronizationJobName": "订单 sync/1",
    "Tag.1.Key": "env",
    "Tag.1.Value": "prod",
    "Tag.2.Value": "x",
}


@pytest.mark.parametrize("tamper", PARAM_TAMPERS.values(), ids=PARAM_TAMPERS.keys())
def test_verifier_rejects_tampered_parameter(tamper: Callable[[Params], Params]) -> None:
    request = signed(BASE_PARAMS, TOKEN)
    tampered = tamper(BASE_PARAMS)
    assert tampered != BASE_PARAMS
    assert verify(request.method, request.url, request.headers, SECRETS)
    assert not verify(request.method, url_with(tampered), request.headers, SECRETS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("host", "dts.cn-shanghai.aliyuncs.com"),
        ("x-acs-action", "DeleteSynchronizationJob"),
        ("x-acs-version", "2016-08-01"),
        ("x-acs-date", "2026-01-02T03:04:06Z"),
        ("x-acs-signature-nonce", "replayed-with-a-new-nonce"),
        ("x-acs-content-sha256", hashlib.sha256(b"body").hexdigest()),
        ("x-acs-security-token", "someone-elses-token"),
        ("x-acs-security-token", None),  # removed
        ("x-acs-date", None),  # removed
    ],
)
def test_verifier_rejects_tampered_header(name: str, value: str | None) -> None:
    request = signed(BASE_PARAMS, TOKEN)
    headers = dict(request.headers)
    if value is None:
        del headers[name]
    else:
        assert headers[name] != value
        headers[name] = value
    assert not verify(request.method, request.url, headers, SECRETS)


def test_verifier_rejects_tampered_method() -> None:
    request = signed(BASE_PARAMS, TOKEN)
    assert not verify("POST", request.url, request.headers, SECRETS)


def test_verifier_rejects_wrong_secret_and_unknown_key() -> None:
    request = signed(BASE_PARAMS, TOKEN, secret="not-the-secret")
    assert not verify(request.method, request.url, request.headers, SECRETS)
    assert verify(request.method, request.url, request.headers, {AK_ID: "not-the-secret"})
    genuine = signed(BASE_PARAMS, TOKEN)
    assert not verify(genuine.method, genuine.url, genuine.headers, {"LTAIother": SECRET})


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda a: a[:-1] + ("0" if a[-1] != "0" else "1"), id="signature-digit"),
        pytest.param(lambda a: a.replace(f"Credential={AK_ID}", "Credential=LTAIx"), id="cred"),
        pytest.param(lambda a: a.replace(";x-acs-security-token", ""), id="unsign-token"),
        pytest.param(lambda a: a.replace(ALGORITHM, "ACS3-HMAC-SM3"), id="algorithm"),
        pytest.param(lambda a: "", id="empty"),
    ],
)
def test_verifier_rejects_tampered_authorization(rewrite: Callable[[str], str]) -> None:
    request = signed(BASE_PARAMS, TOKEN)
    headers = dict(request.headers)
    headers["Authorization"] = rewrite(headers["Authorization"])
    assert headers["Authorization"] != request.headers["Authorization"]
    assert not verify(request.method, request.url, headers, SECRETS)


# --- parse_authorization -------------------------------------------------------------------


def test_parse_authorization_round_trip() -> None:
    value = authorization(AK_ID, SECRET, "GET", "/", BASE_PARAMS, acs_headers(TOKEN))
    parsed = parse_authorization(value)
    assert parsed is not None
    assert parsed["algorithm"] == ALGORITHM
    assert parsed["Credential"] == AK_ID
    assert parsed["SignedHeaders"] == ";".join(sorted(acs_headers(TOKEN)))
    assert value == (
        f"{ALGORITHM} Credential={parsed['Credential']},"
        f"SignedHeaders={parsed['SignedHeaders']},Signature={parsed['Signature']}"
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        ALGORITHM,
        f"{ALGORITHM} Credential=a",
        f"{ALGORITHM} Credential=a,SignedHeaders=host",
        f"{ALGORITHM} Credential=a,SignedHeaders=host,Signature",
        f"{ALGORITHM} Credential=a,SignedHeaders=host,Signature=ab,junk",
        "Bearer some.jwt.token",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_parse_authorization_rejects_malformed(value: str) -> None:
    assert parse_authorization(value) is None


# --- properties ----------------------------------------------------------------------------

# Parameter names: the unreserved alphabet, where the SDK and Alibaba's document agree.
NAMES = st.text(alphabet=string.ascii_letters + string.digits + "._-~", min_size=1, max_size=12)
VALUES = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)
PARAMS = st.dictionaries(NAMES, VALUES, max_size=8)
TOKEN_TEXT = st.none() | st.text(
    alphabet=string.ascii_letters + string.digits + "+/=_-.", min_size=1, max_size=40
)
SECRET_TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(params=PARAMS, token=TOKEN_TEXT, secret=SECRET_TEXT)
def test_property_signature_equals_sdk(
    params: dict[str, str], token: str | None, secret: str
) -> None:
    headers = acs_headers(token)
    expected = sdk_authorization("GET", "/", params, headers, secret=secret)
    assert authorization(AK_ID, secret, "GET", "/", params, headers) == expected
    request = signed(params, token, secret=secret)
    assert request.headers["Authorization"] == sdk_authorization(
        "GET", "/", params, without_authorization(request.headers), secret=secret
    )


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(VALUES, VALUES, max_size=8), token=TOKEN_TEXT)
def test_property_url_round_trips_and_verifies(params: dict[str, str], token: str | None) -> None:
    """Any names and values: the URL decodes back to the params and the request verifies."""
    request = signed(params, token)
    assert query_params(request.url) == params
    assert verify(request.method, request.url, request.headers, SECRETS)


@settings(max_examples=100, deadline=None)
@given(params=st.dictionaries(NAMES, VALUES, min_size=1, max_size=6), data=st.data())
def test_property_any_changed_value_is_rejected(params: Params, data: st.DataObject) -> None:
    request = signed(params, TOKEN)
    name = data.draw(st.sampled_from(sorted(params)))
    new_value = data.draw(VALUES.filter(lambda v: v != params[name]))
    tampered = {**params, name: new_value}
    assert not verify(request.method, url_with(tampered), request.headers, SECRETS)
