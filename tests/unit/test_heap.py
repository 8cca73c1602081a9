"""`Heap.settle`: what survives a cycle is frozen out of the collector's way, reference
cycles among frozen objects are still collected within `UNFREEZE_EVERY` settles, and
`poll.gc_freeze = false` leaves the collector alone."""

from __future__ import annotations

import gc
import weakref

from watcher.heap import UNFREEZE_EVERY, YOUNG, Heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_survivors_are_frozen_and_frozen_cycles_are_collected_in_the_end() -> None:
    heap = Heap()
    thresholds = gc.get_threshold()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle: only the collector can free it
        gone = weakref.ref(a)
        heap.settle()
        assert gc.get_freeze_count() > 0  # a and b among them
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: an ordinary collection leaves it alone
        for _ in range(UNFREEZE_EVERY):
            heap.settle()
        assert gone() is None  # the periodic full collection freed it
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_turned_off_it_freezes_nothing() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    Heap(freeze=False).settle()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_young_objects_are_collected_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        Heap().settle()
        assert gc.get_threshold() == (YOUNG, 10, 10)
        gc.set_threshold(50_000, 10, 10)  # set higher by whoever embeds it: left alone
        Heap().settle()
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
