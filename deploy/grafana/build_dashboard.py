#!/usr/bin/env python3
"""Builds the dts-watcher Grafana dashboard (`dts-watcher.json` beside this file).

The dashboard is written with Grafana's own Foundation SDK (the PyPI package
`grafana-foundation-sdk`, generated from Grafana's dashboard schema), so its JSON has the
shape Grafana expects. The JSON is committed; regenerate it after editing this file:

    .venv/bin/python deploy/grafana/build_dashboard.py -o deploy/grafana/dts-watcher.json

`tests/integration/test_operator_dashboards.py` checks that this script gives exactly the
committed JSON, that the JSON round-trips through the SDK's models, and that every query
parses as PromQL and names only metrics and labels a running watcher exports.

Every query is built from the metrics in `watcher/metrics.py` and nothing else. Job
panels aggregate `by (region, status)` or by the per-job labels, never `without (...)`,
so a label added later (an `account`, say) adds detail without breaking a panel.

The delay thresholds drawn on the delay panels are the watcher's defaults (warning 60 s,
critical 300 s, `DTS_WATCHER_RULES__DELAY_THRESHOLDS`). Grafana cannot take a panel
threshold from a variable, so a watcher configured otherwise gets its own dashboard with
`--delay-warning SECONDS --delay-critical SECONDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import prometheus as prom_m

UID = "dts-watcher"
TITLE = "dts-watcher"
DEFAULT_WARNING = 60.0  # seconds; the watcher's default delay thresholds (settings.py)
DEFAULT_CRITICAL = 300.0
# Statuses DTS calls failures (watcher/detect.py FAILURE_STATUSES).
FAILURE_STATUSES = "Failed|PrecheckFailed|InitializeFailed"
TOP_DELAYS = 20  # jobs drawn on the delay graph (the largest delays at each step)

DS = dash.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Selectors every query narrows with: the watcher(s) picked, the region(s) picked.
WATCHER = 'instance=~"$instance"'
JOBS = 'instance=~"$instance", region=~"$region"'
RATE = "$__rate_interval"

# A row's title and the panels under it. Grafana shows an expanded row's panels after it
# in the dashboard's own list (only a collapsed row holds its panels), so `build` adds the
# row, then its panels, to the dashboard.
Section = tuple[str, list[Any]]


def _query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)


def _instant_table(expr: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .instant()
        .format(prom_m.PromQueryFormat.TABLE)
        .legend_format("__auto")
        .ref_id(ref)
        .datasource(DS)
    )


def _table() -> table.Panel:
    # Written out as Grafana's table model fills them in, so the JSON round-trips as is.
    return table.Panel().align(common.FieldTextAlignment.AUTO).inspect(False)


def _steps(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=value, color=color) for value, color in steps])
    )


def _legend(calcs: list[str] | None = None) -> common_b.VizLegendOptions:
    legend = (
        common_b.VizLegendOptions()
        .show_legend(True)
        .placement(common.LegendPlacement.BOTTOM)
        .display_mode(common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST)
    )
    return legend.calcs(calcs) if calcs else legend


def _graph(title: str, description: str, unit: str, *queries: prometheus.Dataquery) -> Any:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend())
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, description: str, unit: str, query: prometheus.Dataquery) -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(4)
        .span(4)
        .with_target(query)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )


def overview_row(warning: float, critical: float) -> Section:
    failed = f'dts_watcher_jobs{{{JOBS}, status=~"{FAILURE_STATUSES}"}}'
    return "Overview", [
        _stat(
            "Since the last complete cycle",
            "Time since every page of every region was last read (the age of what the "
            "job panels show). Empty: no complete cycle since the watcher started. Alert "
            "DtsWatcherNoCompleteCycle fires at 10 poll intervals.",
            "s",
            _query(
                f"time() - max(dts_watcher_last_complete_cycle_timestamp_seconds{{{WATCHER}}} > 0)"
            ),
        ).thresholds(_steps((None, "green"), (120, "orange"), (300, "red"))),
        _stat(
            "NATS",
            "Whether every picked watcher's publisher is connected to NATS. While it "
            "is not, events wait in the outbox.",
            "none",
            _query(f"min(dts_watcher_nats_connected{{{WATCHER}}})"),
        )
        .mappings(
            [
                dash.ValueMap(
                    options={
                        "0": dash.ValueMappingResult(text="disconnected", color="red"),
                        "1": dash.ValueMappingResult(text="connected", color="green"),
                    }
                )
            ]
        )
        .thresholds(_steps((None, "red"), (1, "green"))),
        _stat(
            "Outbox",
            "Events written but not yet acknowledged by JetStream. Normally 0 between "
            "cycles; a number that stays means events are not getting out.",
            "none",
            _query(f"sum(dts_watcher_outbox_depth{{{WATCHER}}})"),
        ).thresholds(_steps((None, "green"), (1, "orange"), (1000, "red"))),
        _stat(
            "Jobs",
            "DTS jobs in the last known state (each direction of a two-way "
            "synchronization counts once).",
            "none",
            _query(f"sum(dts_watcher_jobs{{{JOBS}}})"),
        ).thresholds(_steps((None, "blue"))),
        _stat(
            "Jobs failed",
            f"Jobs whose status is one DTS calls a failure ({FAILURE_STATUSES}).",
            "none",
            _query(f"sum({failed}) or vector(0)"),
        ).thresholds(_steps((None, "green"), (1, "red"))),
        _stat(
            "Jobs over the critical delay",
            f"Jobs whose synchronization delay is at least {critical:g} s (the critical "
            f"threshold); warning is {warning:g} s.",
            "none",
            _query(f"count(dts_watcher_job_delay_seconds{{{JOBS}}} >= {critical:g}) or vector(0)"),
        ).thresholds(_steps((None, "green"), (1, "red"))),
    ]


def jobs_row(warning: float, critical: float) -> Section:
    delay = f"dts_watcher_job_delay_seconds{{{JOBS}}}"
    per_job = f"max by (region, job_name, job_id, direction) ({delay})"
    return "Jobs", [
        _graph(
            "Jobs by status",
            "Jobs in the last known state, by status (summed over the picked regions). "
            "An unreadable region keeps its last known jobs.",
            "none",
            _query(f"sum by (status) (dts_watcher_jobs{{{JOBS}}})", "{{status}}"),
        ).stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)),
        _table()
        .title("Jobs by region and status, now")
        .description("One row per region and status, from the last complete listing.")
        .datasource(DS)
        .height(8)
        .span(12)
        .with_target(_instant_table(f"sum by (region, status) (dts_watcher_jobs{{{JOBS}}})"))
        .with_transformation(
            dash.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "jobs"},
                },
            )
        )
        .sort_by([common_b.TableSortByFieldState().display_name("region")]),
        _graph(
            f"Delay, the {TOP_DELAYS} largest",
            f"Synchronization delay per job. Dashed lines: warning {warning:g} s and "
            f"critical {critical:g} s, the watcher's delay thresholds (rebuild the "
            "dashboard with --delay-warning/--delay-critical if you changed them).",
            "s",
            _query(
                f"topk({TOP_DELAYS}, {per_job})",
                "{{region}} {{job_name}} ({{job_id}} {{direction}})",
            ),
        )
        .thresholds(_steps((None, "green"), (warning, "orange"), (critical, "red")))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
        .legend(_legend(["lastNotNull", "max"])),
        _table()
        .title("Jobs over the warning delay, now")
        .description(
            f"Every job whose delay is at least {warning:g} s right now, largest first. "
            "Jobs left out of the delay metric by its series cap are counted in "
            "dts_watcher_job_delay_series_dropped (panel 'Delay series dropped')."
        )
        .datasource(DS)
        .height(8)
        .span(12)
        .unit("s")
        .with_target(_instant_table(f"sort_desc({per_job} >= {warning:g})"))
        .thresholds(_steps((None, "green"), (warning, "orange"), (critical, "red")))
        .with_transformation(
            dash.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "delay"},
                },
            )
        ),
    ]


def events_row() -> Section:
    events = f"dts_watcher_events_total{{{WATCHER}}}"
    return "Events", [
        _graph(
            "Events by kind and severity",
            "Events written to the outbox, per minute, by kind and severity (job events "
            "and the watcher's own: cycle_incomplete, source_unavailable, heartbeat...).",
            "opm",
            _query(
                f"60 * sum by (kind, severity) (rate({events}[{RATE}]))",
                "{{kind}} {{severity}}",
            ),
        ).stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)),
        _graph(
            "Events produced and published",
            "Events written to the outbox and events acknowledged by JetStream, per "
            "minute; and drains of the outbox that ended with events unacknowledged. "
            "Produced above published for long: see the Publishing row.",
            "opm",
            _query(f"60 * sum(rate({events}[{RATE}]))", "produced", "A"),
            _query(
                f"60 * sum(rate(dts_watcher_events_published_total{{{WATCHER}}}[{RATE}]))",
                "published",
                "B",
            ),
            _query(
                f"60 * sum(rate(dts_watcher_publish_failures_total{{{WATCHER}}}[{RATE}]))",
                "failed drains",
                "C",
            ),
        ),
    ]


def cycles_row() -> Section:
    buckets = f"dts_watcher_cycle_duration_seconds_bucket{{{WATCHER}}}"
    cycles = f"dts_watcher_cycles_total{{{WATCHER}}}"
    return "Cycles", [
        _graph(
            "Cycle duration",
            "How long one cycle takes (every region read, detected, committed): median "
            "and 90th percentile per watcher. Keep it well below the poll interval.",
            "s",
            _query(
                f"histogram_quantile(0.5, sum by (instance, le) (rate({buckets}[{RATE}])))",
                "{{instance}} p50",
                "A",
            ),
            _query(
                f"histogram_quantile(0.9, sum by (instance, le) (rate({buckets}[{RATE}])))",
                "{{instance}} p90",
                "B",
            ),
        ),
        _graph(
            "Cycle completeness",
            "Share of cycles that read every page of every region. Below 100%: a region "
            "failed (see the DTS API row and the cycle_incomplete events); nothing is "
            "announced removed from an incomplete listing.",
            "percentunit",
            _query(
                f'sum by (instance) (rate(dts_watcher_cycles_total{{{WATCHER}, result="complete"}}'
                f"[{RATE}])) / sum by (instance) (rate({cycles}[{RATE}]))",
                "{{instance}}",
            ),
        )
        .min(0)
        .max(1),
        _graph(
            "Cycles by result",
            "Cycles per minute, complete and incomplete.",
            "opm",
            _query(f"60 * sum by (result) (rate({cycles}[{RATE}]))", "{{result}}"),
        ).stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)),
        _graph(
            "Age of the last complete cycle",
            "Seconds since each watcher last read DTS completely; a sawtooth whose peaks "
            "are the poll interval is healthy. A line that keeps climbing: the watcher "
            "is blind.",
            "s",
            _query(
                f"time() - (dts_watcher_last_complete_cycle_timestamp_seconds{{{WATCHER}}} > 0)",
                "{{instance}}",
            ),
        ),
    ]


def api_row() -> Section:
    requests = f"dts_watcher_api_requests_total{{{JOBS}}}"
    return "DTS API", [
        _graph(
            "Requests by outcome",
            "DescribeSynchronizationJobs requests per second, by region and outcome: OK, "
            "or the DTS error code (Throttling.*, Forbidden.RAM, InvalidAccessKeyId...), "
            "Timeout, ConnectionError, MalformedResponse.",
            "reqps",
            _query(
                f"sum by (region, outcome) (rate({requests}[{RATE}]))",
                "{{region}} {{outcome}}",
            ),
        ),
        _graph(
            "Throttled requests",
            "Requests DTS refused with a Throttling.* code, per second, by region. The "
            "watcher retries them; steady throttling means the account's quota (shared "
            "with your other tools) is too small for DTS_WATCHER_DTS__RATE_LIMIT.",
            "reqps",
            _query(
                "sum by (region, outcome) (rate(dts_watcher_api_requests_total"
                f'{{{JOBS}, outcome=~"Throttling.*"}}[{RATE}]))',
                "{{region}} {{outcome}}",
            ),
        ),
        _graph(
            "Retries and pages",
            "Requests retried (throttling, 5xx, timeouts) and listing pages read, per "
            "second, by region.",
            "reqps",
            _query(
                f"sum by (region) (rate(dts_watcher_api_retries_total{{{JOBS}}}[{RATE}]))",
                "{{region}} retries",
                "A",
            ),
            _query(
                f"sum by (region) (rate(dts_watcher_api_pages_total{{{JOBS}}}[{RATE}]))",
                "{{region}} pages",
                "B",
            ),
        ),
        _graph(
            "Skipped records and dropped delay series",
            "Job records DTS returned without a job id (skipped), per hour; and jobs left "
            "out of dts_watcher_job_delay_seconds by its series cap (0 unless the estate "
            "is larger than the cap).",
            "none",
            _query(
                f"sum by (region) (increase(dts_watcher_api_skipped_records_total{{{JOBS}}}[1h]))",
                "{{region}} skipped per hour",
                "A",
            ),
            _query(
                f"max(dts_watcher_job_delay_series_dropped{{{WATCHER}}})",
                "delay series dropped",
                "B",
            ),
        ),
    ]


def publishing_row() -> Section:
    buckets = f"dts_watcher_publish_duration_seconds_bucket{{{WATCHER}}}"
    return "Publishing", [
        _graph(
            "Outbox depth",
            "Events waiting in the outbox for a JetStream acknowledgement, per watcher. "
            "It drains within seconds while NATS is up; alert DtsWatcherOutboxNotDraining "
            "fires when it has not been empty for 10 minutes.",
            "none",
            _query(f"dts_watcher_outbox_depth{{{WATCHER}}}", "{{instance}}"),
        ),
        _graph(
            "Publish latency",
            "Time one drain of the outbox takes, from its start to the last PubAck (a "
            "batch of events, not one event): median and 99th percentile.",
            "s",
            _query(
                f"histogram_quantile(0.5, sum by (instance, le) (rate({buckets}[{RATE}])))",
                "{{instance}} p50",
                "A",
            ),
            _query(
                f"histogram_quantile(0.99, sum by (instance, le) (rate({buckets}[{RATE}])))",
                "{{instance}} p99",
                "B",
            ),
        ),
        _graph(
            "NATS connection and state file",
            "1 while the watcher's publisher is connected to NATS, and 1 while the last "
            "cycle's state could be saved (0: disk full or read-only; /readyz says why).",
            "none",
            _query(f"dts_watcher_nats_connected{{{WATCHER}}}", "{{instance}} NATS", "A"),
            _query(f"dts_watcher_state_writable{{{WATCHER}}}", "{{instance}} state", "B"),
        )
        .min(0)
        .max(1),
        _graph(
            "Dead letters",
            "Events JetStream refused for good (too large for the stream or the server, an "
            "unusable subject), set aside in the state file's dead_letters table, per "
            "hour; each is also an event_dead_lettered watcher event. Should be 0.",
            "none",
            _query(
                "sum by (instance) "
                f"(increase(dts_watcher_events_dead_lettered_total{{{WATCHER}}}[1h]))",
                "{{instance}} per hour",
            ),
        ),
        _graph(
            "Shards held (several replicas)",
            "With DTS_WATCHER_CLUSTER__ENABLED: the shards (an account's region) each replica "
            "holds the lease of and watches. They spread over the replicas and move when one "
            "joins or leaves; a replica killed gives its shards up after the lease TTL. Empty "
            "for a single watcher.",
            "none",
            _query(f"dts_watcher_shards_held{{{WATCHER}}}", "{{instance}}"),
        ).min(0),
        _table()
        .title("Watchers")
        .description("Each watcher scraped, with its version.")
        .datasource(DS)
        .height(8)
        .span(12)
        .with_target(_instant_table(f"max by (instance, version) (dts_watcher_info{{{WATCHER}}})"))
        .with_transformation(
            dash.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}
            )
        ),
    ]


def alerts_row() -> Section:
    """What is not ok right now, flapping, and silences (issue 14's metrics)."""
    conditions = f"dts_watcher_job_condition{{{JOBS}}}"
    return "Alert semantics", [
        _table()
        .title("Not ok now")
        .description(
            "Every job in a condition right now (a failure status, a delay level, stalled, "
            "flapping, expiring), its severity and the silence covering it: what "
            "`dts-watcher status` prints. Only firing conditions are exported, the most "
            "severe first, at most 1,000 (see 'Condition series dropped')."
        )
        .datasource(DS)
        .height(8)
        .span(12)
        .with_target(
            _instant_table(
                "max by (account, region, job_id, job_name, direction, condition, kind, "
                f"severity, silenced) ({conditions})"
            )
        )
        .with_transformation(
            dash.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}
            )
        ),
        _graph(
            "Firing conditions by kind",
            "How many jobs are in each kind of condition (status, delay, stalled, flapping, "
            "expiring), by severity.",
            "none",
            _query(f"sum by (kind, severity) ({conditions})", "{{kind}} {{severity}}"),
        ),
        _graph(
            "Held back while flapping",
            "status_changed and delay_threshold_crossed events held back because their job "
            "flaps, per hour (one flapping event says it instead).",
            "none",
            _query(
                f"sum by (kind) (increase(dts_watcher_events_held_total{{{WATCHER}}}[1h]))",
                "{{kind}} per hour",
            ),
        ),
        _table()
        .title("Active silences")
        .description(
            "Each silence (from the silence bucket) or maintenance window (maintenance:<name>) "
            "active now, with what it matches."
        )
        .datasource(DS)
        .height(8)
        .span(12)
        .with_target(
            _instant_table(f"max by (silence, match) (dts_watcher_silence_active{{{WATCHER}}})")
        )
        .with_transformation(
            dash.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}
            )
        ),
        _graph(
            "Silences followed, condition series dropped",
            "1 while the watcher follows the silence bucket live (0: it uses the silences it "
            "saw last, NATS being unreachable); and firing conditions left out of "
            "dts_watcher_job_condition by its series cap.",
            "none",
            _query(f"min(dts_watcher_silences_followed{{{WATCHER}}})", "followed", "A"),
            _query(
                f"max(dts_watcher_job_condition_series_dropped{{{WATCHER}}})",
                "condition series dropped",
                "B",
            ),
        ),
    ]


