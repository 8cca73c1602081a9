"""Reading an answer's body within a cap on its *decoded* size.

httpx would read a whole body into memory, and decompress each chunk of a gzip body in
one go, whatever it expands to: a 2 MB gzip bomb becomes gigabytes before anyone can
look at its size. Here the raw bytes are read as they arrive and decompressed with
zlib's `max_length`, so no more than `cap` (plus one chunk) is ever held, compressed or
not, and the read stops as soon as the answer is known to be too large.

Only the encodings the watcher asks for (`ACCEPT_ENCODING`: gzip, deflate, or none) are
understood; any other, a body that claims gzip and is not, or one cut short, is a
`BodyError` (a malformed answer), never an exception of some library's.
"""

from __future__ import annotations

import zlib

import httpx

ACCEPT_ENCODING = "gzip, deflate"
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


class BodyError(Exception):
    """The body could not be read as the answer it claims to be (`code` says how)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code  # "ResponseTooLarge" or "MalformedResponse"
        self.reason = reason


def too_large(cap: int) -> BodyError:
    return BodyError("ResponseTooLarge", f"the answer is larger than {cap:,} bytes")


class _Inflate:
    """One content coding, undone incrementally with a bound on what each step yields."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self._wbits = _GZIP if name == "gzip" else _ZLIB
        self._z = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._z.decompress(data, room)
        except zlib.error:
            if self.name == "deflate" and not self._started:  # raw deflate, no zlib header
                self._wbits = _RAW
                self._z = zlib.decompressobj(_RAW)
                return self.feed(data, room)
            raise BodyError("MalformedResponse", f"the body is not valid {self.name}") from None
        self._started = True
        if self._z.unconsumed_tail:  # `room` filled up: this stage alone is over the cap
            raise too_large(self.cap)
        if self._z.unused_data.strip():
            raise BodyError("MalformedResponse", f"data after the end of the {self.name} body")
        return out

    def finish(self, room: int) -> bytes:
        try:
            out = self._z.flush(room) if room > 0 else b""
        except zlib.error:
            raise BodyError("MalformedResponse", f"the {self.name} body is cut short") from None
        if not self._z.eof:
            raise BodyError("MalformedResponse", f"the {self.name} body is cut short")
        return out


def _codings(response: httpx.Response) -> list[str]:
    raw = response.headers.get("content-encoding", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    names = [n for n in names if n != "identity"]
    if len(names) > 2 or any(n not in ("gzip", "x-gzip", "deflate") for n in names):
        shown = raw[:40].encode("ascii", "replace").decode()
        raise BodyError("MalformedResponse", f"unsupported content encoding {shown!r}")
    return ["gzip" if n == "x-gzip" else n for n in reversed(names)]  # undone last first


async def read_body(response: httpx.Response, cap: int) -> bytes:
    """The decoded body of a streamed response, at most `cap` bytes, or BodyError."""
    try:  # a transport that hands over whole bodies (httpx.MockTransport): already read
        whole = response.content
    except httpx.ResponseNotRead:
        pass
    else:
        if len(whole) > cap:
            raise too_large(cap)
        return whole
    stages = [_Inflate(name, cap) for name in _codings(response)]
    declared = response.headers.get("content-length", "")
    if not stages and declared.isdigit() and len(declared) < 20 and int(declared) > cap:
        raise too_large(cap)
    out = bytearray()
    raw_seen = 0
    raw_cap = cap + (cap if stages else 0) + 1  # compressed data never outgrows this
    async for chunk in response.aiter_raw():
        raw_seen += len(chunk)
        if raw_seen > raw_cap:
            raise too_large(cap)
        out += _through(stages, chunk, cap + 1 - len(out))
        if len(out) > cap:
            raise too_large(cap)
    for index, stage in enumerate(stages):
        tail = stage.finish(cap + 1 - len(out))
        out += _through(stages[index + 1 :], tail, cap + 1 - len(out))
        if len(out) > cap:
            raise too_large(cap)
    return bytes(out)


def _through(stages: list[_Inflate], data: bytes, room: int) -> bytes:
    """`data` through the remaining stages; each may yield at most `room` bytes (one more
    than the cap allows), so no stage's output outgrows the cap by more than a byte."""
    for stage in stages:
        if not data:
            return b""
        data = stage.feed(data, max(1, room))
    return data
