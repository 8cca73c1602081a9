"""The examples for more than one replica, checked without a cluster: the Kubernetes
manifests (deploy/kubernetes/) and the compose file with a three-node NATS cluster
(deploy/compose.cluster.yaml) parse, say what they must, and name only settings that
exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from watcher.settings import Settings
from watcher.settings.load import _AlibabaEnvSource

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.cluster.yaml"
RRSA = {
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for doc in documents(KUBERNETES / "dts-watcher.yaml"):
        found[doc["kind"]] = doc
    return found


def assert_setting_exists(name: str) -> None:
    section, _, key = name.removeprefix("DTS_WATCHER_").lower().partition("__")
    field = Settings.model_fields.get(section)
    assert field is not None, f"{name}: no section {section!r}"
    model = field.annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    assert key in model.model_fields, f"{name}: no setting {section}.{key}"


@pytest.mark.parametrize(
    "path",
    [
        KUBERNETES / "dts-watcher.yaml",
        KUBERNETES / "nats-values.yaml",
        KUBERNETES / "README.md",
        COMPOSE,
    ],
    ids=lambda p: p.name,
)
def test_every_setting_the_files_name_exists(path: Path) -> None:
    text = path.read_text()
    names = set(re.findall(r"\bDTS_WATCHER_[A-Z0-9_]+", text))
    for name in names:
        assert_setting_exists(name)
    for name in set(re.findall(r"\bALIBABA_CLOUD_[A-Z0-9_]+", text)):
        assert name in _AlibabaEnvSource.NAMES, f"{name} is not read by the watcher"


def test_the_deployment_runs_three_replicas_each_under_its_pods_name() -> None:
    deployment = manifests()["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DTS_WATCHER_CLUSTER__ENABLED"]["value"] == "true"
    member = env["DTS_WATCHER_CLUSTER__MEMBER"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert member == "metadata.name"
    for name in env:
        if name.startswith("DTS_WATCHER_"):
            assert_setting_exists(name)
    # Every value given is valid for the settings.
    values = {n: e["value"] for n, e in env.items() if "value" in e}
    given = _nested(values)
    given["cluster"]["member"] = "dts-watcher-7d9f8b6c4-x2kfp"  # what the downward API gives
    settings = Settings(**given)
    assert settings.cluster.enabled
    assert settings.warnings() == []  # nothing to say
    # Enough time on SIGTERM to finish a cycle and hand the leases over.
    ttl = float(values["DTS_WATCHER_CLUSTER__LEASE_TTL"])
    assert pod["terminationGracePeriodSeconds"] >= ttl + 30


def _nested(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    import json

    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith("DTS_WATCHER_") or name == "DTS_WATCHER_CLUSTER__MEMBER":
            continue
        section, _, key = name.removeprefix("DTS_WATCHER_").lower().partition("__")
        parsed: Any = json.loads(value) if value.startswith(("[", "{")) else value
        out.setdefault(section, {})[key] = parsed
    return out


def test_probes_resources_and_an_unprivileged_read_only_container() -> None:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert str(port) == env["DTS_WATCHER_HTTP__PORT"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    # The image's user (Dockerfile: USER 10001:10001).
    user = re.search(r"^USER (\d+):(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user.groups()
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"] is True
    assert own["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/dts-watcher", "/tmp"} <= mounts  # writable where it writes


def test_credentials_come_from_rrsa_not_an_access_key() -> None:
    found = manifests()
    text = (KUBERNETES / "dts-watcher.yaml").read_text()
    (container,) = found["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert not [e for e in container["env"] if "ACCESS_KEY" in e["name"]]
    assert "Secret" not in found
    labels = found["Namespace"]["metadata"]["labels"]
    assert labels["pod-identity.alibabacloud.com/injection"] == "on"
    annotations = found["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["pod-identity.alibabacloud.com/role-name"]
    pod = found["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == found["ServiceAccount"]["metadata"]["name"]
    # The webhook injects these; the watcher reads them (and nothing else needs setting).
    assert set(_AlibabaEnvSource.NAMES) >= RRSA
    for name in RRSA:
        assert name in text


def test_the_nats_values_ask_the_official_chart_for_three_jetstream_servers() -> None:
    (values,) = documents(KUBERNETES / "nats-values.yaml")
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["size"]
    assert "helm install nats nats/nats" in (KUBERNETES / "nats-values.yaml").read_text()


def test_the_compose_file_runs_a_three_node_nats_cluster_and_three_replicas() -> None:
    (compose,) = documents(COMPOSE)
    services = compose["services"]
    nodes = sorted(name for name in services if name.startswith("nats-"))
    watchers = sorted(name for name in services if name.startswith("watcher-"))
    assert len(nodes) == 3 and len(watchers) == 3
    for node in nodes:
        args = services[node]["command"]
        assert services[node]["image"].startswith("nats:")
        assert "--jetstream" in args and args[args.index("--server_name") + 1] == node
        assert args[args.index("--cluster_name") + 1] == "dts-watcher"
        routes = args[args.index("--routes") + 1].split(",")
        assert sorted(r.split("//")[1].split(":")[0] for r in routes) == [
            n for n in nodes if n != node
        ]
    members = set()
    for watcher in watchers:
        env = services[watcher]["environment"]
        assert env["DTS_WATCHER_CLUSTER__ENABLED"] == "true"
        urls = env["DTS_WATCHER_NATS__URL"].split(",")
        assert sorted(u.split("//")[1].split(":")[0] for u in urls) == nodes
        members.add(env["DTS_WATCHER_CLUSTER__MEMBER"])
        assert set(services[watcher]["depends_on"]) == set(nodes)
        for name in env:
            if name.startswith("DTS_WATCHER_"):
                assert_setting_exists(name)
    assert len(members) == 3  # one name per replica
    assert "\t" not in COMPOSE.read_text()
