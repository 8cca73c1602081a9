"""Crash points for the fault-injection tests. Inert unless a test asks for them.

Setting `DTS_WATCHER_TEST_CRASH_AT=<point>` in a watcher's environment makes it kill
itself with SIGKILL (no cleanup, no flush: a real crash) the first time it reaches that
point. The tests use it to prove that no event is lost or doubled whichever step a crash
interrupts. The points, in the order a cycle reaches them:

    before_commit   events detected, not yet saved (page by page: the first page with
                    events, before its transaction)
    between_commits one of a cycle's transactions saved (a page's with its events, or
                    one of several at the end, see `state.events_per_transaction`),
                    maybe published, the rest not
    after_commit    baseline, memory and events saved; maybe some published
    after_publish   a batch published to JetStream, not yet removed from the outbox
    state_written   several replicas: entries with new events written to the state
                    bucket (a step of a cycle's), their events not yet published

A point reached with nothing at stake (`relevant` False: a commit that saved no event)
does not fire. With `DTS_WATCHER_TEST_CRASH_ARMED=<file>` too, a point fires only once
that file exists: a test lets a long-running service settle, then arms it (several
replicas: kill one right after it saved a change, before it published it).
"""

from __future__ import annotations

import os
import signal

ENV = "DTS_WATCHER_TEST_CRASH_AT"
ARMED = "DTS_WATCHER_TEST_CRASH_ARMED"


def crash_point(name: str, relevant: bool = True) -> None:
    if os.environ.get(ENV) != name or not relevant:
        return
    armed = os.environ.get(ARMED)
    if armed and not os.path.exists(armed):
        return
    os.kill(os.getpid(), signal.SIGKILL)
