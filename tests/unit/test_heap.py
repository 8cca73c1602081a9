"""`settle_heap`: what survives a cycle is frozen out of the collector's way, and
reference cycles among frozen objects are still collected, within `_UNFREEZE_EVERY`
cycles."""

from __future__ import annotations

import gc
import weakref

from watcher import loop


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_survivors_are_frozen_and_frozen_cycles_are_collected_in_the_end() -> None:
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle: only the collector can free it
        gone = weakref.ref(a)
        loop.settle_heap()
        assert gc.get_freeze_count() > 0  # a and b among them
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: an ordinary collection leaves it alone
        for _ in range(loop._UNFREEZE_EVERY):
            loop.settle_heap()
        assert gone() is None  # the periodic full collection freed it
    finally:
        gc.unfreeze()
