"""Compare-and-set writes to a key-value bucket, many at a time.

A key-value write is a JetStream publish on `$KV.<bucket>.<key>`; with the header
`Nats-Expected-Last-Subject-Sequence: <revision>` the stream stores it only if the key's
last message (a value or a tombstone) is that revision (0: the key never held anything),
and otherwise refuses it (`WrongRevision`). That one header is the fence of the shared
state: a replica writes a key only from the revision it last read or wrote, so of two
replicas writing from one revision, one loses, and learns it.

A delete is the same publish with `KV-Operation: DEL` (a tombstone, with a revision of its
own, that a later create expects).

`write_all` sends many writes at once (bounded), each with its own expected revision,
and reports each one's outcome: the new revision, or the exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import nats.js.errors

from watcher.cluster.bucket import KV_OPERATION, Bucket
from watcher.cluster.leases import WrongRevision, wrong_last_sequence

__all__ = ["WrongRevision", "delete", "put", "write_all"]

EXPECTED = "Nats-Expected-Last-Subject-Sequence"
IN_FLIGHT = 64  # writes sent at once by write_all


async def put(bucket: Bucket, key: str, value: bytes, last: int, within: float) -> int:
    """Write `value` if the key's revision is `last`; its new revision. WrongRevision
    otherwise; NATS errors and TimeoutError (past `within` seconds) as they come: the
    write may then have landed."""
    return await _publish(bucket, key, value, {EXPECTED: str(last)}, within)


async def delete(bucket: Bucket, key: str, last: int, within: float) -> int:
    """A tombstone for `key` if its revision is `last`; the tombstone's revision."""
    return await _publish(bucket, key, b"", {EXPECTED: str(last), KV_OPERATION: "DEL"}, within)


async def _publish(
    bucket: Bucket, key: str, value: bytes, headers: dict[str, str], within: float
) -> int:
    try:
        with anyio.fail_after(within):
            ack = await bucket.js.publish(
                bucket.subject(key), value, timeout=within, headers=headers
            )
    except nats.js.errors.APIError as exc:
        if wrong_last_sequence(exc):
            raise WrongRevision(key) from None
        raise
    return int(ack.seq)


Write = Callable[[], Awaitable[Any]]


async def write_all(writes: Sequence[Write], in_flight: int = IN_FLIGHT) -> list[Any]:
    """Run `writes` with at most `in_flight` at once; each one's result or exception, in
    order."""
    results: list[Any] = [None] * len(writes)
    gate = anyio.Semaphore(max(1, in_flight))

    async def one(index: int) -> None:
        async with gate:
            try:
                results[index] = await writes[index]()
            except Exception as exc:  # reported to the caller, one outcome per write
                results[index] = exc

    async with anyio.create_task_group() as tg:
        for index in range(len(writes)):
            tg.start_soon(one, index)
    return results
