"""Prometheus metrics: how the watcher is doing, and what DTS looks like right now.

Two kinds of numbers, kept apart on purpose:

- What happens over time (cycles, events, publishing) is recorded as it happens, through
  hooks the service calls: `observe_cycle`, `observe_events`, `observe_publish`.
- What *is* (API requests so far, jobs by status, each job's delay, the outbox depth, the
  NATS connection) is read at scrape time from the service's `Status` value
  (`watcher.status`), so it can never drift from the watcher's own state and costs
  nothing between scrapes.

So the watcher doubles as a DTS exporter: `dts_watcher_job_delay_seconds` and
`dts_watcher_jobs` describe the jobs themselves, from the last complete listing (the
baseline), for teams that alert from Prometheus rather than from events.

Everything lives in a private `CollectorRegistry` (never the global one), so several
watchers in one process (tests) do not collide. `render()` is what `/metrics` serves; it
reads the outbox depth in a worker thread (SQLite) before producing the text.

Label cardinality is bounded: accounts (configured), regions, job types, outcome codes
(DTS error codes, from a known set), statuses, event kinds and severities are small sets.
`account` is `default` unless accounts are configured. The label sets that grow with the
estate are capped at `max_job_series` series each (default 1000): the per-job delay gauge
keeps the jobs with the largest delay (those worth alerting on), the condition gauge
(`dts_watcher_job_condition`: one series per job and condition that is firing, from
`watcher.board`, the picture `dts-watcher status` prints) the most severe; how many were
left out is exported (`..._series_dropped`). Silences are operators' and windows are
configured: `dts_watcher_silence_active` has one series per active one (capped too).
"""

from __future__ import annotations

import math
from collections import Counter as CounterDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from watcher import __version__
from watcher.dts.client import ClientStats
from watcher.errors import StateError
from watcher.events import Event
from watcher.snapshot import Shard, Snapshot
from watcher.status import Status

PREFIX = "dts_watcher_"
DEFAULT_MAX_JOB_SERIES = 1000

