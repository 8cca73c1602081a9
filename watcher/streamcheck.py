"""Is an existing stream fit to hold the watcher's events? What is wrong with it, in words.

The watcher creates its stream when missing; an existing one is used as it is (never
changed), so it is judged here, by the publisher before it publishes and by
`check-config --probe`. Three levels:

- **refuses**: publishing cannot work (subjects not captured, `no_ack`, `sealed`, a
  mirror, a stream full that discards new messages, a `max_msg_size` too small for the
  watcher's own events). The publisher does not publish (the outbox waits, `/readyz` and
  the log say why); the probe fails;
- **risk**: it works today and will refuse events later (`discard new` with a limit): the
  publisher logs it, the probe fails;
- **note**: worth knowing (events trimmed to `max_msg_size`, a short duplicate window,
  a retention policy that drops events before every consumer saw them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from watcher.subjects import uncovered, wanted_subjects

MIN_MSG_SIZE = 4096  # below this, the watcher's own events may not fit even trimmed
MIN_DUPLICATE_WINDOW = 120.0

__all__ = ["MIN_MSG_SIZE", "Problem", "stream_problems"]


@dataclass(frozen=True)
class Problem:
    level: Literal["refuses", "risk", "note"]
    text: str

    def __str__(self) -> str:
        return self.text


def stream_problems(info: Any, prefix: str) -> list[Problem]:
    """What is wrong with a stream (nats-py's StreamInfo) for events under `prefix`."""
    config, state = info.config, info.state
    found: list[Problem] = []
    subjects = list(config.subjects or [])
    missing = uncovered(subjects, prefix)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        what = f"{', '.join(missing[:3])}{more}"
        if len(missing) == len(wanted_subjects(prefix)):
            what = f"{prefix}.>"
        found.append(
            Problem(
                "refuses",
                f"does not capture {what} (its subjects: {subjects}); "
                f"give it {prefix}.> or choose another stream name",
            )
        )
    if config.no_ack:
        found.append(
            Problem(
                "refuses",
                "acknowledges nothing (no_ack): the watcher could never know an event was "
                "stored, and keeps every event in its outbox",
            )
        )
    if getattr(config, "sealed", False):
        found.append(Problem("refuses", "is sealed: it takes no new messages"))
    if getattr(config, "mirror", None) is not None:
        found.append(Problem("refuses", "is a mirror: it takes no messages of its own"))
    found += _limits(config, state)
    window = config.duplicate_window or 0
    if window < MIN_DUPLICATE_WINDOW:
        found.append(
            Problem(
                "note",
                f"its duplicate window is {window:g}s (at least {MIN_DUPLICATE_WINDOW:g}s "
                "recommended): a re-publish after a lost ack may store an event twice",
            )
        )
    retention = str(getattr(config.retention, "value", config.retention or "limits"))
    if retention != "limits":
        found.append(
            Problem(
                "note",
                f"its retention is {retention!r}: events are dropped once consumers took "
                "them, so `tail --since` and new consumers miss them",
            )
        )
    return found


def _limits(config: Any, state: Any) -> list[Problem]:
    found: list[Problem] = []
    size = config.max_msg_size or -1
    if 0 < size < MIN_MSG_SIZE:
        found.append(
            Problem(
                "refuses",
                f"takes messages of at most {size} bytes (max_msg_size): too small for the "
                f"watcher's events (at least {MIN_MSG_SIZE})",
            )
        )
    elif size > 0:
        found.append(Problem("note", f"events over {size} bytes (max_msg_size) are trimmed to fit"))
    discard = str(getattr(config.discard, "value", config.discard or "old"))
    if discard != "new":
        return found
    limits = {
        "max_msgs": (config.max_msgs or -1, state.messages),
        "max_bytes": (config.max_bytes or -1, state.bytes),
        "max_msgs_per_subject": (config.max_msgs_per_subject or -1, None),
    }
    for name, (limit, used) in limits.items():
        if limit <= 0:
            continue
        if used is not None and used >= limit:
            found.append(
                Problem(
                    "refuses",
                    f"is full ({name} {limit}, holding {used}) and discards new messages: "
                    "JetStream refuses every event until old ones expire; use discard old",
                )
            )
        else:
            found.append(
                Problem(
                    "risk",
                    f"discards new messages once full ({name} {limit}): JetStream will then "
                    "refuse events, which wait in the outbox; use discard old",
                )
            )
    return found
