"""Validation: drop items that miss required fields or hold values of the wrong type.

Dropped items are counted by reason (``missing field 'author'``,
``field 'price' is str, not float``), so the crawl summary shows at a glance
which selector stopped matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._encode import to_mapping
from ._runner import DropItem

if TYPE_CHECKING:
    from ..spider import Spider

__all__ = ["ValidatePipeline"]

# "float" accepts ints too (a price of 3 is a fine price); bool is never a number.
_TYPES: Mapping[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict, Mapping),
}
_NUMBERS = frozenset({"int", "float"})


class ValidatePipeline:
    """Options: ``required`` (field names that must be present, not None and not
    empty) and ``types`` (field name to one of str, int, float, bool, list, dict;
    checked when the field is present and not None).
    """

    def __init__(
        self, required: Sequence[str] = (), types: Mapping[str, str] | None = None
    ) -> None:
        if isinstance(required, str):
            raise ValueError(f"required must be a list of field names, got the string {required!r}")
        types = dict(types or {})
        for name, kind in types.items():
            if kind not in _TYPES:
                raise ValueError(
                    f"types: field {name!r} has unknown type {kind!r} "
                    f"(use one of {', '.join(_TYPES)})"
                )
        self.required = tuple(required)
        self.types = types
        # Reasons are built once: they are the keys the drop counter uses.
        self._missing = [(name, f"missing field {name!r}") for name in self.required]
        self._checks = [
            (name, _TYPES[kind], kind in _NUMBERS, f"field {name!r} is {{}}, not {kind}")
            for name, kind in types.items()
        ]

    def open(self, spider: Spider) -> None:
        pass

    def close(self, spider: Spider) -> None:
        pass

    def process_item(self, item: Any, spider: Spider) -> Any:
        fields = to_mapping(item)
        for name, reason in self._missing:
            value = fields.get(name)
            if value is None or value == "":
                raise DropItem(reason)
        for name, accepted, numeric, reason in self._checks:
            value = fields.get(name)
            if value is None:
                continue
            if not isinstance(value, accepted) or (numeric and isinstance(value, bool)):
                raise DropItem(reason.format(type(value).__name__))
        return item

    def __repr__(self) -> str:
        return f"<ValidatePipeline required={list(self.required)} types={self.types}>"
