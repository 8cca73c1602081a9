"""An example remediation consumer for dts-watcher events (copy it, then make it yours).

It reads the watcher's JetStream stream through a *durable pull consumer*: JetStream
remembers, under the consumer's name, which events were acknowledged, so a consumer
that was down or restarted carries on exactly where it stopped, including the events
published while it was away. Each event is acknowledged only *after* acting on it: an
action that fails is negatively acknowledged and delivered again a little later, and a
consumer that crashes mid-action gets the event again once `ack_wait` has passed.

Delivery is therefore at least once: make the actions idempotent, or deduplicate on the
CloudEvents `id` as `consume` does here (in memory; use a database for more than one
process or across restarts).

Events of a silenced job (a silence or maintenance window covered it: the CloudEvents
attribute `silenced` is set) are acknowledged and skipped: someone is working on that
job. When the silence ends, the watcher reminds of whatever is still wrong (`reminder`,
`reason: silence_ended`), which is not silenced, so nothing is missed.

Anyone who can publish on the stream can put anything in it, so nothing a message says is
trusted: a message that is not an event (not JSON, JSON nested too deeply to decode, not a
CloudEvent with an `id`, a `type` and an object as `data`) can never be handled, so it is
terminated (`term`: never redelivered, nothing behind it waits), counted and reported; an
action that keeps failing is terminated at its last delivery; and everything printed has
terminal control characters shown as escapes (`safe`), so a job name cannot clear the
screen, rewrite a line or set the clipboard.

What it reacts to (the rest is acknowledged and ignored):

- `dts.job.status_changed` into `Failed`: the job stopped. Here it prints what a real
  consumer would do: restart it (DTS `StartSynchronizationJob`) after a look at the
  error, or page the owner.
- `dts.job.reminder` of a `Failed` condition: the job is still failed (a silence that
  covered it ended, or `rules.repeat_interval` passed): the same, once more.
- `dts.job.precheck_failed`: each failed precheck item comes with DTS's own
  `repair_method` (e.g. `CHECK_ERROR_BINLOG_ROW_IMAGE_REPAIR`); here it prints them.

Run it (needs only nats-py; `pip install nats-py`):

    python examples/remediation_consumer.py --url nats://127.0.0.1:4222

Options: `--durable NAME` (default `remediation`), `--stream`, `--prefix` (the watcher's
subject prefix), `--exit-when-idle` (stop once everything available was handled, for a
cron job or a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

Say = Callable[[str], None]

MAX_DELIVER = 10  # deliveries of one event before JetStream gives up on it


def safe(value: object) -> str:
    """`value` as text with every terminal control character (C0, DEL, C1, bidi and
    zero-width characters, line separators) shown as a visible escape."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def _unsafe(char: str) -> bool:
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    return code >= 0xA0 and unicodedata.category(char) in ("Cf", "Zl", "Zp", "Cs")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class Remediator:
    """Decides and performs the action for one event. Replace the bodies with real work."""

    def __init__(self, say: Say = print) -> None:
        self.say = say

    async def handle(self, event: Mapping[str, Any]) -> bool:
        """Act on one event; True if it was one we act on. Raise to have it redelivered."""
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "dts.job.status_changed" and data.get("status") == "Failed":
            await self.on_failed(data)
            return True
        if kind == "dts.job.reminder" and data.get("condition") == "Failed":
            await self.on_still_failed(data)
            return True
        if kind == "dts.job.precheck_failed":
            await self.on_precheck_failed(data)
            return True
        return False

    async def on_failed(self, data: Mapping[str, Any]) -> None:
        self.say(
            f"FAILED {where(data)}: {safe(data.get('error_message') or 'no error message')} "
            f"-> restart it (dts:StartSynchronizationJob) once the cause is fixed, or page "
            f"the owner"
        )

    async def on_still_failed(self, data: Mapping[str, Any]) -> None:
        # After a silence that covered it ended, or `rules.repeat_interval` later.
        self.say(
            f"STILL FAILED {where(data)} since {data.get('since')} ({data.get('reason')}) "
            f"-> restart it once the cause is fixed, or page the owner"
        )

    async def on_precheck_failed(self, data: Mapping[str, Any]) -> None:
        items = data.get("failed_items")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            self.say(
                f"PRECHECK {where(data)}: {safe(item.get('item_name'))}: "
                f"{safe(item.get('error_message'))} "
                f"-> repair method {safe(item.get('repair_method') or 'none given')}"
            )