def build(warning: float = DEFAULT_WARNING, critical: float = DEFAULT_CRITICAL) -> dash.Dashboard:
    if not 0 < warning < critical:
        raise ValueError("the thresholds need 0 < warning < critical")
    builder = (
        dash_b.Dashboard(TITLE)
        .uid(UID)
        .description(
            "dts-watcher: the DTS jobs it sees (status, delay), the events it produces, and "
            "its own health (cycles, DTS API, outbox, NATS). Built by "
            "deploy/grafana/build_dashboard.py."
        )
        .tags(["dts-watcher", "dts", "alibaba-cloud"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dash_b.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_variable(
            dash_b.QueryVariable("instance")
            .label("Watcher")
            .description("The watcher(s) to show: Prometheus's instance label.")
            .datasource(DS)
            .query("label_values(dts_watcher_info, instance)")
            .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dash_b.QueryVariable("region")
            .label("Region")
            .description("The DTS region(s) the job and API panels show.")
            .datasource(DS)
            .query(f"label_values(dts_watcher_api_requests_total{{{WATCHER}}}, region)")
            .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for title, panels in (
        overview_row(warning, critical),
        jobs_row(warning, critical),
        events_row(),
        cycles_row(),
        api_row(),
        publishing_row(),
        alerts_row(),
    ):
        builder = builder.with_row(dash_b.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    model = builder.build()
    _number_panels(model)
    return model


def _number_panels(model: dash.Dashboard) -> None:
    """Give every row and panel a stable id (the SDK leaves them 0), in reading order."""
    for number, item in enumerate(model.panels or (), start=1):
        item.id_val = number


def render(model: dash.Dashboard) -> str:
    """The dashboard as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument("--delay-warning", type=float, default=DEFAULT_WARNING, metavar="S")
    parser.add_argument("--delay-critical", type=float, default=DEFAULT_CRITICAL, metavar="S")
    args = parser.parse_args(argv)
    try:
        text = render(build(args.delay_warning, args.delay_critical))
    except ValueError as exc:
        parser.error(str(exc))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
