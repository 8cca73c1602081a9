"""deploy/: the Grafana dashboard and the Prometheus rules, held to what the watcher exports.

An operator imports the dashboard and loads the rules; a query that names a metric or a
label the watcher does not export draws an empty panel or an alert that never fires, and
nobody notices until the day it mattered. So:

- every PromQL expression (each alert, each panel target, each variable's inner query)
  parses with a real PromQL parser (`promql-parser`, Prometheus's grammar in Rust);
- walking each parsed expression, every metric and label it uses is one a running watcher
  (the simulator and a real nats-server, a scenario with events, faults and delays)
  exposes on /metrics; every non-negated selector selects at least one real series; rate()
  and increase() take only counters; grouping labels exist where they are grouped; and the
  labels a legend (`{{region}}`) or an annotation (`$labels.region`) shows survive the
  expression's aggregations;
- the dashboard is what `deploy/grafana/build_dashboard.py` builds with Grafana's Foundation
  SDK, round-trips through the SDK's models (generated from Grafana's dashboard schema)
  without losing a key, has values of the types those models declare (enums, numbers),
  and is laid out the way Grafana shows rows;
- every alert has a `for:`, a severity and annotations that say what to do, and
  `promtool` (where installed) accepts the rules and passes their unit tests.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import os
import re
import shutil
import subprocess
import types
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import promql_parser as pp
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as grafana
from prometheus_client.parser import text_string_to_metric_families

from dts_sim import Simulator
from dts_sim.natsserver import NatsServer
from tests.support.watcher import make_settings, wait_until
from watcher.http import serve_http
from watcher.service import open_watcher
from watcher.settings import PollSettings, RulesSettings
from watcher.settings.alerting import Matcher
from watcher.silence_bucket import SilenceBucket
from watcher.silencing import Silence

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = ROOT / "deploy" / "grafana"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = GRAFANA_DIR / "dts-watcher.json"
BUILDER = GRAFANA_DIR / "build_dashboard.py"
RULES = PROMETHEUS_DIR / "dts-watcher.rules.yaml"
RULE_TESTS = PROMETHEUS_DIR / "dts-watcher.rules.test.yaml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"

# Labels Prometheus attaches to every series it scrapes (target labels), and the series it
# writes itself for each target: neither is on /metrics.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
# Grafana's interval variables, as Grafana fills them in before Prometheus sees a query.
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
COUNTER_FUNCTIONS = frozenset({"rate", "increase", "irate", "resets"})
SCALAR_FUNCTIONS = frozenset({"time", "scalar", "pi"})


# -- the expressions in deploy/ ----------------------------------------------------------


@dataclass(frozen=True)
class Query:
    where: str  # "alert DtsWatcherDown", "panel 'Jobs by status' A", "variable region"
    promql: str  # as Prometheus receives it (Grafana's variables filled in)
    shows: frozenset[str] = frozenset()  # labels the text around it prints


def load_dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def fill_in_variables(text: str, variables: set[str]) -> str:
    """A Grafana query as Prometheus gets it. The dashboard's own variables are regex
    label filters whose "All" is `.*`; an unknown `$name` is left in place to fail."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_INTERVALS:
            return GRAFANA_INTERVALS[name]
        return ".*" if name in variables else match.group(0)

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, text)