def where(data: Mapping[str, Any]) -> str:
    direction = data.get("direction")
    suffix = f"/{safe(direction)}" if direction not in (None, "Forward") else ""
    name = f" ({safe(data['job_name'])})" if data.get("job_name") else ""
    return f"{safe(data.get('region'))}/{safe(data.get('job_id'))}{suffix}{name}"


@dataclass
class Tally:
    acted: int = 0  # events we acted on
    ignored: int = 0  # events of other kinds, acknowledged
    duplicates: int = 0  # already handled (redelivered after a lost ack)
    silenced: int = 0  # a silence covered the job: acknowledged, not acted upon
    retried: int = 0  # actions that failed: negatively acknowledged, to come again
    rejected: int = 0  # not events: terminated, never redelivered
    gave_up: int = 0  # actions that failed at their last delivery: terminated
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)


async def consume(
    url: str,
    remediator: Remediator,
    *,
    durable: str = "remediation",
    stream: str = "DTS_EVENTS",
    prefix: str = "dts",
    batch: int = 50,
    idle: float = 2.0,
    retry_delay: float = 5.0,
    exit_when_idle: bool = False,
    stop: asyncio.Event | None = None,
    remember: int = 10_000,
) -> Tally:
    """Handle events until `stop` is set (or, with `exit_when_idle`, nothing is left)."""
    stop = stop or asyncio.Event()
    tally = Tally()
    nc = await nats.connect(url, name=f"dts-remediation:{durable}")
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,  # nothing counts as handled until we say so
            ack_wait=60,  # seconds to act before JetStream redelivers
            max_deliver=MAX_DELIVER,  # then give up on an event that keeps failing
            deliver_policy=DeliverPolicy.ALL,  # a new consumer starts at the oldest event
        )
        sub = await js.pull_subscribe(
            f"{prefix}.job.>", durable=durable, stream=stream, config=config
        )
        while not stop.is_set():
            try:
                messages = await sub.fetch(batch, timeout=idle)
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's, by path
                if exit_when_idle:
                    break
                continue
            for msg in messages:
                await _one(msg, remediator, tally, retry_delay, remember)
    finally:
        await nc.close()
    return tally


def decode(data: bytes) -> dict[str, Any]:
    """The event in a message; ValueError saying why it is none."""
    try:
        event = json.loads(data)
    except RecursionError:  # 100,000 nested brackets: the decoder's stack, not ours
        raise ValueError("JSON nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    if not isinstance(event.get("id"), str) or not event["id"]:
        raise ValueError("no CloudEvents id")
    if not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict):
        raise ValueError("no CloudEvents type, or data that is not an object")
    return event


def _deliveries(msg: Any) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message: no count
        return 1


async def _one(
    msg: Any, remediator: Remediator, tally: Tally, retry_delay: float, remember: int
) -> None:
    try:
        event = decode(msg.data)
    except ValueError as exc:
        tally.rejected += 1
        remediator.say(f"REJECTED a message on {safe(msg.subject)}: {exc}")
        await msg.term()  # a message that can never be handled: do not redeliver it
        return
    event_id = event["id"]
    if event_id in tally.seen:
        tally.duplicates += 1
        await msg.ack_sync()
        return
    if event.get("silenced"):
        tally.silenced += 1
        await msg.ack_sync()
        return
    try:
        acted = await remediator.handle(event)
    except Exception as exc:  # the action failed: try again later
        reason = safe(f"{type(exc).__name__}: {exc}")[:300]
        if _deliveries(msg) >= MAX_DELIVER:
            tally.gave_up += 1
            remediator.say(f"GAVE UP {safe(event_id)} after {MAX_DELIVER} deliveries: {reason}")
            await msg.term()
            return
        tally.retried += 1
        remediator.say(f"RETRY {safe(event_id)}: {reason}")
        await msg.nak(delay=retry_delay)
        return
    await msg.ack_sync()  # only now: acted upon, and the server confirms the ack
    tally.seen[event_id] = None
    if len(tally.seen) > remember:
        tally.seen.popitem(last=False)
    if acted:
        tally.acted += 1
    else:
        tally.ignored += 1


def main() -> None:
    parser = argparse.ArgumentParser(description="React to dts-watcher events (an example).")
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--durable", default="remediation")
    parser.add_argument("--stream", default="DTS_EVENTS")
    parser.add_argument("--prefix", default="dts")
    parser.add_argument("--exit-when-idle", action="store_true")
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        tally = await consume(
            args.url,
            Remediator(),
            durable=args.durable,
            stream=args.stream,
            prefix=args.prefix,
            exit_when_idle=args.exit_when_idle,
            stop=stop,
        )
        print(f"done: {tally}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
