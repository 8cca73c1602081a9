"""The watcher's memory on disk (see `sqlite.py`): baseline, rule memory and outbox."""

from watcher.errors import StateError, StateUnusable, StateWriteError
from watcher.store.codec import SCHEMA_VERSION
from watcher.store.failures import RECOVERY
from watcher.store.outbox import DeadLetter, OutboxEntry
from watcher.store.protocol import Outbox, State, StateStore
from watcher.store.sqlite import Store

__all__ = [
    "RECOVERY",
    "SCHEMA_VERSION",
    "DeadLetter",
    "Outbox",
    "OutboxEntry",
    "State",
    "StateError",
    "StateStore",
    "StateUnusable",
    "StateWriteError",
    "Store",
]