def legend_labels(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        # Grafana's label_values(SELECTOR, LABEL): not PromQL itself, its first part is.
        found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"].strip())
        assert found, f"variable {variable['name']}: not a label_values() query"
        queries.append(
            Query(
                f"variable {variable['name']}",
                fill_in_variables(found.group(1), variables),
                frozenset({found.group(2)}),
            )
        )
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            queries.append(
                Query(
                    f"panel {panel['title']!r} {target['refId']}",
                    fill_in_variables(target["expr"], variables),
                    legend_labels(target.get("legendFormat", "")),
                )
            )
    return queries


def rule_queries(rules: list[dict[str, Any]]) -> list[Query]:
    queries = []
    for rule in rules:
        texts = " ".join(rule.get("annotations", {}).values())
        shown = frozenset(re.findall(r"\$labels\.(\w+)", texts))
        queries.append(Query(f"alert {rule['alert']}", rule["expr"], shown))
    return queries


QUERIES = dashboard_queries(load_dashboard()) + rule_queries(load_rules())


# -- what a watcher exposes --------------------------------------------------------------


@dataclass
class Exposition:
    """/metrics as Prometheus stores it: series by sample name (`_total`, `_bucket`, ...)."""

    series: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    counters: set[str] = field(default_factory=set)  # samples rate() may take
    families: dict[str, set[str]] = field(default_factory=dict)  # family -> its samples

    @classmethod
    def parse(cls, text: str) -> Exposition:
        out = cls()
        for family in text_string_to_metric_families(text):
            names = out.families.setdefault(family.name, set())
            for sample in family.samples:
                names.add(sample.name)
                out.series.setdefault(sample.name, []).append(dict(sample.labels))
                if (family.type == "counter" and sample.name.endswith("_total")) or (
                    family.type == "histogram"
                    and sample.name.endswith(("_bucket", "_sum", "_count"))
                ):
                    out.counters.add(sample.name)
        return out

    def labels(self, name: str) -> frozenset[str]:
        if name in PROMETHEUS_SERIES:
            return PROMETHEUS_SERIES[name]
        return frozenset(k for s in self.series.get(name, []) for k in s) | TARGET_LABELS


def matches(matcher: pp.Matcher, labels: dict[str, str]) -> bool:
    value = labels.get(matcher.name, "")  # an absent label matches as ""
    if matcher.op == pp.MatchOp.Equal:
        return value == matcher.value
    if matcher.op == pp.MatchOp.NotEqual:
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None  # PromQL regexes are anchored
    return found if matcher.op == pp.MatchOp.Re else not found


Labels = frozenset[str] | None  # the labels an expression's result can carry; None: a scalar


class Checker:
    """Walks a parsed expression; collects what does not fit a real exposition."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition
        self.problems: list[str] = []
        self.metrics: set[str] = set()  # sample names the expression reads

    def visit(self, node: pp.Expr) -> Labels:
        if isinstance(node, pp.VectorSelector):
            return self.selector(node)
        if isinstance(node, pp.MatrixSelector):
            return self.selector(node.vector_selector)
        if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
            return self.visit(node.expr)
        if isinstance(node, pp.NumberLiteral | pp.StringLiteral):
            return None
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        raise AssertionError(f"a PromQL node this check does not know: {type(node).__name__}")

    def names(self, selector: pp.VectorSelector) -> list[str]:
        if selector.name is not None:
            return [selector.name]
        known = [*self.exposition.series, *PROMETHEUS_SERIES]
        names: list[str] = []
        for m in selector.matchers.matchers:
            if m.name == "__name__":
                names += [n for n in known if matches(m, {"__name__": n})]
        if not names:
            self.problems.append(f"{selector}: its __name__ matcher names no exposed metric")
        return names

    def selector(self, selector: pp.VectorSelector) -> Labels:
        if selector.matchers.or_matchers:
            self.problems.append(f"{selector}: `or` matchers are not checked here")
        matchers = [m for m in selector.matchers.matchers if m.name != "__name__"]
        labels: frozenset[str] = frozenset()
        for name in self.names(selector):
            self.metrics.add(name)
            if name not in self.exposition.series and name not in PROMETHEUS_SERIES:
                self.problems.append(f"{name}: a running watcher exposes no such series")
                continue
            known = self.exposition.labels(name)
            labels |= known
            for m in matchers:
                if m.name not in known:
                    self.problems.append(f"{name}: has no label {m.name!r} ({sorted(known)})")
            if name in PROMETHEUS_SERIES:
                continue
            own = [m for m in matchers if m.name not in TARGET_LABELS]
            if not any(all(matches(m, s) for m in own) for s in self.exposition.series[name]):
                self.problems.append(f"{selector}: selects none of the series a watcher exposed")
        return labels

    def call(self, node: pp.Call) -> Labels:
        name = node.func.name
        args = [self.visit(arg) for arg in node.args]
        if name in COUNTER_FUNCTIONS:
            for arg in node.args:
                if isinstance(arg, pp.MatrixSelector):
                    for metric in self.names(arg.vector_selector):
                        if metric in self.exposition.series and metric not in (
                            self.exposition.counters
                        ):
                            self.problems.append(f"{name}() of {metric}, which is no counter")
        if name in SCALAR_FUNCTIONS:
            return None
        if name == "vector":
            return frozenset()
        vectors = [a for a in args if a is not None]
        result = vectors[0] if vectors else frozenset()
        if name == "histogram_quantile":
            if "le" not in result:
                self.problems.append("histogram_quantile() of something without an `le` label")
            return result - {"le"}
        if name in ("label_replace", "label_join"):
            target = node.args[1]
            assert isinstance(target, pp.StringLiteral)
            return result | {target.val}
        return result

    def aggregate(self, node: pp.AggregateExpr) -> Labels:
        inner = self.visit(node.expr)
        if node.param is not None:
            self.visit(node.param)
        op = str(node.op)
        if inner is None:
            self.problems.append(f"{op}() of a scalar")
            return frozenset()
        modifier = node.modifier
        listed = list(modifier.labels) if modifier is not None else []
        for label in listed:
            if label not in inner:
                self.problems.append(
                    f"{op} by/without ({label}): no {label!r} on what it aggregates "
                    f"({sorted(inner)})"
                )
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner  # they pick series, keeping every label
        if modifier is None:
            result: frozenset[str] = frozenset()
        elif modifier.type == pp.AggModifierType.By:
            result = frozenset(listed)
        else:
            result = inner - set(listed)
        if op == "count_values" and isinstance(node.param, pp.StringLiteral):
            result |= {node.param.val}
        return result

    def binary(self, node: pp.BinaryExpr) -> Labels:
        lhs, rhs = self.visit(node.lhs), self.visit(node.rhs)
        if lhs is None or rhs is None:
            return rhs if lhs is None else lhs
        op = str(node.op)
        modifier = node.modifier
        matching = modifier.matching if modifier is not None else None
        if matching is not None:
            for label in matching.labels:
                for side, labels in (("left", lhs), ("right", rhs)):
                    if label not in labels:
                        self.problems.append(f"{op} on/ignoring ({label}): not on the {side}")
        group = list(modifier.group_labels or []) if modifier is not None else []
        if group:
            assert modifier is not None
            one = rhs if modifier.card == pp.VectorMatchCardinality.ManyToOne else lhs
            for label in group:
                if label not in one:
                    self.problems.append(f"group_left/right ({label}): not on the one side")
        if op == "or":
            return lhs | rhs
        if op in ("and", "unless") or matching is None:
            return lhs | frozenset(group)
        if matching.type == pp.LabelModifierType.Include and not group:
            return frozenset(matching.labels)
        if matching.type == pp.LabelModifierType.Exclude:
            return lhs - set(matching.labels)
        return lhs | frozenset(group)


def check(query: Query, exposition: Exposition) -> tuple[list[str], set[str]]:
    checker = Checker(exposition)
    labels = checker.visit(pp.parse(query.promql)) or frozenset()
    for label in sorted(query.shows - labels):
        checker.problems.append(
            f"shows {label!r}, which its result does not carry ({sorted(labels)})"
        )
    return checker.problems, checker.metrics


# -- a real watcher, scraped ---------------------------------------------------------------


async def scrape_after_a_scenario(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> str:
    """/metrics of a real watcher after two cycles that make every kind of series the
    queries read: jobs in several statuses, delays over both thresholds, a throttled and a
    refused request, an incomplete cycle, a region unavailable then recovered, published
    events."""
    for job in (
        {"id": "j1", "region": "cn-hangzhou", "name": "orders", "delay": 75},
        {"id": "j2", "region": "cn-hangzhou", "name": "crm", "status": "Failed", "delay": 0},
        {"id": "j3", "region": "cn-hangzhou", "name": "pay", "delay": 400},
        {"id": "s1", "region": "cn-shanghai", "name": "ledger", "delay": 2},
    ):
        simulator.add_job(job)
    simulator.inject({"kind": "throttle", "region": "cn-hangzhou", "count": 1, "retry_after_ms": 0})
    simulator.inject({"kind": "forbidden", "region": "cn-shanghai", "count": 1})
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        ["cn-hangzhou", "cn-shanghai"],
        health={"unavailable_after": 1, "heartbeat_interval": 0},
    )
    now = datetime.now(UTC)  # the silence is active from now on, whatever the date
    async with SilenceBucket.open(settings.nats, create=True) as bucket:
        await bucket.add(
            Silence(
                id=str(uuid.uuid4()),
                match=Matcher(job_id="j2"),
                start=now - timedelta(minutes=1),
                end=now + timedelta(hours=1),
                author="test",
                comment="a silence, so dts_watcher_silence_active has a series",
            )
        )
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        assert await watcher.read_silences(within=10)
        port = await tg.start(serve_http, watcher.status, watcher.metrics, "127.0.0.1", 0)
        first = await watcher.cycle()  # cn-shanghai refused: source_unavailable
        second = await watcher.cycle()  # read again: source_recovered
        assert (first.complete, second.complete) == (False, True)
        assert await watcher.flush(within=10.0)
        # A record without a job id: the simulator cannot serve one (its jobs need an
        # id), so count one the way the client does when it skips such a record.
        watcher.client.stats.skipped_records["cn-hangzhou"] += 1
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        tg.cancel_scope.cancel()
    assert response.status_code == 200
    return response.text


async def scrape_a_replica(tmp_path: Path, nats_server: NatsServer, simulator: Simulator) -> str:
    """/metrics of a watcher in cluster mode (one replica, on the lone test server), once
    it holds its shard: the series that only several replicas export."""
    settings = make_settings(
        tmp_path,
        nats_server.url,
        simulator.url,
        ["cn-hangzhou"],
        cluster={"enabled": True, "member": "dashboard-0", "lease_ttl": 3},
        health={"heartbeat_interval": 0},
    )
    async with open_watcher(settings) as watcher, anyio.create_task_group() as tg:
        port = await tg.start(serve_http, watcher.status, watcher.metrics, "127.0.0.1", 0)
        stop, stopped = anyio.Event(), anyio.Event()

        async def run() -> None:
            await watcher.run(stop, handle_signals=False)
            stopped.set()

        tg.start_soon(run)
        await wait_until(lambda: (watcher.status.shards_held() or 0) >= 1)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        stop.set()
        await stopped.wait()  # its shard given up cleanly
        tg.cancel_scope.cancel()  # the HTTP endpoint
    assert response.status_code == 200
    return response.text


@pytest.mark.anyio
@pytest.mark.integration
async def test_every_query_uses_only_what_a_running_watcher_exports(
    tmp_path: Path, nats_server: NatsServer, simulator: Simulator
) -> None:
    exposition = Exposition.parse(await scrape_after_a_scenario(tmp_path, nats_server, simulator))
    replica = Exposition.parse(await scrape_a_replica(tmp_path, nats_server, simulator))
    for name in replica.families.keys() - exposition.families.keys():  # cluster mode's own
        exposition.families[name] = replica.families[name]
        for sample in replica.families[name]:
            exposition.series[sample] = replica.series[sample]
    problems = []
    shown: set[str] = set()
    for query in QUERIES:
        found, metrics = check(query, exposition)
        problems += [f"{query.where}: {problem}" for problem in found]
        if query.where.startswith("panel"):
            shown |= metrics
    assert not problems, "\n".join(problems)
    # The operator's picture is whole: each metric family the watcher exports is drawn
    # (the `_created` gauges beside counters and histograms are their start times).
    undrawn = sorted(
        family
        for family, samples in exposition.families.items()
        if family.startswith("dts_watcher_")
        and not family.endswith("_created")
        and not samples & shown
    )
    assert not undrawn, f"no dashboard panel shows {undrawn}: add one in {BUILDER.name}"


def test_the_check_finds_a_wrong_metric_a_wrong_label_and_a_lost_label() -> None:
    """The checker itself, against a small exposition: each mistake is named."""
    exposition = Exposition.parse(
        "# TYPE dts_watcher_jobs gauge\n"
        'dts_watcher_jobs{region="cn-hangzhou",status="Failed"} 1\n'
        "# TYPE dts_watcher_cycles counter\n"
        'dts_watcher_cycles_total{result="complete"} 3\n'
    )

    def problems(promql: str, shows: frozenset[str] = frozenset()) -> list[str]:
        return check(Query("test", promql, shows), exposition)[0]

    assert problems('sum by (region) (dts_watcher_jobs{status="Failed"})', frozenset({"status"}))
    assert not problems('sum by (region) (dts_watcher_jobs{status="Failed"})')
    assert not problems("sum by (region) (dts_watcher_jobs)", frozenset({"region"}))
    assert problems("dts_watcher_job")  # no such metric
    assert problems("dts_watcher_cycles")  # the counter is stored as _total
    assert problems('dts_watcher_jobs{state="Failed"}')  # no such label
    assert problems('dts_watcher_jobs{status="Falied"}')  # selects nothing
    assert problems("sum by (account) (dts_watcher_jobs)")  # no such label to group by
    assert problems("sum by (region) (sum by (status) (dts_watcher_jobs))")  # lost on the way
    assert problems("rate(dts_watcher_jobs[5m])")  # rate() of a gauge
    assert problems("sum by (region) (dts_watcher_jobs)", frozenset({"status"}))  # legend
    assert not problems('{__name__="dts_watcher_cycles_total", result="complete"}')
    assert problems('{__name__=~"dts_watcher_nothing.*"}')
    assert not problems('up{job="dts-watcher"} == 0', frozenset({"instance"}))


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_every_expression_parses_as_promql(query: Query) -> None:
    assert "$" not in query.promql, f"a Grafana variable the dashboard does not define: {query}"
    pp.parse(query.promql)  # raises ValueError with the position of the mistake


def test_the_parser_refuses_what_prometheus_refuses() -> None:
    for wrong in ("sum by (region (dts_watcher_jobs)", "rate(dts_watcher_cycles_total)", "a >"):
        with pytest.raises(ValueError):
            pp.parse(wrong)


# -- the dashboard -----------------------------------------------------------------------


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def round_trip(document: dict[str, Any]) -> dict[str, Any]:
    """The dashboard read into Grafana's models (Foundation SDK) and written out again: a
    key the schema does not know is dropped, so anything but an identical result is a
    key Grafana would not understand."""
    model = dashboard_model(document)  # panel options and queries get their own models
    again: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return again


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{path}.{key}: dropped")
            elif key not in a:
                out.append(f"{path}.{key}: added")
            else:
                out += differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} became {b!r}"]


def schema_errors(value: Any, hint: Any, path: str) -> list[str]:
    """Where `value` is not of the type the SDK's model declares (`hint`): its models are
    generated from Grafana's schema, and from_json keeps whatever values it is given."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if value is None or a is not type(None)]
        options = [a for a in options if isinstance(a, type) and type(value) is a] or options
        tries = [schema_errors(value, option, path) for option in options]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if hint is Any or hint is object:  # panel options: a plugin's own model, or free
        return model_errors(value, path) if hasattr(value, "to_json") else []
    if value is None:
        return [] if hint is type(None) else [f"{path}: null, the schema wants {hint}"]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is none of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [e for i, v in enumerate(value) for e in schema_errors(v, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        return [e for k, v in value.items() for e in schema_errors(v, args[1], f"{path}.{k}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        ok = isinstance(value, hint) or value in {member.value for member in hint}
        return [] if ok else [f"{path}: {value!r} is not a {hint.__name__}"]
    if isinstance(hint, type) and isinstance(value, dict) and hasattr(hint, "from_json"):
        # Left raw by the SDK's decoder (transformations): decode and check it here.
        model = hint.from_json(value)
        kept = json.loads(json.dumps(model, cls=JSONEncoder))
        unknown = [f"{path}.{key}: not in the schema" for key in value if key not in kept]
        return unknown + model_errors(model, path)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(hint, type):
        if isinstance(value, hint) and hasattr(value, "to_json"):
            return model_errors(value, path)
        ok = isinstance(value, hint)
    else:
        return []
    return [] if ok else [f"{path}: {value!r}, the schema wants {hint}"]


def model_errors(model: Any, path: str = "") -> list[str]:
    hints = typing.get_type_hints(type(model))
    return [
        error
        for name, hint in hints.items()
        for error in schema_errors(getattr(model, name), hint, f"{path}.{name}")
    ]


def dashboard_model(document: dict[str, Any]) -> grafana.Dashboard:
    register_default_plugins()
    return grafana.Dashboard.from_json(document)


def test_the_builder_gives_exactly_the_committed_dashboard() -> None:
    builder = load_builder()
    assert builder.render(builder.build()) == DASHBOARD.read_text(encoding="utf-8"), (
        "deploy/grafana/dts-watcher.json is stale: run "
        ".venv/bin/python deploy/grafana/build_dashboard.py -o deploy/grafana/dts-watcher.json"
    )


def test_the_dashboard_round_trips_through_grafanas_models() -> None:
    document = load_dashboard()
    assert not differences(document, round_trip(document))


@pytest.mark.parametrize(
    ("where", "mistake"),
    [
        ("dashboard", lambda d: d.update(refresh_rate="30s")),
        ("panel", lambda d: d["panels"][1].update(fieldconfig={})),
        ("field config", lambda d: d["panels"][1]["fieldConfig"]["defaults"].update(units="s")),
        ("stat options", lambda d: d["panels"][1]["options"].update(colourMode="background")),
        ("query", lambda d: d["panels"][1]["targets"][0].update(expression="up")),
        ("variable", lambda d: d["templating"]["list"][1].update(multiple=True)),
    ],
)
def test_the_round_trip_notices_a_key_grafana_does_not_know(where: str, mistake: Any) -> None:
    document = load_dashboard()
    mistake(document)
    assert differences(document, round_trip(document)), f"a misspelt key in the {where} passed"


def test_every_value_has_the_type_grafanas_models_declare() -> None:
    assert not model_errors(dashboard_model(load_dashboard()))


@pytest.mark.parametrize(
    ("where", "mistake"),
    [
        ("enum", lambda d: d["panels"][1]["options"].update(colorMode="loud")),
        ("number", lambda d: d["panels"][1]["fieldConfig"]["defaults"].update(decimals="2")),
        (
            "threshold",
            lambda d: d["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["steps"][1].update(
                value="60"
            ),
        ),
        ("cursor sync", lambda d: d.update(graphTooltip=7)),
        ("transformation", lambda d: d["panels"][9]["transformations"][0].update(opts={})),
    ],
)
def test_the_type_check_notices_a_value_grafana_does_not_take(where: str, mistake: Any) -> None:
    document = load_dashboard()
    mistake(document)
    assert model_errors(dashboard_model(document)), f"a wrong {where} passed"


def test_the_dashboard_is_laid_out_as_grafana_shows_it() -> None:
    document = load_dashboard()
    panels = list(all_panels(document))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids) and 0 not in ids
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        if panel["type"] == "row":
            # An expanded row's panels follow it; panels inside it would not be shown.
            assert panel["collapsed"] or not panel["panels"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs) and "" not in refs, panel["title"]
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item:
                assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        if panel["type"] != "row":
            assert panel["title"] and panel["description"], panel


def test_the_dashboard_and_rules_assume_the_watchers_defaults() -> None:
    """The delay lines, `10 * 30` and `>= 300` are written for the default thresholds and
    poll interval; if the defaults move, deploy/ and the README must move with them."""
    builder = load_builder()
    assert RulesSettings().delay_thresholds == {
        "warning": builder.DEFAULT_WARNING,
        "critical": builder.DEFAULT_CRITICAL,
    }
    assert PollSettings().interval == 30
    delay_panel = next(p for p in all_panels(load_dashboard()) if p["title"].startswith("Delay"))
    steps = delay_panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 60, 300]
    exprs = {rule["alert"]: rule["expr"] for rule in load_rules()}
    assert "> 10 * 30" in exprs["DtsWatcherNoCompleteCycle"]
    assert exprs["DtsJobDelayCritical"].endswith(">= 300")


# -- the alerting rules ------------------------------------------------------------------


def test_every_alert_has_a_severity_a_delay_and_says_what_to_do() -> None:
    rules = load_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        pp.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert len(rule["annotations"]["description"]) > 100, rule["alert"]


def test_the_scrape_config_loads_the_rules_and_names_the_job_they_watch() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert [PROMETHEUS_DIR / f for f in config["rule_files"]] == [RULES]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    for rule in load_rules():
        for job in re.findall(r'\bjob="([^"]+)"', rule["expr"]):
            assert job in jobs, rule["alert"]


def _promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["check", "rules", RULES.name],
        ["check", "config", PROMETHEUS_CONFIG.name],
        ["test", "rules", RULE_TESTS.name],
    ],
    ids=["check rules", "check config", "test rules"],
)
def test_promtool_accepts_the_rules_and_their_unit_tests(command: list[str]) -> None:
    result = subprocess.run(
        [_promtool(), *command],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
