"""Settings: sources, validation messages, secrets, and the NATS connection options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.support.hostile import self_signed
from watcher.publish import connect_options
from watcher.settings import ConfigError, NatsSettings, load_settings, redact_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


def test_the_example_config_file_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "watcher.example.toml")
    assert settings.dts.regions == ["cn-hangzhou", "cn-shanghai"]
    assert settings.rules.delay_thresholds == {"warning": 60, "critical": 300}


def test_the_example_env_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in (ROOT / "config" / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.dts.regions == ["cn-hangzhou", "cn-shanghai"]
    assert settings.credentials.access_key_id == "LTAI-your-key-id"


def test_environment_beats_file_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[poll]\ninterval = 12\n[nats]\nstream = "FROM_FILE"\n')
    monkeypatch.setenv("DTS_WATCHER_POLL__INTERVAL", "7")
    settings = load_settings(config)
    assert settings.poll.interval == 7
    assert settings.nats.stream == "FROM_FILE"
    assert settings.nats.subject_prefix == "dts"


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("DTS_WATCHER_DTS__PAGE_SIZE", "25", "DTS_WATCHER_DTS__PAGE_SIZE"),
        ("DTS_WATCHER_DTS__REGIONS", '["cn hangzhou"]', "DTS_WATCHER_DTS__REGIONS"),
        ("DTS_WATCHER_DTS__ENDPOINT", "ftp://x", "DTS_WATCHER_DTS__ENDPOINT"),
        ("DTS_WATCHER_NATS__DUPLICATE_WINDOW", "30", "DTS_WATCHER_NATS__DUPLICATE_WINDOW"),
        ("DTS_WATCHER_RULES__DELAY_THRESHOLDS", '{"ok": 5}', "DTS_WATCHER_RULES__DELAY_THRESHOLDS"),
        (
            "DTS_WATCHER_RULES__DELAY_THRESHOLDS",
            '{"a": 5, "b": 5}',
            "DTS_WATCHER_RULES__DELAY_THRESHOLDS",
        ),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[poll]\ninterval = 0.5\n", "key poll.interval"),
        ('[dts]\nregions = ["cn hangzhou"]\n', "key dts.regions"),
        ("[nats]\nduplicate_window = 30\n", "key nats.duplicate_window"),
    ],
)
def test_an_invalid_value_from_the_file_is_named_by_file_and_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    config = tmp_path / "w.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert f"config file {config}, {named}" in str(caught.value)
    assert "DTS_WATCHER_" not in str(caught.value)  # not blamed on a variable nobody set


def test_an_invalid_value_from_the_environment_is_named_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "w.toml"
    config.write_text("[poll]\ninterval = 12\n")
    monkeypatch.setenv("DTS_WATCHER_POLL__INTERVAL", "0.5")
    with pytest.raises(ConfigError, match=r"\(DTS_WATCHER_POLL__INTERVAL\)"):
        load_settings(config)


def test_a_region_dts_does_not_serve_is_a_warning_with_a_guess_not_an_error() -> None:
    settings = load_settings(dts={"regions": ["cn-hangzou", "cn-shanghai", "xx-newplace-1"]})
    warnings = settings.warnings()
    assert len(warnings) == 2
    assert "'cn-hangzou'" in warnings[0] and "did you mean 'cn-hangzhou'?" in warnings[0]
    assert "'xx-newplace-1'" in warnings[1] and "DTS_WATCHER_DTS__ALLOW_REGIONS" in warnings[1]
    allowed = {"regions": ["xx-newplace-1"], "allow_regions": ["xx-newplace-1"]}
    assert load_settings(dts=allowed).warnings() == []


def test_secrets_are_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIkey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "very-secret")
    monkeypatch.setenv("DTS_WATCHER_NATS__URL", "nats://alice:nats-pw@host:4222,nats://b:4222")
    settings = load_settings()
    text = repr(settings) + str(settings.masked()) + settings.nats.display_url
    assert "very-secret" not in text and "nats-pw" not in text
    assert settings.masked()["nats"]["url"] == "nats://alice:**********@host:4222,nats://b:4222"


def test_redact_url_leaves_plain_urls_alone() -> None:
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert redact_url("tls://u:p@h:1") == "tls://u:**********@h:1"


def test_connect_options_cover_every_auth_method(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = NatsSettings(
        url="nats://a:4222, nats://b:4222",
        user="u",
        password="p",
        token="t",
        nkey_seed_file=tmp_path / "seed.nk",
        creds_file=tmp_path / "user.creds",
        tls_ca_file=cert,
        tls_cert_file=cert,
        tls_key_file=key,
    )
    options = connect_options(settings)
    assert options["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert (options["user"], options["password"], options["token"]) == ("u", "p", "t")
    assert options["nkeys_seed"] == str(tmp_path / "seed.nk")
    assert options["user_credentials"] == str(tmp_path / "user.creds")
    assert isinstance(options["tls"], ssl.SSLContext)
    assert options["max_reconnect_attempts"] == -1