# A cycle reads every page of every region: from tens of milliseconds (a few jobs) to
# minutes (tens of thousands of jobs at the default pace of 5 requests/s per region).
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# One drain of the outbox: pipelined publishes, each waiting for its PubAck.
PUBLISH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The watcher's metrics: hooks for what happens, a collector for what is."""

    def __init__(
        self, status: Status | None = None, *, max_job_series: int = DEFAULT_MAX_JOB_SERIES
    ) -> None:
        if max_job_series < 0:
            raise ValueError("max_job_series cannot be negative")
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycle_duration = Histogram(
            PREFIX + "cycle_duration_seconds",
            "Duration of one cycle: fetch every region, detect, commit (complete or not).",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.cycles = Counter(
            PREFIX + "cycles",
            "Cycles run, by result: complete (every page of every region read) or incomplete.",
            ["result"],
            registry=r,
        )
        for result in ("complete", "incomplete"):
            self.cycles.labels(result=result)
        self.last_complete = Gauge(
            PREFIX + "last_complete_cycle_timestamp_seconds",
            "Unix time at which the last complete cycle finished (0: none yet).",
            registry=r,
        )
        self.events = Counter(
            PREFIX + "events",
            "Events produced (written to the outbox), by kind and severity.",
            ["kind", "severity"],
            registry=r,
        )
        self.publish_duration = Histogram(
            PREFIX + "publish_duration_seconds",
            "Time one drain of the outbox took, from its start to the last PubAck "
            "(a batch of events, not one event).",
            buckets=PUBLISH_BUCKETS,
            registry=r,
        )
        self.info = Gauge(
            PREFIX + "info", "Always 1; the watcher's version as a label.", ["version"], registry=r
        )
        self.info.labels(version=__version__).set(1)
        self.events_held = Counter(
            PREFIX + "events_held",
            "status_changed and delay_threshold_crossed held back while a job flaps, by kind.",
            ["kind"],
            registry=r,
        )
        for kind in ("status_changed", "delay_threshold_crossed"):
            self.events_held.labels(kind=kind)  # zero until a job flaps, not missing
        self._live = _LiveCollector(status, max_job_series)
        r.register(self._live)

    # -- hooks the service calls ---------------------------------------------------------

    @property
    def status(self) -> Status | None:
        return self._live.status

    def observe_cycle(self, duration_seconds: float, complete: bool, finished_at: datetime) -> None:
        self.cycle_duration.observe(max(0.0, duration_seconds))
        self.cycles.labels(result="complete" if complete else "incomplete").inc()
        if complete:
            self.last_complete.set(finished_at.timestamp())

    def observe_events(self, events: Sequence[Event]) -> None:
        for event in events:
            self.events.labels(kind=event.kind, severity=event.severity).inc()

    def observe_held(self, held: Mapping[str, int]) -> None:
        """Events the rules held back (a flapping job's changes), by kind."""
        for kind, count in held.items():
            self.events_held.labels(kind=kind).inc(count)

    def observe_publish(self, count: int, seconds: float) -> None:
        """One drain of the outbox that acknowledged `count` events in `seconds`.

        A drain that published nothing is not observed (it would only skew the latency
        toward zero).
        """
        if count > 0:
            self.publish_duration.observe(max(0.0, seconds))

    # -- exposition ------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read what needs I/O (the outbox depth, from SQLite) in a worker thread."""
        status = self._live.status
        if status is not None:
            try:
                self._live.outbox_depth = await anyio.to_thread.run_sync(status.outbox_depth)
            except StateError:  # an unreadable state: the rest of the metrics still count
                self._live.outbox_depth = None

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (body, content type) for an HTTP `Accept` header."""
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _LiveCollector:
    """Reads the service's status at scrape time (runs in the event loop's thread)."""

    def __init__(self, status: Status | None, max_job_series: int) -> None:
        self.status = status
        self.outbox_depth: int | None = None
        self.max_job_series = max_job_series

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with the bound watcher; nothing to check up front

    def collect(self) -> Iterable[Metric]:
        status = self.status
        if status is None:
            return
        yield from _client_metrics(status.client)
        yield from _publisher_metrics(status, self.outbox_depth)
        yield from _job_metrics(status.baseline, self.max_job_series)
        yield from _alert_metrics(status, self.max_job_series)


def _client_metrics(stats: ClientStats) -> Iterable[Metric]:
    requests = CounterMetricFamily(
        PREFIX + "api_requests",
        "DTS listing requests (DescribeSynchronizationJobs or DescribeDtsJobs), by account, "
        "region and outcome (OK, or the DTS error code, Timeout, ConnectionError, "
        "MalformedResponse).",
        labels=["account", "region", "outcome"],
    )
    for (label, outcome), count in sorted(dict(stats.requests).items()):
        requests.add_metric([*Shard.parse(label), outcome], count)
    yield requests
    for name, text, counts in (
        ("api_retries", "Requests retried (throttling, 5xx, timeouts), by region.", stats.retries),
        ("api_pages", "Listing pages read successfully, by region.", stats.pages),
        (
            "api_skipped_records",
            "Job records skipped because they had no job id, by region.",
            stats.skipped_records,
        ),
    ):
        family = CounterMetricFamily(PREFIX + name, text, labels=["account", "region"])
        for label, count in sorted(dict(counts).items()):
            family.add_metric(list(Shard.parse(label)), count)
        yield family


def _publisher_metrics(status: Status, outbox_depth: int | None) -> Iterable[Metric]:
    yield GaugeMetricFamily(
        PREFIX + "nats_connected",
        "1 while the publisher is connected to NATS, else 0.",
        value=1 if status.nats_connected() else 0,
    )
    yield CounterMetricFamily(
        PREFIX + "events_published",
        "Events acknowledged by JetStream (PubAck) and removed from the outbox.",
        value=status.publishing.published,
    )
    yield CounterMetricFamily(
        PREFIX + "publish_failures",
        "Drains of the outbox that ended with events not acknowledged.",
        value=status.publishing.failures,
    )
    yield CounterMetricFamily(
        PREFIX + "events_dead_lettered",
        "Events JetStream refused for good (too large, an unusable subject), set aside in "
        "the state file's dead_letters table.",
        value=status.publishing.dead_lettered,
    )
    yield GaugeMetricFamily(
        PREFIX + "state_writable",
        "0 while the state file cannot be written (disk full, read-only), else 1.",
        value=0 if status.state_problem else 1,
    )
    held = status.shards_held()
    if held is not None:
        yield GaugeMetricFamily(
            PREFIX + "shards_held",
            "Several replicas: the shards (an account's region) this replica holds the lease "
            "of and watches.",
            value=held,
        )
    if outbox_depth is not None:
        yield GaugeMetricFamily(
            PREFIX + "outbox_depth",
            "Events waiting in the outbox for a JetStream acknowledgement.",
            value=outbox_depth,
        )


def _job_metrics(baseline: Snapshot | None, max_series: int) -> Iterable[Metric]:
    jobs = GaugeMetricFamily(
        PREFIX + "jobs",
        "DTS jobs in the last known state, by account, region, job type and status "
        "(one per direction of a two-way synchronization).",
        labels=["account", "region", "job_type", "status"],
    )
    delay = GaugeMetricFamily(
        PREFIX + "job_delay_seconds",
        "Delay in seconds of each job that reports one, as last read from DTS.",
        labels=["job_id", "job_name", "region", "direction", "account", "job_type"],
    )
    by_status: CounterDict[tuple[str, str, str, str]] = CounterDict()
    delayed = []
    for job in baseline or ():
        by_status[(job.account, job.region, job.job_type, job.status)] += 1
        if job.delay_seconds is not None and math.isfinite(job.delay_seconds):
            delayed.append(job)
    for labels, count in sorted(by_status.items()):
        jobs.add_metric(list(labels), count)
    # Keep the largest delays when there are too many jobs: those are the ones to alert on.
    delayed.sort(key=lambda j: (-(j.delay_seconds or 0), j.key))
    for job in delayed[:max_series]:
        delay.add_metric(
            [job.job_id, job.job_name, job.region, job.direction, job.account, job.job_type],
            float(job.delay_seconds or 0),
        )
    yield jobs
    yield delay
    yield GaugeMetricFamily(
        PREFIX + "job_delay_series_dropped",
        f"Jobs with a delay left out of {PREFIX}job_delay_seconds by the series cap.",
        value=max(0, len(delayed) - max_series),
    )


def _alert_metrics(status: Status, max_series: int) -> Iterable[Metric]:
    """The conditions firing now (`watcher.board`) and the silences active now."""
    yield from _condition_metrics(status, max_series)
    active = GaugeMetricFamily(
        PREFIX + "silence_active",
        "1 for each silence, or maintenance window (maintenance:<name>), active now.",
        labels=["silence", "match"],
    )
    for silence_id, match in status.silencing().active(status.now())[:max_series]:
        active.add_metric([silence_id, match.describe()], 1)
    yield active
    yield GaugeMetricFamily(
        PREFIX + "silences_followed",
        "1 while the silence bucket is followed live; 0: the silences last seen are used.",
        value=1 if status.silences_followed() else 0,
    )


_CONDITION_LABELS = (
    "job_id",
    "job_name",
    "region",
    "direction",
    "account",
    "condition",
    "kind",
    "severity",
    "silenced",
)


def _condition_metrics(status: Status, max_series: int) -> Iterable[Metric]:
    firing = GaugeMetricFamily(
        PREFIX + "job_condition",
        "1 for each condition a job is in right now (a failure status, a delay level, "
        "stalled, flapping, expiring) and the silence covering it ('' if none); only "
        "firing conditions are exported, the most severe first.",
        labels=list(_CONDITION_LABELS),
    )
    total = 0
    for row in status.not_ok():
        job = row.job
        for condition in row.conditions:
            total += 1
            if total <= max_series:
                firing.add_metric(
                    [
                        *(job.job_id, job.job_name, job.region, job.direction, job.account),
                        *(condition.name, condition.kind, condition.severity),
                        row.silenced or "",
                    ],
                    1,
                )
    yield firing
    yield GaugeMetricFamily(
        PREFIX + "job_condition_series_dropped",
        f"Firing conditions left out of {PREFIX}job_condition by the series cap.",
        value=max(0, total - max_series),
    )
