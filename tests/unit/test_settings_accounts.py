"""Settings of all of DTS: the API, job types, and accounts (environment and TOML)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from watcher.settings import ConfigError, load_settings

ARN = "acs:ram::1234567890123456:role/dts-watcher"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


def test_without_accounts_the_default_account_reads_the_top_level_settings() -> None:
    settings = load_settings(dts={"regions": ["cn-beijing"]})
    (account,) = settings.watched_accounts()
    assert account.name == "default" and account.regions == ["cn-beijing"]
    assert account.api == "DescribeSynchronizationJobs"  # the legacy default
    assert account.job_types == ["SYNC", "MIGRATION", "SUBSCRIBE"]


def test_api_and_job_types_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_DTS__API", "DescribeDtsJobs")
    monkeypatch.setenv("DTS_WATCHER_DTS__JOB_TYPES", '["sync", "Migration"]')
    settings = load_settings()
    assert settings.dts.api == "DescribeDtsJobs"
    assert settings.dts.job_types == ["SYNC", "MIGRATION"]


def test_accounts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_DTS__API", "DescribeDtsJobs")
    accounts = [
        {"name": "prod", "regions": ["cn-hangzhou"], "role_arn": ARN},
        {"name": "dev", "regions": ["cn-beijing"], "profile": "dev", "job_types": ["SYNC"]},
        {"name": "old", "regions": ["cn-beijing"], "api": "DescribeSynchronizationJobs"},
    ]
    monkeypatch.setenv("DTS_WATCHER_ACCOUNTS", json.dumps(accounts))
    resolved = {a.name: a for a in load_settings().watched_accounts()}
    assert resolved["prod"].api == "DescribeDtsJobs" and resolved["prod"].role_arn == ARN
    assert resolved["dev"].job_types == ["SYNC"] and resolved["dev"].profile == "dev"
    assert resolved["old"].api == "DescribeSynchronizationJobs"
    assert resolved["old"].role_arn is None and resolved["old"].profile is None


def test_accounts_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text(
        '[[accounts]]\nname = "prod"\nregions = ["cn-hangzhou"]\n'
        f'role_arn = "{ARN}"\n\n[[accounts]]\nname = "dev"\nregions = ["cn-beijing"]\n'
    )
    assert [a.name for a in load_settings(config).watched_accounts()] == ["prod", "dev"]


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ('[{"name": "a", "regions": ["cn-hangzhou"], "role_arn": "x"}]', "not a RAM role ARN"),
        (
            f'[{{"name": "a", "regions": ["cn-hangzhou"], "role_arn": "{ARN}", "profile": "p"}}]',
            "both role_arn and profile",
        ),
        (
            '[{"name": "a", "regions": ["cn-hangzhou"]}, {"name": "a", "regions": ["cn-beijing"]}]',
            "(or [[accounts]]): a repeated",
        ),
        ('[{"name": "a/b", "regions": ["cn-hangzhou"]}]', "not an account name"),
        ('[{"name": "a", "regions": []}]', "accounts.0.regions"),
        (
            '[{"name": "a", "regions": ["cn-hangzhou"], "job_types": ["SYNC", "sync"]}]',
            "more than once",
        ),
        ('[{"name": "a", "regions": ["cn-hangzhou"], "colour": "red"}]', "unknown setting"),
        ('[{"name": "a"', "accounts (DTS_WATCHER_ACCOUNTS): not valid JSON"),
    ],
)
def test_bad_accounts_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, accounts: str, message: str
) -> None:
    monkeypatch.setenv("DTS_WATCHER_ACCOUNTS", accounts)
    with pytest.raises(ConfigError, match="DTS_WATCHER_ACCOUNTS") as caught:
        load_settings()
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DTS_WATCHER_DTS__API", "DescribeEverything", "DTS_WATCHER_DTS__API"),
        ("DTS_WATCHER_DTS__JOB_TYPES", '["SYNC", "ETL"]', "DTS_WATCHER_DTS__JOB_TYPES"),
        ("DTS_WATCHER_DTS__JOB_TYPES", "[]", "DTS_WATCHER_DTS__JOB_TYPES"),
    ],
)
def test_bad_api_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()
