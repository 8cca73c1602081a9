"""Crash points for the fault-injection tests. Inert unless a test asks for them.

Setting `DTS_WATCHER_TEST_CRASH_AT=<point>` in a watcher's environment makes it kill
itself with SIGKILL (no cleanup, no flush: a real crash) the first time it reaches that
point. The tests use it to prove that no event is lost or doubled whichever step a crash
interrupts. The points, in the order a cycle reaches them:

    before_commit   events detected, nothing saved yet
    between_commits the first of a cycle's transactions saved (with several, see
                    `state.events_per_transaction`), maybe published, the rest not
    after_commit    baseline, memory and events saved; maybe some published
    after_publish   a batch published to JetStream, not yet removed from the outbox
"""

from __future__ import annotations

import os
import signal

ENV = "DTS_WATCHER_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
