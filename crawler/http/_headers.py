"""Case-insensitive, multi-valued, order-preserving HTTP headers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import TypeAlias, Union, overload

from ._exceptions import LocalProtocolError

__all__ = ["HeaderTypes", "Headers", "check_header", "is_token"]

HeaderTypes: TypeAlias = Union[
    "Headers",
    Mapping[str, str],
    Mapping[bytes, bytes],
    Sequence[tuple[str, str]],
    Sequence[tuple[bytes, bytes]],
]

# fullmatch, never match with "$": "$" also matches before a final "\n", which
# would let a name ending in a line break through.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value is visible characters, spaces, tabs and obs-text.
# CR, LF and NUL could split a message; the other control characters cannot,
# but servers and proxies disagree on them (h11 itself refuses them), so they
# are refused too rather than sent on one path and refused on another.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_is_token = _TOKEN.fullmatch
_bad_value = _BAD_VALUE.search


def is_token(text: str) -> bool:
    """Whether ``text`` may be a header name or a method (RFC 9110 token)."""
    return _is_token(text) is not None


def check_header(name: str, value: str) -> None:
    """Refuse a header that would split or smuggle a message, before it is sent.

    Called both when a request is built and by each connection as it encodes
    the head, since auth, cookies and callers change headers in between. A
    credential's value is never repeated in the message: errors end up in logs.
    """
    if _is_token(name) is None:
        raise LocalProtocolError(f"Invalid header name {name!r}")
    if _bad_value(value) is not None:
        shown = "" if name.lower() in _SECRET_HEADERS else f": {value!r}"
        raise LocalProtocolError(f"Invalid character in the value of header {name!r}{shown}")


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Headers(MutableMapping[str, str]):
    """Headers as an ordered list of (name, value) pairs.

    Lookup is case-insensitive; ``headers[name]`` joins repeated values with
    ", " (as RFC 9110 allows) while ``get_list`` keeps them apart, which
    Set-Cookie needs.
    """

    # ``_index`` maps lower-cased names to their values; built on the first
    # lookup and dropped on every change, because response headers are read
    # several times (by each middleware) and changed almost never.
    __slots__ = ("_index", "_items")

    def __init__(self, headers: HeaderTypes | None = None) -> None:
        self._index: dict[str, list[str]] | None = None
        if headers is None:
            self._items: list[tuple[str, str]] = []
        elif isinstance(headers, Headers):
            self._items = list(headers._items)
            self._index = headers._index
        elif isinstance(headers, Mapping):
            self._items = [(_text(k), _text(v)) for k, v in headers.items()]
        else:
            self._items = [(_text(k), _text(v)) for k, v in headers]

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Build from protocol-library output without re-validating it."""
        new = cls.__new__(cls)
        new._items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        new._index = None
        return new

    @classmethod
    def from_triples(cls, triples: Iterable[tuple[bytes, bytes, bytes]]) -> Headers:
        """Build from h11's (name, lower-cased name, value) triples without re-validating."""
        new = cls.__new__(cls)
        new._items = [(k.decode("latin-1"), v.decode("latin-1")) for k, _, v in triples]
        new._index = None
        return new

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for k, v in self._items:
                lk = k.lower()
                values = index.get(lk)
                if values is None:
                    index[lk] = [v]
                else:
                    values.append(v)
            self._index = index
        return index

    # -- reading ---------------------------------------------------------------

    def get_list(self, name: str) -> list[str]:
        return list(self._lookup().get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = self._lookup().get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._lookup().get(name.lower())
        if not values:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._items:
            lk = k.lower()
            if lk not in seen:
                seen.add(lk)
                yield k

    def __len__(self) -> int:
        return len(self._lookup())

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """The pairs as bytes, for the wire; LocalProtocolError names a header that
        is not Latin-1 (the only text HTTP/1.1 and HPACK strings carry)."""
        try:
            return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._items]
        except UnicodeEncodeError:
            for k, v in self._items:
                if not (k + v).isascii():
                    try:
                        k.encode("latin-1"), v.encode("latin-1")
                    except UnicodeEncodeError:
                        raise LocalProtocolError(
                            f"Header {k!r} cannot be sent: its name or value is not Latin-1"
                        ) from None
            raise

    # -- writing ---------------------------------------------------------------

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one value, keeping its position."""
        lname = name.lower()
        present = lname in self._lookup()
        self._index = None
        if not present:
            self._items.append((name, value))
            return
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in self._items:
            if k.lower() != lname:
                out.append((k, v))
            elif not placed:
                out.append((name, value))
                placed = True
        self._items = out

    def __delitem__(self, name: str) -> None:
        lname = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != lname]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept
        self._index = None

    def add(self, name: str, value: str) -> None:
        """Append a value without replacing existing ones."""
        self._items.append((name, value))
        self._index = None

    def setdefault(self, name: str, default: str = "") -> str:
        values = self._lookup().get(name.lower())
        if values:
            return values[0]
        self.add(name, default)
        return default

    def update_from(self, headers: HeaderTypes | None) -> None:
        """Merge ``headers`` in, each name replacing the values it had."""
        if headers:
            for k, v in Headers(headers).multi_items():
                self[k] = v

    def copy(self) -> Headers:
        # Index first, so the copy (and copies of it) share it: a client's
        # default headers are copied into every request and looked up there.
        self._lookup()
        return Headers(self)

    def validate(self) -> None:
        """Raise LocalProtocolError for the first header that could split a message.

        Cheap enough for every request (one set lookup per header once seen):
        a Request checks itself when built, and an HTTP/2 connection checks
        again as it encodes, after auth and cookies have had their turn.
        """
        checked = _CHECKED
        for item in self._items:
            if item not in checked:
                check_header(*item)
                if item[0].lower() in _SECRET_HEADERS:
                    continue  # credentials are not kept around in a process-wide cache
                if len(checked) >= _CHECKED_MAX:
                    checked.clear()
                checked.add(item)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers | Mapping | list):
            return NotImplemented
        mine = sorted((k.lower(), v) for k, v in self._items)
        theirs = sorted((k.lower(), v) for k, v in Headers(other).multi_items())
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [(k, "[secure]" if k.lower() in _SECRET_HEADERS else v) for k, v in self._items]
        return f"Headers({shown!r})"


# Header pairs already found valid: a client sends the same few default
# headers on every request, and two regex matches per header add up.
_CHECKED: set[tuple[str, str]] = set()
_CHECKED_MAX = 4096

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
