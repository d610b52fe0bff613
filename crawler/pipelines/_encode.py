"""Turning items into JSON: the shared encoder and the error that names the bad field.

Plain dicts go straight into the C encoder; every other kind of item (a
dataclass, an object with ``to_dict()``, a mapping) and every value JSON does not
know (datetimes, decimals, sets, paths...) is converted by :func:`json_default`,
which the encoder only calls when it meets such a value. So the common case
pays nothing for the uncommon ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

__all__ = [
    "ENCODE_ERRORS",
    "ItemEncodeError",
    "encode_error",
    "json_default",
    "make_encoder",
    "to_mapping",
]

#: What a failed ``encode()`` raises: unknown types, NaN checks, circular data.
ENCODE_ERRORS = (TypeError, ValueError, RecursionError)


class ItemEncodeError(TypeError):
    """An item holds a value that cannot be written as JSON."""


def json_default(value: Any) -> Any:
    """Convert a value the JSON encoder does not know, or say which type it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    # Decimal as text keeps every digit; a float would round it.
    if isinstance(value, Decimal | uuid.UUID | PurePath):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON serialisable")


def make_encoder() -> Callable[[Any], str]:
    """A compact, non-ASCII-escaping encoder, built once per exporter and reused per item."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default)
    return encoder.encode


def to_mapping(item: Any) -> Mapping[str, Any]:
    """The item's fields by name, for exporters that need columns (CSV, SQLite, validate)."""
    if type(item) is dict:
        return item
    if isinstance(item, Mapping):
        return item
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        fields = to_dict()
        if isinstance(fields, Mapping):
            return fields
    raise ItemEncodeError(
        f"a {type(item).__name__} item has no named fields: yield dicts, dataclasses "
        "or objects with a to_dict() method"
    )


def encode_error(item: Any, exc: BaseException, encode: Callable[[Any], str]) -> ItemEncodeError:
    """Explain a failed encoding by finding the first top-level field that cannot be encoded."""
    kind = type(item).__name__
    try:
        fields = to_mapping(item)
    except ItemEncodeError:
        fields = {}
    for key, value in fields.items():
        try:
            encode(value)
        except ENCODE_ERRORS as field_exc:
            return ItemEncodeError(f"cannot encode field {key!r} of a {kind} item: {field_exc}")
    return ItemEncodeError(f"cannot encode a {kind} item: {exc}")
