"""A watcher under test: its settings, its state, what it published, its counters."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import nats

from dts_sim import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from watcher.detect import Detection
from watcher.settings import Settings
from watcher.store import Store


async def wait_until(condition: Callable[[], bool], deadline: float = 30.0) -> None:
    """Poll a condition on the watcher's own counters (there is no event to wait on)."""
    with anyio.fail_after(deadline):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.05)


def job_events(stream: list[dict[str, Any]]) -> dict[str, list[tuple[str, ...]]]:
    """Per job (id/direction): the (kind, status-or-level) sequence a consumer saw."""
    out: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for event in stream:
        if not event["type"].startswith("dts.job."):
            continue
        data = event["data"]
        kind = event["type"].rsplit(".", 1)[1]
        detail = data["level"] if kind == "delay_threshold_crossed" else data["status"]
        out[f"{data['job_id']}/{data['direction']}"].append((kind, detail))
    return dict(out)


def assert_no_duplicates(stream: list[dict[str, Any]]) -> None:
    ids = [e["id"] for e in stream]
    assert len(ids) == len(set(ids)), "an event reached the stream twice"


def commit(store: Store, detection: Detection, prefix: str = "dts", chunk: int = 1000) -> None:
    """Save a whole detection, as the cycle does: every step of `Store.commit_steps`."""
    for _ in store.commit_steps(detection, prefix, chunk):
        pass


def make_settings(
    tmp_path: Path, nats_url: str, dts_url: str, regions: list[str], **sections: Any
) -> Settings:
    """Settings for a watcher under test: fast retries, state in tmp_path."""
    values: dict[str, Any] = {
        "dts": {
            "regions": regions,
            "endpoint": dts_url,
            "rate_limit": 20,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "timeout": 5,
        },
        "credentials": {
            "access_key_id": DEFAULT_ACCESS_KEY_ID,
            "access_key_secret": DEFAULT_ACCESS_KEY_SECRET,
        },
        "nats": {"url": nats_url, "connect_timeout": 2, "publish_timeout": 2},
        "poll": {"interval": 1, "jitter": 0},
        "state": {"path": tmp_path / "state.sqlite3"},
    }
    for name, overrides in sections.items():
        if isinstance(overrides, dict):
            values[name] = {**values.get(name, {}), **overrides}
        else:  # a list (accounts): as given
            values[name] = overrides
    return Settings(**values)


async def read_stream(url: str, stream: str = "DTS_EVENTS") -> list[dict[str, Any]]:
    """Every message stored in the stream, in stream order, as decoded envelopes
    (with the NATS subject and headers added under `_subject` / `_headers`)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out: list[dict[str, Any]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg(stream, seq)
            document = json.loads(msg.data)
            document["_subject"] = msg.subject
            document["_headers"] = dict(msg.headers or {})
            out.append(document)
        return out
    finally:
        await nc.close()
