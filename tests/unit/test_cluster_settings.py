"""The `[cluster]` settings and the checks of what cluster mode runs in (pure parts)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from watcher.cluster import checks
from watcher.settings import ClusterSettings, ConfigError, load_settings, settings_digest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DTS_WATCHER_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


def test_the_defaults_are_the_contracts() -> None:
    cluster = load_settings().cluster
    assert cluster.enabled is False
    assert cluster.member == f"{socket.gethostname()}-{os.getpid()}"
    assert cluster.lease_ttl == 15.0
    assert cluster.bucket == "dts_watcher_leases"
    assert cluster.replicas == 3
    assert (cluster.renew_interval, cluster.safety_margin) == (5.0, 3.0)


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTS_WATCHER_CLUSTER__ENABLED", "true")
    monkeypatch.setenv("DTS_WATCHER_CLUSTER__MEMBER", "dts-watcher-7d9f-x2")
    monkeypatch.setenv("DTS_WATCHER_CLUSTER__LEASE_TTL", "30")
    cluster = load_settings().cluster
    assert (cluster.enabled, cluster.member, cluster.lease_ttl) == (
        True,
        "dts-watcher-7d9f-x2",
        30.0,
    )


def test_the_config_file_sets_them(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[cluster]\nenabled = true\nmember = "a"\nbucket = "leases-b"\n')
    cluster = load_settings(config).cluster
    assert (cluster.enabled, cluster.member, cluster.bucket) == (True, "a", "leases-b")


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("DTS_WATCHER_CLUSTER__LEASE_TTL", "2"),
        ("DTS_WATCHER_CLUSTER__LEASE_TTL", "601"),
        ("DTS_WATCHER_CLUSTER__LEASE_TTL", "soon"),
        ("DTS_WATCHER_CLUSTER__MEMBER", "   "),
        ("DTS_WATCHER_CLUSTER__MEMBER", "pod 0"),
        ("DTS_WATCHER_CLUSTER__MEMBER", "x" * 129),
        ("DTS_WATCHER_CLUSTER__BUCKET", "a.b"),
        ("DTS_WATCHER_CLUSTER__REPLICAS", "0"),
        ("DTS_WATCHER_CLUSTER__ENABLED", "perhaps"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env):
        load_settings()


def test_a_member_name_is_trimmed() -> None:
    assert ClusterSettings(member="  pod-0 ").member == "pod-0"


def test_a_duplicate_window_shorter_than_a_ttl_and_a_cycle_is_a_warning_in_cluster_mode() -> None:
    values = {"nats": {"duplicate_window": 120}, "poll": {"interval": 110}}
    assert load_settings(**values).warnings() == []  # one replica: no failover to cover
    warnings = [w for w in load_settings(**values, cluster={"enabled": True}).warnings()]
    (short,) = [w for w in warnings if "duplicate_window" in w]
    for name in (
        "DTS_WATCHER_NATS__DUPLICATE_WINDOW",
        "DTS_WATCHER_CLUSTER__LEASE_TTL",
        "DTS_WATCHER_POLL__INTERVAL",
        "125 s",
    ):
        assert name in short
    defaults = load_settings(cluster={"enabled": True}).warnings()  # 300 >= 15 + 30
    assert not [w for w in defaults if "duplicate_window" in w]


def test_cluster_mode_with_the_defaults_says_nothing() -> None:
    assert load_settings(cluster={"enabled": True}).warnings() == []
    assert load_settings().cluster.state_bucket == "dts_watcher_state"


def test_the_state_and_leases_buckets_must_differ() -> None:
    """The leases bucket has a TTL: the state kept there would vanish."""
    with pytest.raises(ConfigError) as caught:
        load_settings(cluster={"enabled": True, "bucket": "b", "state_bucket": "b"})
    assert "state_bucket" in str(caught.value)


def test_replicas_sharing_a_configuration_share_its_digest() -> None:
    one = load_settings(cluster={"enabled": True, "member": "pod-0"})
    two = load_settings(cluster={"enabled": True, "member": "pod-1"})
    assert settings_digest(one) == settings_digest(two)
    assert settings_digest(one) != settings_digest(load_settings())


# --- checks of the surroundings (pure) ------------------------------------------------


def test_one_replica_on_a_cluster_is_a_warning_naming_the_setting() -> None:
    assert checks.replicas("bucket x", checks.REPLICAS, 1, clustered=False) == []
    assert checks.replicas("bucket x", checks.REPLICAS, 3, clustered=True) == []
    (finding,) = checks.replicas("bucket x", checks.REPLICAS, 1, clustered=True)
    assert finding.level == "warning"
    assert "DTS_WATCHER_CLUSTER__REPLICAS" in finding.message and "cluster" in finding.message
    (finding,) = checks.replicas(
        "stream DTS_EVENTS", "nats.stream_replicas (DTS_WATCHER_NATS__STREAM_REPLICAS)", 1, True
    )
    assert "DTS_WATCHER_NATS__STREAM_REPLICAS" in finding.message
    assert "--replicas 3" in finding.message


def test_fewer_replicas_than_asked_for_are_a_warning() -> None:
    assert checks.fewer_replicas("bucket x", 3, 3, "") == []
    (finding,) = checks.fewer_replicas("bucket x", 3, 1, "not clustered")
    assert "DTS_WATCHER_CLUSTER__REPLICAS" in finding.message and "has 1" in finding.message


def test_a_short_duplicate_window_on_the_stream_is_a_warning() -> None:
    setting = "nats.duplicate_window (DTS_WATCHER_NATS__DUPLICATE_WINDOW)"
    assert checks.duplicate_window("E", 120, 15, 30, setting=setting) == []
    (finding,) = checks.duplicate_window("E", 30, 15, 30, setting=setting)
    assert finding.level == "warning"
    for part in ("stream E", "30 s", "DTS_WATCHER_CLUSTER__LEASE_TTL", "--dupe-window 45s"):
        assert part in finding.message


def test_a_bucket_ttl_other_than_the_lease_ttl_is_an_error() -> None:
    assert checks.bucket_ttl("b", 15.0, 15.0) == []
    for have in (30.0, None, 0.0):
        (finding,) = checks.bucket_ttl("b", have, 15.0)
        assert finding.level == "error" and "DTS_WATCHER_CLUSTER__LEASE_TTL" in finding.message
