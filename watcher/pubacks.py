"""JetStream's answers to the publisher's publishes: one drain's flight, and the words of
a refusal.

A JetStream publish is a NATS publish with a reply subject; the stream answers on it with
a PubAck (`{"stream": ..., "seq": ...}`), an error (`{"error": {"code", "err_code",
"description"}}`), or, when no stream captures the subject, a `503` status. `Flight`
keeps what one drain sent and what came back; the publisher (`watcher.publish`) decides
what to do with it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import orjson

# JetStream's error code for a message over the stream's max_msg_size.
TOO_BIG: Final = 10054

__all__ = ["TOO_BIG", "Flight", "describe", "suspect"]


class Flight:
    """Publishes sent in one drain, and what their answers said."""

    __slots__ = ("acked", "all_answered", "errors", "pending", "room", "too_big")

    def __init__(self) -> None:
        self.acked: list[int] = []  # seqs JetStream acknowledged, not yet forgotten
        self.errors: dict[int, str] = {}  # seq -> why JetStream refused it (stops the drain)
        self.too_big: dict[int, str] = {}  # seq -> refused for its size (max_msg_size)
        self.pending = 0  # sent, not answered yet
        self.room = asyncio.Event()  # set when answers free half the window
        self.all_answered = asyncio.Event()

    def answer(self, seq: int, msg: Any, max_in_flight: int) -> None:
        """Record JetStream's answer to the publish of outbox entry `seq`."""
        status = msg.headers.get("Status") if msg.headers else None
        if status == "503":
            self.errors[seq] = "no stream captures the subject (no responders)"
        else:
            try:
                answer = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                answer = {"error": {"description": f"not a PubAck: {msg.data[:80]!r}"}}
            if isinstance(answer, dict) and "error" not in answer:
                self.acked.append(seq)
            else:
                error = answer.get("error") if isinstance(answer, dict) else answer
                if isinstance(error, dict) and error.get("err_code") == TOO_BIG:
                    self.too_big[seq] = describe(error)
                else:
                    self.errors[seq] = describe(error)
        self.pending -= 1
        if self.pending <= max_in_flight // 2:  # resume in bursts, not per answer
            self.room.set()
        if self.pending == 0:
            self.all_answered.set()


def describe(error: Any) -> str:
    """A JetStream API error in its own words: `description (JetStream error 10077)`."""
    if isinstance(error, dict):
        text = str(error.get("description") or "no description")[:300]
        code = error.get("err_code") or error.get("code")
        return f"{text} (JetStream error {code})" if code else text
    return str(error)[:300]


def suspect(subject: str) -> bool:
    """Cheap: whether a subject needs a closer look before it is sent (`publishable`)."""
    return len(subject) > 256 or not subject.isprintable()
