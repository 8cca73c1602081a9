"""The settings of the alert semantics (Contract v1.1): their names and defaults, TOML and
environment forms, and one clear line naming the setting for every bad value."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from watcher.rules import Rules
from watcher.settings import ConfigError, load_settings
from watcher.snapshot import JobState

WINDOW = {"name": "nightly", "match": {}, "start": "22:00", "end": "02:00"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


ROOT = Path(__file__).resolve().parents[2]


def test_the_example_configs_alert_settings_are_valid_once_uncommented(tmp_path: Path) -> None:
    """The example keeps them commented out (they are examples); uncommented, they load."""
    text = (ROOT / "config" / "watcher.example.toml").read_text()
    lines = []
    section = ""
    for line in text.splitlines():
        if line.startswith("["):  # a section of the file itself (not a commented-out one)
            section = line.strip("[] ")
        key = line.removeprefix("# ").split(" ", 1)[0]
        if section in ("rules", "nats") and key in (
            "[[rules.overrides]]",
            "[[rules.maintenance]]",
            "match",
            "delay_thresholds",
            "repeat_interval",
            "stall_after",
            "delay_for_cycles",
            "name",
            "weekdays",
            "start",
            "end",
            "timezone",
            "flap_threshold",
            "flap_window",
            "expiry_warnings",
            "silence_bucket",
        ):
            line = line.removeprefix("# ")
        lines.append(line)
    config = tmp_path / "example.toml"
    config.write_text("\n".join(lines))
    settings = load_settings(config)
    assert [o.match.describe() for o in settings.rules.overrides] == [
        "tag:env=test",
        "job_name=orders-* region=cn-hangzhou",
    ]
    assert settings.rules.maintenance[0].silence_id == "maintenance:orders-patching"
    assert (
        settings.rules.stall_after == 600 and settings.nats.silence_bucket == "dts_watcher_silences"
    )


def test_defaults_are_the_contracts() -> None:
    settings = load_settings()
    rules = settings.rules
    assert (rules.stall_after, rules.repeat_interval) == (600, 14400)
    assert (rules.flap_threshold, rules.flap_window) == (6, 3600)
    assert rules.expiry_warnings == [7, 1]
    assert rules.overrides == [] and rules.maintenance == []
    assert settings.nats.silence_bucket == "dts_watcher_silences"


def test_environment_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_RULES__STALL_AFTER", "120")
    monkeypatch.setenv("DTS_WATCHER_RULES__REPEAT_INTERVAL", "0")
    monkeypatch.setenv("DTS_WATCHER_RULES__FLAP_THRESHOLD", "4")
    monkeypatch.setenv("DTS_WATCHER_RULES__FLAP_WINDOW", "600")
    monkeypatch.setenv("DTS_WATCHER_RULES__EXPIRY_WARNINGS", "[1, 14, 3]")
    monkeypatch.setenv(
        "DTS_WATCHER_RULES__OVERRIDES",
        json.dumps([{"match": {"tags": {"env": "test"}}, "delay_thresholds": {"warning": 900}}]),
    )
    monkeypatch.setenv("DTS_WATCHER_RULES__MAINTENANCE", json.dumps([WINDOW]))
    monkeypatch.setenv("DTS_WATCHER_NATS__SILENCE_BUCKET", "ops_silences")
    settings = load_settings()
    rules = settings.rules
    assert (rules.stall_after, rules.repeat_interval, rules.flap_threshold) == (120, 0, 4)
    assert rules.expiry_warnings == [14, 3, 1]
    assert rules.overrides[0].delay_thresholds == {"warning": 900}
    assert rules.maintenance[0].silence_id == "maintenance:nightly"
    assert rules.maintenance[0].weekdays == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert settings.nats.silence_bucket == "ops_silences"


def test_toml_forms(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text(
        """
[rules]
stall_after = 300

[[rules.overrides]]
match = { job_name = "test-*" }
delay_thresholds = { warning = 600, critical = 3600 }
repeat_interval = 0

[[rules.overrides]]
match = { region = "cn-beijing", tags = { tier = "gold" } }
stall_after = 120
delay_for_cycles = 3

