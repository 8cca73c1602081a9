"""The page cache: a page that comes back byte for byte as it was (but for its RequestId)
is not decoded or parsed again.

A steady listing of 10,000 jobs is 336 pages of 90 KB that say what they said last
time; decoding them (orjson) and looking every record up in the record cache cost more
CPU than the requests themselves. So each successful answer is fingerprinted (SHA-256 of
its bytes, its first `"RequestId"` value left out: DTS gives every answer a new one) and
remembered with its parse under the page it answered (shard, listing, page size and
number); the same fingerprint there next time gives the same parse back, its jobs the
very same objects, and the record-cache entries of its records (`JobCache`) carried
into the listing being read, as if each record had been found again.

Why the bytes without the RequestId are enough: the same bytes decode to the same
document and parse to the same jobs (parsing is deterministic); the first `"RequestId"`
followed by `:` is a key (an unescaped quote in JSON text always delimits a string, so
the sequence cannot sit inside one), and its value is the only part left out, its
position part of the fingerprint. Whatever that key is (the answer's own, or one nested
deeper that a model ignores), answers with equal fingerprints give equal jobs; an answer
without it is fingerprinted whole, and so never matches (DTS's ids differ), which costs
a parse, nothing else.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx

from watcher.dts.exchange import decode
from watcher.dts.models import PageParse
from watcher.dts.record_cache import JobCache

_KEY = b'"RequestId"'
_SPACE = b" \t\r\n"
# (shard label, listing's job type, page size, page number)
PageKey = tuple[str, str, int, int]


@dataclass(frozen=True, slots=True)
class Page:
    """A page as last parsed: its fingerprint, its parse, and the record-cache entries
    its records gave (what `JobCache.seen` gained while it was parsed)."""

    fingerprint: bytes
    parse: PageParse
    entries: tuple[tuple[Any, Any], ...]


def fingerprint(content: bytes) -> tuple[bytes, str | None]:
    """(the fingerprint of an answer, its RequestId as far as it could be read)."""
    digest = hashlib.sha256()
    at = content.find(_KEY)
    if at < 0:
        digest.update(content)
        return digest.digest(), None
    start = _value_start(content, at + len(_KEY))
    end = _string_end(content, start) if start is not None else None
    if start is None or end is None:  # not a string value: left in
        digest.update(content)
        return digest.digest(), None
    digest.update(b"%d:" % start)
    digest.update(memoryview(content)[:start])
    digest.update(memoryview(content)[end:])
    try:
        request_id = json.loads(content[start - 1 : end + 1])
    except ValueError:
        request_id = None
    return digest.digest(), request_id if isinstance(request_id, str) else None


def _value_start(content: bytes, i: int) -> int | None:
    """Just past the opening quote of the string after `: ` from `i`, if there is one."""
    n = len(content)
    while i < n and content[i] in _SPACE:
        i += 1
    if i >= n or content[i] != 0x3A:  # ':'
        return None
    i += 1
    while i < n and content[i] in _SPACE:
        i += 1
    if i >= n or content[i] != 0x22:  # '"'
        return None
    return i + 1


def _string_end(content: bytes, i: int) -> int | None:
    """The index of the quote that closes the string whose text starts at `i`."""
    while True:
        quote = content.find(b'"', i)
        if quote < 0:
            return None
        escapes = 0
        while quote - escapes - 1 >= i and content[quote - escapes - 1] == 0x5C:  # '\\'
            escapes += 1
        if escapes % 2 == 0:
            return quote
        i = quote + 1


class Answer(NamedTuple):
    """A successful answer: its document (None: the very page expected, not decoded),
    whether orjson decoded it (`fastjson.loads`), and its fingerprint when one was
    taken (a page that may be cached)."""

    body: dict[str, Any] | None
    exact: bool
    fingerprint: bytes | None = None
    request_id: str | None = None


def answer(
    region: str,
    response: httpx.Response,
    content: bytes,
    counts: Counter[tuple[str, str]],
    known: Page | None,
) -> Answer:
    """`exchange.decode` of an answer, unless it is the page `known` (a success with the
    same fingerprint): then nothing is decoded. `known`: what `PageCache.expect` says
    (None: a page not to be cached, not even fingerprinted)."""
    if known is None or not response.is_success:
        return Answer(*decode(region, response, content, counts))
    digest, request_id = fingerprint(content)
    if known.fingerprint and digest == known.fingerprint:
        counts[(region, "OK")] += 1
        return Answer(None, True, digest, request_id)
    return Answer(*decode(region, response, content, counts), digest, request_id)


# What `answer` is told when a page may be cached but nothing is known of it yet.
UNKNOWN = Page(
    b"",
    PageParse(
        request_id=None, page_number=None, total_record_count=None, jobs=(), raw_count=0, skipped=0
    ),
    (),
)


class PageCache:
    """The pages of every listing, as last parsed (see the module docstring)."""

    __slots__ = ("_pages",)

    def __init__(self) -> None:
        self._pages: dict[PageKey, Page] = {}

    def expect(self, key: PageKey, cache: JobCache | None) -> Page | None:
        """What to give `answer`: the page as last parsed (UNKNOWN if never), or None
        when it is not to be cached (read without a record cache: a probe)."""
        if cache is None:
            return None
        return self._pages.get(key, UNKNOWN)

    def reuse(self, page: Page, got: Answer, cache: JobCache | None) -> PageParse:
        """The parse of `page`, found again: its records' entries carried into `cache`."""
        if cache is not None:
            cache.seen.update(page.entries)
        if got.request_id == page.parse.request_id:
            return page.parse
        return page.parse.model_copy(update={"request_id": got.request_id})

    def remember(
        self, key: PageKey, got: Answer, parsed: PageParse, cache: JobCache | None, before: int
    ) -> None:
        """Keep a fresh parse for next time, with the entries `cache.seen` gained from the
        `before`-th on (only documents orjson decoded, parsed with a record cache)."""
        if cache is None or not got.exact or got.fingerprint is None:
            return
        entries = tuple(itertools.islice(cache.seen.items(), before, None))
        self._pages[key] = Page(got.fingerprint, parsed, entries)
