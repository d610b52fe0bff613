"""Spider contracts: what a callback promises about one page, written in its docstring.

A callback is contracted when a line of its docstring starts with ``@url``;
every other line of that docstring starting with ``@`` must then be one of::

    @url URL                      the page to run it on (a path: against site_url/start_urls)
    @meta {"key": "value"}        the request's meta, a JSON object
    @cb_kwargs {"key": "value"}   the callback's keyword arguments, a JSON object
    @returns items N [M]          it yields N to M items (no M: at least N)
    @returns requests N [M]       it yields N to M requests
    @scrapes FIELD [FIELD ...]    it yields items, and every item has these fields

A mistake in a contract is a ContractError naming the spider, the callback
and the line, so it is found before any page is fetched.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ..request import Request
from ..spider import Spider
from ._json import json_object

__all__ = ["Callback", "Check", "ContractError", "contracted_callbacks"]

_ARGUMENTS = {"url", "meta", "cb_kwargs"}
_CHECKS = {"returns", "scrapes"}
_KINDS = {"item": "items", "items": "items", "request": "requests", "requests": "requests"}


class ContractError(Exception):
    """A contract that cannot be read: unknown, malformed, or without ``@url``."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One ``@returns`` or ``@scrapes`` line; ``verdict`` says whether the output keeps it."""

    text: str
    kind: str
    words: tuple[str, ...]
    low: int = 0
    high: int | None = None

    def verdict(self, items: Sequence[Any], requests: Sequence[Request]) -> str | None:
        """None if kept; else what was expected and what the callback yielded."""
        if self.kind == "scrapes":
            return _missing_fields(self.words, items)
        count = len(items) if self.words[0] == "items" else len(requests)
        if count >= self.low and (self.high is None or count <= self.high):
            return None
        return f"expected {self._range()} {self.words[0]}, got {count}"

    def _range(self) -> str:
        if self.high is None:
            return f"at least {self.low}"
        if self.high == self.low:
            return f"exactly {self.low}"
        return f"{self.low} to {self.high}"


def _missing_fields(fields: Sequence[str], items: Sequence[Any]) -> str | None:
    if not items:
        return f"expected items with fields {', '.join(fields)}, got no items"
    for number, item in enumerate(items, 1):
        missing = [field for field in fields if not _has(item, field)]
        if missing:
            return (
                f"expected fields {', '.join(fields)} in every item; item {number} of "
                f"{len(items)} lacks {', '.join(missing)} (it has: {_fields_of(item)})"
            )
    return None


def _has(item: Any, field: str) -> bool:
    return field in item if isinstance(item, Mapping) else hasattr(item, field)


def _fields_of(item: Any) -> str:
    if isinstance(item, Mapping):
        names = [str(key) for key in item]
    elif dataclasses.is_dataclass(item):
        names = [f.name for f in dataclasses.fields(item)]
    else:
        names = [name for name in getattr(item, "__dict__", {}) if not name.startswith("_")]
    return ", ".join(names) or "no fields"


@dataclasses.dataclass(frozen=True)
class Callback:
    """A contracted callback: the request its ``@url`` stands for, and its checks."""

    spider: type[Spider]
    name: str
    url: str
    meta: dict[str, Any]
    cb_kwargs: dict[str, Any]
    checks: tuple[Check, ...]

    @property
    def title(self) -> str:
        return f"{self.spider.name}.{self.name}"


def contracted_callbacks(cls: type[Spider]) -> list[Callback]:
    """The callbacks of ``cls`` with contracts, in the order of the source."""
    found = []
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        doc = inspect.getdoc(method) or ""
        lines = [line.strip() for line in doc.splitlines() if line.strip().startswith("@")]
        if lines:
            callback = _parse(cls, name, lines)
            if callback is not None:
                found.append((_line_of(method), callback))
    return [callback for _, callback in sorted(found, key=lambda pair: pair[0])]


def _line_of(method: Any) -> int:
    code = getattr(method, "__code__", None)
    return code.co_firstlineno if code is not None else 0


def _parse(cls: type[Spider], name: str, lines: list[str]) -> Callback | None:
    where = f"spider {cls.name}, callback {name}"
    words = [line.split(None, 1) for line in lines]
    if not any(word[0] == "@url" for word in words):
        if any(word[0][1:] in _CHECKS | _ARGUMENTS - {"url"} for word in words):
            raise ContractError(f"{where}: contracts without @url (the page to check them on)")
        return None
    arguments: dict[str, Any] = {"meta": {}, "cb_kwargs": {}}
    checks = []
    for line, (head, *rest) in zip(lines, words, strict=True):
        key, text = head[1:], (rest[0].strip() if rest else "")
        if key in _ARGUMENTS:
            arguments[key] = _argument(where, line, key, text)
        elif key in _CHECKS:
            checks.append(_check(where, line, key, text))
        else:
            known = ", ".join(f"@{k}" for k in sorted(_ARGUMENTS | _CHECKS))
            raise ContractError(f"{where}: unknown contract {line!r} (known: {known})")
    return Callback(
        cls, name, arguments["url"], arguments["meta"], arguments["cb_kwargs"], tuple(checks)
    )


def _argument(where: str, line: str, key: str, text: str) -> Any:
    if not text:
        raise ContractError(f"{where}: {line!r} needs a value")
    if key == "url":
        if len(text.split()) != 1:
            raise ContractError(f"{where}: {line!r}: one URL (or path) expected")
        return text
    try:
        return json_object(text, f"{where}: {line!r}")
    except ValueError as exc:
        raise ContractError(str(exc)) from None


def _check(where: str, line: str, key: str, text: str) -> Check:
    words = text.split()
    if key == "scrapes":
        if not words:
            raise ContractError(f"{where}: {line!r} names no field")
        return Check(line, key, tuple(words))
    usage = f"{where}: {line!r} should read '@returns items|requests MIN [MAX]'"
    if len(words) not in (2, 3) or words[0] not in _KINDS:
        raise ContractError(usage)
    try:
        bounds = [int(word) for word in words[1:]]
    except ValueError:
        raise ContractError(usage) from None
    low, high = bounds[0], (bounds[1] if len(bounds) == 2 else None)
    if low < 0 or (high is not None and high < low):
        raise ContractError(f"{where}: {line!r}: bounds must be 0 <= MIN <= MAX")
    return Check(line, key, (_KINDS[words[0]],), low, high)
