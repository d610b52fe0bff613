"""Turning items into JSON: the shared encoder and the error that names the bad field.

Items may be dicts, any other ``Mapping``, dataclasses, attrs classes, pydantic
models (anything the ``itemadapter`` library knows) or objects with a
``to_dict()`` method. Plain dicts go straight into the C encoder; every other
kind of item and every value JSON does not know (datetimes, decimals, sets,
paths...) is converted by :func:`json_default`, which the encoder only calls
when it meets such a value, and which decides how to convert a type once, the
first time it meets it. So the common case pays nothing for the uncommon ones,
and an uncommon one pays one dictionary look-up for its kind.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itemadapter import ItemAdapter


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

#: The kinds of item a spider may yield, for error messages.
ITEM_KINDS = (
    "dicts or other Mappings, dataclasses, attrs classes, pydantic models, "
    "or objects with a to_dict() method"
)

_Convert = Callable[[Any], Any]

# How each type met so far is converted (None: it cannot be). Types are few in a crawl;
# the bound only keeps classes made on the fly from growing it forever.
_CONVERTERS: dict[type, _Convert | None] = {}
_MAX_CONVERTERS = 1000


class ItemEncodeError(TypeError):
    """An item holds a value that cannot be written as JSON."""


def json_default(value: Any) -> Any:
    """Convert a value the JSON encoder does not know, or say which type it is."""
    kind = type(value)
    try:
        convert = _CONVERTERS[kind]
    except KeyError:
        convert = _converter_for(value)
        if len(_CONVERTERS) < _MAX_CONVERTERS:
            _CONVERTERS[kind] = convert
    if convert is None:
        raise TypeError(f"a value of type {kind.__name__} is not JSON serialisable")
    return convert(value)


def _converter_for(value: Any) -> _Convert | None:
    """How to turn values of ``value``'s type into something JSON knows (or None)."""
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        # One level only: the encoder comes back here for nested values, which is
        # cheaper than dataclasses.asdict() copying the whole tree first.
        names = tuple(f.name for f in dataclasses.fields(value))
        return lambda v: {name: getattr(v, name) for name in names}
    if callable(getattr(value, "to_dict", None)):
        return lambda v: v.to_dict()
    if isinstance(value, Mapping):
        return dict
    if isinstance(value, datetime.date | datetime.time):
        return lambda v: v.isoformat()
    if isinstance(value, set | frozenset):
        return list
    if isinstance(value, enum.Enum):
        return lambda v: v.value
    # Decimal as text keeps every digit; a float would round it.
    if isinstance(value, PurePath) or _is_decimal_or_uuid(value):
        return str
    adapter = item_adapter()
    if adapter.is_item(value):  # attrs classes, pydantic models
        fields = adapter.get_field_names_from_class(type(value))
        if fields and all(hasattr(value, name) for name in fields):
            # Their fields are attributes: reading them is cheaper than an adapter per item.
            names = tuple(fields)
            return lambda v: {name: getattr(v, name) for name in names}
        return lambda v: dict(adapter(v))
    return None


def _is_decimal_or_uuid(value: Any) -> bool:
    """Looked up in the loaded modules rather than imported (decimal and uuid cost a
    crawl about 0.5 MB): an item cannot hold a Decimal or a UUID unless its module is."""
    for module, name in (("decimal", "Decimal"), ("_decimal", "Decimal"), ("uuid", "UUID")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(value, getattr(loaded, name)):
            return True
    return False


@cache
def item_adapter() -> type[ItemAdapter]:
    """itemadapter, imported the first time an item is not a plain dict: importing it
    imports pydantic and attrs when they are installed (about 15 MB), which a crawl
    that yields dicts never needs."""
    from itemadapter import ItemAdapter

    return ItemAdapter


def make_encoder() -> Callable[[Any], str]:
    """A compact, non-ASCII-escaping encoder, built once per exporter and reused per item."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default)
    return encoder.encode


def to_mapping(item: Any) -> Mapping[str, Any]:
    """The item's fields by name, for exporters that need columns (CSV, SQLite, validate).

    Dicts and other mappings are returned as they are; the other kinds are seen
    through an ``ItemAdapter``, which reads their fields without copying them.
    """
    if type(item) is dict or isinstance(item, Mapping):
        return item
    adapter = item_adapter()
    if not isinstance(item, type) and adapter.is_item(item):
        return adapter(item)
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        fields = to_dict()
        if isinstance(fields, Mapping):
            return fields
    raise ItemEncodeError(f"a {type(item).__name__} item has no named fields: yield {ITEM_KINDS}")


def encode_error(item: Any, exc: BaseException, encode: Callable[[Any], str]) -> ItemEncodeError:
    """Explain a failed encoding by finding the first top-level field that cannot be encoded,
    naming it and the type of its value."""
    kind = type(item).__name__
    try:
        fields = to_mapping(item)
    except ItemEncodeError as no_fields:
        return no_fields
    for key, value in fields.items():
        try:
            encode(value)
        except ENCODE_ERRORS as field_exc:
            reason = str(field_exc)
            value_type = type(value).__name__
            if value_type not in reason:
                reason += f" (the value is a {value_type})"
            return ItemEncodeError(f"cannot encode field {key!r} of a {kind} item: {reason}")
    return ItemEncodeError(f"cannot encode a {kind} item: {exc}")
