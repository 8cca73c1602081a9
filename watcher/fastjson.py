"""The fast JSON path: orjson where it gives what the json module gives, json elsewhere.

orjson decodes a 90 KB DTS page in half the time the json module takes and encodes an
event five times faster (docs/performance.md). It is not a drop-in replacement, though:

- decoding, it refuses what the json module accepts beyond the standard (NaN, Infinity,
  lone surrogates, a BOM, UTF-16), and it turns an integer beyond 64 bits into a float;
- encoding, it refuses integers beyond 64 bits, and strings holding a lone surrogate
  (which JSON text can carry as `\ud800`, and the json module decodes).

So each function here tries orjson and falls back to the json module exactly where the
two would differ: callers get the json module's result, sooner.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Every byte that is a digit becomes "0", every other one a space: a run of 19 zeros then
# marks a number orjson would not decode the way the json module does.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


def loads(content: bytes) -> tuple[Any, bool]:
    """Decode `content` exactly as `json.loads` would; (document, True when orjson did).

    Only documents orjson decoded may be fingerprinted by re-encoding them (see
    `watcher.dts.record_cache`): it never yields NaN, infinities or lone surrogates.
    Raises ValueError (or UnicodeDecodeError) for what is not JSON.
    """
    if _LONG_NUMBER not in content.translate(_DIGITS):
        try:
            return orjson.loads(content), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(content), False


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; the same values back from `json.loads` (number spellings may
    differ: 1e16 for 1e+16)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, the text is valid UTF-8
        return json.dumps(value, separators=(",", ":")).encode()


def dumps_text(value: Any) -> str:
    """`dumps` as text (for SQLite TEXT columns)."""
    return dumps(value).decode()
