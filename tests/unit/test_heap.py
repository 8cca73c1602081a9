"""`Heap.settle`: what survives a cycle is frozen out of the collector's way, reference
cycles among frozen objects are still collected within `UNFREEZE_EVERY` settles, and
`poll.gc_freeze = false` leaves the collector alone."""

from __future__ import annotations

import gc
import weakref

from watcher.heap import UNFREEZE_EVERY, Heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_survivors_are_frozen_and_frozen_cycles_are_collected_in_the_end() -> None:
    heap = Heap()
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


def test_turned_off_it_freezes_nothing() -> None:
    gc.unfreeze()
    Heap(freeze=False).settle()
    assert gc.get_freeze_count() == 0
