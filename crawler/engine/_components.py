"""Building the crawl's components (middlewares, extensions) from their names in the settings.

A component is named by import path, ``"module:ClassName"`` (or
``"module.ClassName"``), and built once per crawl: by its ``from_crawler(crawler)``
class method when it has one (to read settings, connect to signals or keep the
crawler), else by calling it with no arguments. That one rule is all a
component author must know, and a bad name fails before anything is sent, with
an error that says which component and what went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

from .._imports import ImportPathError, import_object

if TYPE_CHECKING:
    from ._crawler import Crawler

__all__ = ["ComponentError", "Extension", "build_component", "build_components"]


class ComponentError(ValueError):
    """A middleware or extension named in the settings cannot be found, built or opened."""


class Extension(Protocol):
    """What ``extensions`` names: a class whose ``from_crawler`` connects handlers to
    ``crawler.signals`` (and may keep ``crawler`` for its ``stats``, ``schedule()``...).

    Middlewares may define ``from_crawler`` too; for both it is optional (a class
    without it is called with no arguments), so this protocol is a guide for typing.
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self: ...


def _import(kind: str, spec: str) -> Any:
    if not isinstance(spec, str):
        raise ComponentError(f"{kind} {spec!r}: must be a name like 'module:ClassName'")
    try:
        return import_object(spec)
    except ImportPathError as exc:
        raise ComponentError(f"{kind} {spec!r}: {exc}") from exc.__cause__


def build_component(kind: str, spec: str, crawler: object) -> Any:
    """The component ``spec`` names, built by ``from_crawler(crawler)`` or a bare call."""
    factory = _import(kind, spec)
    if not callable(factory):
        raise ComponentError(f"{kind} {spec!r}: {factory!r} is not a class")
    from_crawler = getattr(factory, "from_crawler", None)
    try:
        if from_crawler is not None:
            return from_crawler(crawler)
        return factory()
    except ComponentError:
        raise
    except Exception as exc:
        how = "from_crawler(crawler)" if from_crawler is not None else "its constructor"
        raise ComponentError(f"{kind} {spec!r}: {how} failed: {type(exc).__name__}: {exc}") from exc


def build_components(kind: str, specs: Sequence[str], crawler: object) -> list[Any]:
    """Every component of a settings list, in its order."""
    if isinstance(specs, str):
        raise ComponentError(f"{kind}s must be a list of names, got the string {specs!r}")
    return [build_component(kind, spec, crawler) for spec in specs]
