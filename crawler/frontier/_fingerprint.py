"""Canonical URLs, request fingerprints and the seen-request filter.

Two requests are the same when method, canonical URL and body are: the
canonical URL ignores what servers ignore (scheme/host case, default port,
fragment, query parameter order, hex case of percent escapes).

The seen filter is on the crawl's hot path: every extracted link passes
through it and nearly all are duplicates.  A duplicate is usually the very
same string seen before, so a bounded cache of raw URL strings answers most
lookups with one dict probe, and only new strings pay for canonicalising and
hashing.  Fingerprints are 16-byte BLAKE2b digests packed into one table
(FingerprintSet), so the set a long crawl keeps stays small: 23 to 46 bytes
per request instead of ~90 for a Python set (see bench/parse_bench.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from hashlib import blake2b

from .._links import normalize_absolute

__all__ = ["FingerprintSet", "SeenFilter", "canonicalize_url", "request_fingerprint"]

_LOWER_ESCAPE = re.compile(r"%([0-9A-Fa-f][a-f]|[a-f][0-9A-F])")
FINGERPRINT_SIZE = 16


def _upper_escape(match: re.Match[str]) -> str:
    return "%" + match.group(1).upper()


def _param_name(param: str) -> str:
    eq = param.find("=")
    return param if eq < 0 else param[:eq]


def canonicalize_url(url: str) -> str:
    """The form of ``url`` under which equivalent requests compare equal.

    Query parameters are sorted by name with a stable sort, so repeated names
    keep their relative order (``a=2&a=1`` stays distinct from ``a=1&a=2``:
    for many servers that order is data).  Blank values are kept, empty
    parameters (``&&``) and an empty query (``?``) are dropped.  Raises
    ValueError for anything but an absolute http(s) URL.
    """
    norm = normalize_absolute(url)
    if norm is None:
        raise ValueError(f"cannot canonicalize {url!r}: not an absolute http(s) URL")
    if "%" in norm:
        norm = _LOWER_ESCAPE.sub(_upper_escape, norm)
    q = norm.find("?")
    if q < 0:
        return norm
    params = [p for p in norm[q + 1 :].split("&") if p]
    if len(params) > 1:
        params.sort(key=_param_name)
    if not params:
        return norm[:q]
    return norm[: q + 1] + "&".join(params)


def _digest(method: str, canonical_url: str, body: bytes) -> bytes:
    # Neither a method nor a canonical URL contains " " or "\n", so the
    # concatenation cannot make two different requests collide.
    data = f"{method.upper()} {canonical_url}\n".encode()
    if body:
        data += body
    return blake2b(data, digest_size=FINGERPRINT_SIZE).digest()


def request_fingerprint(method: str, url: str, body: bytes = b"") -> bytes:
    """16-byte digest identifying a request: method, canonical URL and body."""
    return _digest(method, canonicalize_url(url), body)


_EMPTY = bytes(FINGERPRINT_SIZE)


class FingerprintSet:
    """A set of 16-byte fingerprints packed into one bytearray.

    A Python set of bytes costs about 90 bytes per fingerprint (object
    header, hash slot, spare room); an open-addressing table of raw 16-byte
    slots kept between 35% and 70% full costs 23 to 46.  A crawl that
    remembers a million requests keeps ~35 MB instead of ~90 MB.  Lookups
    are slower than a set's, which is fine: the seen filter only gets here
    for strings its raw cache has not answered.

    Fingerprints are uniformly distributed digests, so their low bytes serve
    as the hash and linear probing stays short.  An all-zero slot means
    empty; the (never expected) all-zero fingerprint is tracked by a flag.
    """

    __slots__ = ("_count", "_has_zero", "_limit", "_mask", "_table")

    def __init__(self, fingerprints: Iterable[bytes] = ()) -> None:
        self._table = bytearray(1024 * FINGERPRINT_SIZE)
        self._mask = 1023
        self._limit = 1024 * 7 // 10
        self._count = 0
        self._has_zero = False
        for fingerprint in fingerprints:
            self.add(fingerprint)

    def add(self, fingerprint: bytes) -> bool:
        """Insert; True if it was not there yet."""
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise ValueError(
                f"fingerprints are {FINGERPRINT_SIZE} bytes, got {len(fingerprint)}: "
                f"{fingerprint!r}"
            )
        if fingerprint == _EMPTY:
            new = not self._has_zero
            self._has_zero = True
            self._count += new
            return new
        off, found = self._slot_of(fingerprint)
        if found:
            return False
        self._table[off : off + 16] = fingerprint
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True

    def __contains__(self, fingerprint: object) -> bool:
        if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
            return False
        if fingerprint == _EMPTY:
            return self._has_zero
        return self._slot_of(fingerprint)[1]

    def _slot_of(self, fingerprint: bytes) -> tuple[int, bool]:
        """The byte offset of ``fingerprint``'s slot (linear probing), and whether it is
        already there; when it is not, the offset is the empty slot it would take."""
        table = self._table
        mask = self._mask
        i = int.from_bytes(fingerprint, "little") & mask
        while True:
            off = i << 4
            slot = table[off : off + 16]
            if slot == fingerprint:
                return off, True
            if slot == _EMPTY:
                return off, False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        size = (self._mask + 1) * 2
        table = self._table = bytearray(size * FINGERPRINT_SIZE)
        mask = self._mask = size - 1
        self._limit = size * 7 // 10
        for off in range(0, len(old), 16):
            slot = old[off : off + 16]
            if slot == _EMPTY:
                continue
            i = int.from_bytes(slot, "little") & mask
            while table[i << 4 : (i << 4) + 16] != _EMPTY:
                i = (i + 1) & mask
            table[i << 4 : (i << 4) + 16] = slot

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[bytes]:
        if self._has_zero:
            yield _EMPTY
        table = self._table
        for off in range(0, len(table), 16):
            slot = bytes(table[off : off + 16])
            if slot != _EMPTY:
                yield slot

    @property
    def nbytes(self) -> int:
        """Memory held by the table itself."""
        return len(self._table)


class SeenFilter:
    """Remembers which requests were already scheduled.

    ``raw_cache_size`` bounds the raw-string cache (two generations: when the
    young one fills up, the old one is dropped and the young one becomes old,
    so strings linked often stay cached).  The cache only short-cuts lookups;
    answers come from the fingerprint set, which is never trimmed.
    """

    __slots__ = ("_fingerprints", "_old", "_raw_cache_size", "_young")

    def __init__(self, raw_cache_size: int = 50_000, fingerprints: Iterable[bytes] = ()) -> None:
        if raw_cache_size < 1:
            raise ValueError(f"raw_cache_size must be at least 1, got {raw_cache_size}")
        self._raw_cache_size = raw_cache_size
        self._young: set[str] = set()
        self._old: set[str] = set()
        self._fingerprints = FingerprintSet(fingerprints)

    def add_url(self, method: str, url: str, body: bytes = b"") -> bool:
        """Record the request; True if it was not seen before.

        Raises ValueError (from canonicalize_url) for URLs that are not
        absolute http(s) URLs.
        """
        if method == "GET" and not body:
            if url in self._young or url in self._old:
                return False
            fingerprint = _digest(method, canonicalize_url(url), body)
            young = self._young
            if len(young) >= self._raw_cache_size:
                self._old = young
                young = self._young = set()
            young.add(url)
        else:
            fingerprint = _digest(method, canonicalize_url(url), body)
        return self.add_fingerprint(fingerprint)

    def add_fingerprint(self, fingerprint: bytes) -> bool:
        """Record a fingerprint (from request_fingerprint); True if new."""
        return self._fingerprints.add(fingerprint)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._fingerprints

    def __len__(self) -> int:
        return len(self._fingerprints)

    def fingerprints(self) -> Iterator[bytes]:
        """Every recorded fingerprint, for a checkpoint to store."""
        return iter(self._fingerprints)
