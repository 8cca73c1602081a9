"""Keeping the garbage collector off the big, long-lived baseline (`poll.gc_freeze`).

The baseline of 10,000 jobs is some 400,000 objects that live for many cycles. A full
collection walks them all (0.2 to 0.4 s of CPU on 2 cores), and a storm, which makes tens
of thousands of new objects, used to trigger one in the middle of its publishing (see
docs/performance.md). So after each cycle the service calls `settle()`: collect what the
cycle left, then freeze the rest (`gc.freeze`) so later collections skip it.

Frozen objects are still freed as soon as nothing refers to them (the old baseline's
jobs, replaced); only reference cycles among them would wait, so every `UNFREEZE_EVERY`
settles everything is unfrozen and collected in full.

Within a cycle, the collector's young generation is collected every `YOUNG` allocations
of container objects rather than Python's 700: a page of 30 records decoded is some
3,000 dicts and lists, which lived just long enough to be promoted, pile up in the
oldest generation and set off full collections (six per cycle in which every delay
moved, 0.2 s of CPU). Ten thousand lets them die young, as they do anyway.

All of this is process-wide: a program that embeds the watcher shares the effect, and
can turn it off with `poll.gc_freeze`.
"""

from __future__ import annotations

import gc

UNFREEZE_EVERY = 100  # settles between full garbage collections
YOUNG = 10_000  # allocations between two collections of the youngest generation


class Heap:
    def __init__(self, freeze: bool = True) -> None:
        self.freeze = freeze
        self._settled = 0

    def settle(self) -> None:
        """After a cycle: collect, then freeze what survived (when enabled)."""
        if not self.freeze:
            return
        young, *older = gc.get_threshold()
        if young < YOUNG:
            gc.set_threshold(YOUNG, *older)
        self._settled += 1
        if self._settled % UNFREEZE_EVERY == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
