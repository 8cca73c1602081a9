"""Settings that would fail later are refused when loaded (issues 12.1, 12.12, 17.6).

Each refusal is one ConfigError line (exit 2 from the command line) naming the setting or
the variable; a refused credential is never quoted back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from watcher.settings import ConfigError, load_settings

TOKEN = "CAISsecretSTStokenNEVERshown"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- 12.12: numbers that mean nothing at infinity ------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("DTS_WATCHER_RULES__DELAY_THRESHOLDS", '{"warning": "nan"}', "rules.delay_thresholds"),
        ("DTS_WATCHER_RULES__DELAY_THRESHOLDS", '{"critical": "inf"}', "rules.delay_thresholds"),
        ("DTS_WATCHER_POLL__INTERVAL", "inf", "DTS_WATCHER_POLL__INTERVAL"),
        ("DTS_WATCHER_POLL__INTERVAL", "Infinity", "DTS_WATCHER_POLL__INTERVAL"),
        ("DTS_WATCHER_DTS__TIMEOUT", "inf", "DTS_WATCHER_DTS__TIMEOUT"),
        ("DTS_WATCHER_DTS__BACKOFF_MAX", "nan", "DTS_WATCHER_DTS__BACKOFF_MAX"),
        ("DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL", "inf", "DTS_WATCHER_HEALTH__HEARTBEAT_INTERVAL"),
        ("DTS_WATCHER_NATS__PUBLISH_TIMEOUT", "inf", "DTS_WATCHER_NATS__PUBLISH_TIMEOUT"),
        ("DTS_WATCHER_NATS__STREAM_MAX_AGE", "inf", "DTS_WATCHER_NATS__STREAM_MAX_AGE"),
        ("DTS_WATCHER_POLL__CYCLE_TIMEOUT", "inf", "DTS_WATCHER_POLL__CYCLE_TIMEOUT"),
        ("DTS_WATCHER_RULES__DELAY_HYSTERESIS", "nan", "DTS_WATCHER_RULES__DELAY_HYSTERESIS"),
        ("DTS_WATCHER_POLL__JITTER", "nan", "DTS_WATCHER_POLL__JITTER"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    message = refused(monkeypatch, **{env: value})
    assert named in message and "finite" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://exa mple.com",
        "https://dts.example.com:99999",
        "https://dts.example.com:0",
        "https://dts.example.com:http",
        "https://:443",
        "https://dts.example.com/path",
        "https://dts.example.com?x=1",
        "https://user:pw@dts.example.com",
        "ftp://dts.example.com",
        "https://[::1",
        "https://300.1.1.1",
        "https://dts\u00e9.example.com",
        "https://dts.example.com\x00",
    ],
)
@pytest.mark.parametrize(
    "env",
    [
        "DTS_WATCHER_DTS__ENDPOINT",
        "ALIBABA_CLOUD_STS_ENDPOINT",
        "DTS_WATCHER_CREDENTIALS__ECS_METADATA_URL",
    ],
)
def test_malformed_endpoint_urls_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, url: str
) -> None:
    if "\x00" in url:  # the environment cannot hold a NUL: the file or the code can
        with pytest.raises(ConfigError, match="URL"):
            load_settings(dts={"endpoint": url})
        return
    message = refused(monkeypatch, **{env: url})
    assert "URL" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    "url",
    ["https://dts.example.com", "dts.example.com:8443", "https://[::1]:8080", "http://127.0.0.1:1"],
)
def test_good_endpoint_urls_still_load(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DTS_WATCHER_DTS__ENDPOINT", url)
    assert load_settings().dts.endpoint is not None


# -- 12.12: a misspelled section is an unknown setting ---------------------------------------


@pytest.mark.parametrize(
    ("variable", "suggested"),
    [
        ("DTS_WATCHER_POL__INTERVAL", "DTS_WATCHER_POLL__INTERVAL"),
        ("DTS_WATCHER_POLL_INTERVAL", "DTS_WATCHER_POLL__INTERVAL"),
        ("DTS_WATCHER_NAT__URL", "DTS_WATCHER_NATS__URL"),
        ("DTS_WATCHER_RULE__DELAY_THRESHOLDS", "DTS_WATCHER_RULES__DELAY_THRESHOLDS"),
        ("dts_watcher_pol__interval", "DTS_WATCHER_POLL__INTERVAL"),
        ("DTS_WATCHER_POLL__INTERVALL", "DTS_WATCHER_POLL__INTERVAL"),
    ],
)
def test_a_misspelled_variable_is_refused_with_the_likely_one(
    monkeypatch: pytest.MonkeyPatch, variable: str, suggested: str
) -> None:
    message = refused(monkeypatch, **{variable: "5"})
    assert variable in message and f"did you mean {suggested}?" in message


def test_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_DOCKER_BUILD", "1")
    monkeypatch.setenv("DTS_WATCHER_TEST_CRASH_AT", "")
    load_settings()


# -- 12.1: credentials as they will be sent ----------------------------------------------------


def test_a_token_read_from_a_file_loses_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", " LTAIkey\n")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret\r\n")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN + "\n")
    credentials = load_settings().credentials
    assert credentials.access_key_id == "LTAIkey"
    assert credentials.access_key_secret is not None
    assert credentials.access_key_secret.get_secret_value() == "secret"
    assert credentials.security_token is not None
    assert credentials.security_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN[:6] + "\n" + TOKEN[6:]),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN + "\u00e9"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN[:6] + " " + TOKEN[6:]),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "NEVERshown\u2028secret"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI\u00efNEVERshown"),
        ("DTS_WATCHER_CREDENTIALS__SECURITY_TOKEN", TOKEN + "\x7f"),
    ],
)
def test_credentials_no_header_can_carry_are_refused_naming_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIkey", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    message = refused(monkeypatch, **{**env, variable: value})
    named = variable.replace("DTS_WATCHER_CREDENTIALS__", "ALIBABA_CLOUD_")
    assert named in message and "character" in message
    assert "NEVERshown" not in message and TOKEN[6:] not in message


# -- 17.6: plain http only to this machine, or when asked for ----------------------------------


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ("DTS_WATCHER_DTS__ENDPOINT", "http://dts.cn-hangzhou.aliyuncs.com"),
        ("DTS_WATCHER_DTS__ENDPOINT", "http://10.0.0.1:8080"),
        ("ALIBABA_CLOUD_STS_ENDPOINT", "http://sts.aliyuncs.com"),
    ],
)
def test_plain_http_off_this_machine_is_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, env: str, url: str
) -> None:
    message = refused(monkeypatch, **{env: url})
    assert env in message and "DTS_WATCHER_DTS__ALLOW_PLAIN_HTTP" in message
    monkeypatch.setenv("DTS_WATCHER_DTS__ALLOW_PLAIN_HTTP", "true")
    load_settings()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://127.9.9.9"],
)
def test_plain_http_to_this_machine_is_allowed(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DTS_WATCHER_DTS__ENDPOINT", url)
    monkeypatch.setenv("ALIBABA_CLOUD_STS_ENDPOINT", url)
    load_settings()


def test_a_ca_file_that_is_missing_or_not_pem_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = refused(monkeypatch, DTS_WATCHER_DTS__TLS_CA_FILE=str(tmp_path / "nope.pem"))
    assert "DTS_WATCHER_DTS__TLS_CA_FILE" in message and "does not exist" in message
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    message = refused(monkeypatch, DTS_WATCHER_DTS__TLS_CA_FILE=str(junk))
    assert "not a PEM file" in message
