"""The watcher's memory on disk (see `sqlite.py`): baseline, rule memory and outbox."""

from watcher.errors import StateError
from watcher.store.codec import SCHEMA_VERSION
from watcher.store.outbox import OutboxEntry
from watcher.store.sqlite import RECOVERY, Store

__all__ = ["RECOVERY", "SCHEMA_VERSION", "OutboxEntry", "StateError", "Store"]
