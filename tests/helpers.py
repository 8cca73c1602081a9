"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats

from watcher.settings import Settings
from watcher.simulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET


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
        values[name] = {**values.get(name, {}), **overrides}
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
