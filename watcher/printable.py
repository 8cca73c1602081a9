"""Text from the outside made safe to print on a terminal.

An event's fields come from DTS and from whoever can publish on the stream. Printed raw,
an ESC starts a terminal control sequence (clear the screen, move the cursor, OSC 52
writes the clipboard, a hyperlink hides its target), a `\\r` overwrites what the line
showed with a forgery, a C1 character (U+0080 to U+009F) is a control on some terminals,
and bidirectional overrides or zero-width characters make text read other than it is.

`printable(text)` shows each of those as a visible escape instead (`\\x1b`, `\\r`, `\\u202e`):
C0 controls, DEL, C1 controls, the Unicode format characters (category Cf: bidi
controls, zero-width characters, the byte order mark), line and paragraph separators,
and lone surrogates. Everything else, any script included, is printed as it is.

`json_printable(document)` is the same for a JSON document: compact JSON in which those
characters are `\\uXXXX` escapes, still valid JSON that decodes to the same document.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

__all__ = ["json_printable", "printable", "unsafe"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def unsafe(char: str) -> bool:
    """Whether a character must not reach a terminal as it is."""
    code = ord(char)
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
        return True
    if code < 0xA0:
        return False
    return unicodedata.category(char) in ("Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def printable(text: str) -> str:
    """`text` with every unsafe character shown as a visible escape."""
    if text.isascii() and text.isprintable():  # the common case, quickly
        return text
    return "".join(_escape(c) if unsafe(c) else c for c in text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def json_printable(document: Any) -> str:
    """Compact JSON of `document`, unsafe characters as `\\uXXXX` escapes."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() and text.isprintable():
        return text
    return "".join(_json_escape(c) if unsafe(c) else c for c in text)


def _json_escape(char: str) -> str:
    # Outside strings JSON text is printable ASCII, so these are all inside strings,
    # where a \\u escape (a surrogate pair beyond the BMP) means the same character.
    data = char.encode("utf-16-be", "surrogatepass")
    units = (int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    return "".join(f"\\u{unit:04x}" for unit in units)
