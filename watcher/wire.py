"""What goes on the wire: an event as the bytes JetStream will take.

`Wire.payload(event)` is the one place an event becomes its outbox payload. Two things
happen there beyond `watcher.events.encode`:

- **Endpoint details** (`events.endpoint_details = false`): the database address, port and
  user name of the job's source and destination are left out of `discovered`/`removed`
  (`data.job.source` / `data.job.destination` keep `instance_id`, `instance_type` and
  `engine_name`).
- **A size limit.** NATS refuses a message over the server's `max_payload` (1 MB by
  default) and JetStream one over the stream's `max_msg_size`; an outbox entry that can
  never be published must not hold back every event behind it. So an envelope over
  `limit` bytes is trimmed (`bound`), and says so in `data.truncated` (`original_bytes`,
  `limit_bytes`, the `removed` fields of `data.job`, the `shortened` fields):

  1. the heaviest fields of `data.job` are removed, one by one, largest first (its
     `job_id`, `region`, `status` stay);
  2. then texts longer than 4096, 1024, 256, then 64 characters are cut (marked with
     `…`) and lists longer than that many items cut short, everywhere in `data` except
     the job id;
  3. only then the job id itself (`data.job_id`, `data.job.job_id` and the envelope's
     `subject`) is cut to 256 characters: an id stays exact unless it alone is too big.

  What still does not fit (a limit of a few hundred bytes) is None: the publisher sets it
  aside (a dead letter) and goes on with the rest.

The publisher knows the limits only once connected (the server's `max_payload` and the
stream's `max_msg_size`); it lowers `Wire.limit` then, and trims again at publish time
what was saved under a higher limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from watcher import fastjson
from watcher.events import Event

# Bytes kept aside from the server's and the stream's limits for the headers
# (Nats-Msg-Id, Content-Type: about 110 bytes) that count toward them.
HEADROOM: Final = 512
DEFAULT_LIMIT: Final = 1024 * 1024 - HEADROOM  # nats-server's default max_payload
_KEEP_IN_JOB: Final = frozenset({"job_id", "region", "status"})
_ENDPOINT_KEEP: Final = ("instance_id", "instance_type", "engine_name")
_CAPS: Final = (4096, 1024, 256, 64)
_ID_CAP: Final = 256
_MARK: Final = "…"
_MAX_PATHS: Final = 20

__all__ = ["DEFAULT_LIMIT", "HEADROOM", "Wire", "bound", "rebound"]


@dataclass
class Wire:
    """How events are encoded for the outbox (one per store; see the module docstring)."""

    limit: int = DEFAULT_LIMIT  # bytes of payload, at most
    endpoint_details: bool = True

    def payload(self, event: Event) -> bytes | None:
        """The envelope as published, trimmed to `limit` if need be; None if it cannot
        be made to fit."""
        document = event.envelope()
        if not self.endpoint_details and "job" in event.data:
            document["data"]["job"] = without_endpoint_details(document["data"]["job"])
        return bound(document, self.limit)


def without_endpoint_details(job: Any) -> Any:
    """A job dict whose source and destination keep only what names the instance."""
    if not isinstance(job, Mapping):
        return job
    out = dict(job)
    for side in ("source", "destination"):
        endpoint = out.get(side)
        if isinstance(endpoint, Mapping):
            out[side] = {key: endpoint.get(key) for key in _ENDPOINT_KEEP if key in endpoint}
    return out


def rebound(payload: bytes, limit: int) -> bytes | None:
    """An outbox payload trimmed to `limit` (the server's or stream's, learned later);
    None if it is not a JSON object or cannot be made to fit."""
    if len(payload) <= limit:
        return payload
    try:
        document, _ = fastjson.loads(payload)
    except (ValueError, RecursionError):
        return None
    return bound(document, limit) if isinstance(document, dict) else None


def bound(document: Mapping[str, Any], limit: int) -> bytes | None:
    """`document` as compact JSON of at most `limit` bytes (see the module docstring)."""
    raw = fastjson.dumps(document)
    if len(raw) <= limit:
        return raw
    data = document.get("data")
    doc: dict[str, Any] = {**document, "data": dict(data) if isinstance(data, Mapping) else {}}
    data = doc["data"]
    note: dict[str, Any] = {"original_bytes": len(raw), "limit_bytes": limit}
    data["truncated"] = note
    for step in (_drop_job_fields, _shorten_all, _shorten_id):
        raw = step(doc, note, len(raw) - limit)
        if len(raw) <= limit:
            return raw
    return None


def _drop_job_fields(doc: dict[str, Any], note: dict[str, Any], excess: int) -> bytes:
    data = doc["data"]
    job = data.get("job")
    if not isinstance(job, Mapping):
        return fastjson.dumps(doc)
    job = data["job"] = dict(job)
    sizes = sorted(
        (
            (len(fastjson.dumps(value)), key)
            for key, value in job.items()
            if key not in _KEEP_IN_JOB
        ),
        reverse=True,
    )
    removed = note.setdefault("removed", [])
    raw = fastjson.dumps(doc)
    for size, key in sizes:
        del job[key]
        removed.append(f"job.{key}")
        excess -= size + len(key) + 4
        if excess <= 0:  # enough by the estimate: check it
            raw = fastjson.dumps(doc)
            excess = len(raw) - note["limit_bytes"]
            if excess <= 0:
                return raw
    return fastjson.dumps(doc)


def _shorten_all(doc: dict[str, Any], note: dict[str, Any], excess: int) -> bytes:
    raw = fastjson.dumps(doc)
    paths: list[str] = note.setdefault("shortened", [])
    for cap in _CAPS:
        data = doc["data"]
        doc["data"] = {
            key: value if key in ("job_id", "truncated") else _cut(value, cap, key, paths)
            for key, value in data.items()
        }
        raw = fastjson.dumps(doc)
        if len(raw) <= note["limit_bytes"]:
            break
    return raw


def _shorten_id(doc: dict[str, Any], note: dict[str, Any], excess: int) -> bytes:
    data = doc["data"]
    paths: list[str] = note.setdefault("shortened", [])
    if isinstance(data.get("job_id"), str) and len(data["job_id"]) > _ID_CAP:
        data["job_id"] = _cut_text(data["job_id"], _ID_CAP)
        _note_path(paths, "job_id")
    if isinstance(doc.get("subject"), str) and len(doc["subject"]) > _ID_CAP:
        doc["subject"] = _cut_text(doc["subject"], _ID_CAP)
        _note_path(paths, "subject")
    job = data.get("job")
    if isinstance(job, dict) and isinstance(job.get("job_id"), str):
        job["job_id"] = _cut_text(job["job_id"], _ID_CAP)
    return fastjson.dumps(doc)


def _cut(value: Any, cap: int, path: str, paths: list[str]) -> Any:
    """`value` with texts over `cap` characters and lists over `cap` items cut."""
    if isinstance(value, str):
        if len(value) > cap:
            _note_path(paths, path)
            return _cut_text(value, cap)
        return value
    if isinstance(value, Mapping):
        return {k: _cut(v, cap, f"{path}.{k}", paths) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = list(value)
        if len(items) > cap:
            _note_path(paths, path)
            items = items[:cap]
        return [_cut(v, cap, path, paths) for v in items]
    return value


def _cut_text(text: str, cap: int) -> str:
    return text[: cap - 1] + _MARK


def _note_path(paths: list[str], path: str) -> None:
    if path not in paths and len(paths) < _MAX_PATHS:
        paths.append(path)