[[rules.maintenance]]
name = "sunday-upgrades"
match = { account = "prod", job_type = "sync" }
weekdays = ["Sunday"]
start = "01:00"
end = "05:30"
timezone = "Asia/Shanghai"
"""
    )
    rules = load_settings(config).rules
    assert [o.values() for o in rules.overrides] == [
        {"delay_thresholds": {"warning": 600, "critical": 3600}, "repeat_interval": 0},
        {"stall_after": 120, "delay_for_cycles": 3},
    ]
    window = rules.maintenance[0]
    assert (window.weekdays, window.start, window.end) == (["sun"], "01:00", "05:30")
    built = Rules(rules)
    test_job = JobState("cn-hangzhou", "j", "Forward", "test-orders", "Synchronizing")
    assert built.for_job(test_job).judges[3].names == ["warning", "critical"]  # type: ignore[attr-defined]
    assert built.for_job(test_job) is not built.default


@pytest.mark.parametrize(
    ("env", "value", "named", "says"),
    [
        ("DTS_WATCHER_RULES__STALL_AFTER", "-1", "rules.stall_after", "greater than or equal"),
        ("DTS_WATCHER_RULES__REPEAT_INTERVAL", "soon", "rules.repeat_interval", "number"),
        ("DTS_WATCHER_RULES__FLAP_THRESHOLD", "1", "rules.flap_threshold", "every change"),
        ("DTS_WATCHER_RULES__FLAP_WINDOW", "0", "rules.flap_window", "greater than 0"),
        ("DTS_WATCHER_RULES__EXPIRY_WARNINGS", "[7, 0]", "rules.expiry_warnings", "positive"),
        ("DTS_WATCHER_RULES__EXPIRY_WARNINGS", "7", "rules.expiry_warnings", "list"),
        (
            "DTS_WATCHER_RULES__OVERRIDES",
            '[{"match": {"colour": "red"}, "stall_after": 5}]',
            "rules.overrides.0.match.colour",
            "unknown setting",
        ),
        (
            "DTS_WATCHER_RULES__OVERRIDES",
            '[{"match": {"job_name": "a[b"}, "stall_after": 5}]',
            "rules.overrides.0.match.job_name",
            "never closed",
        ),
        (
            "DTS_WATCHER_RULES__OVERRIDES",
            '[{"match": {"region": "cn-hangzhou"}}]',
            "rules.overrides.0",
            "must set one of",
        ),
        (
            "DTS_WATCHER_RULES__OVERRIDES",
            '[{"match": {}, "stall_after": "10m"}]',
            "rules.overrides.0.stall_after",
            "number",
        ),
        (
            "DTS_WATCHER_RULES__OVERRIDES",
            '[{"match": {}, "delay_thresholds": {"ok": 5}}]',
            "rules.overrides.0.delay_thresholds",
            "cannot name a delay level",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([{**WINDOW, "timezone": "Europe/Atlantis"}]),
            "rules.maintenance.0.timezone",
            "time zone",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([{**WINDOW, "weekdays": ["mon", "someday"]}]),
            "rules.maintenance.0.weekdays",
            "not a weekday",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([{**WINDOW, "start": "22h"}]),
            "rules.maintenance.0.start",
            "HH:MM",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([{**WINDOW, "match": {"job_type": "etl"}}]),
            "rules.maintenance.0.match.job_type",
            "sync",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([{k: v for k, v in WINDOW.items() if k != "match"}]),
            "rules.maintenance.0.match",
            "required",
        ),
        (
            "DTS_WATCHER_RULES__MAINTENANCE",
            json.dumps([WINDOW, WINDOW]),
            "rules",
            "defined twice",
        ),
        ("DTS_WATCHER_RULES__MAINTENANCE", "{not json", "rules.maintenance", "JSON"),
        ("DTS_WATCHER_NATS__SILENCE_BUCKET", "my.silences", "nats.silence_bucket", "name"),
    ],
)
def test_bad_values_name_the_setting_and_its_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str, says: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"invalid setting {named}" in message, message
    assert env in message or named == "rules", message
    assert says in message, message
    assert "\n" not in message
