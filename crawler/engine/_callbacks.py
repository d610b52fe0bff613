"""Calling spider callbacks, whatever their shape, and routing what they produce.

A callback may be a plain function (returning nothing, one object or an
iterable of them), a generator, a coroutine function or an async generator.
Its kind is found once per callback name, so each call costs one dictionary
lookup and no introspection. Requests it yields go back to the scheduler one
level deeper; anything else is an item for the pipelines.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._sitemap_xml import SitemapError
from ..pipelines._encode import item_adapter
from ..request import Callback, Request
from ..spider import CloseSpider
from ._stats import Stats

if TYPE_CHECKING:
    from ._referer import PageReferrer

__all__ = ["Callbacks", "callback_label"]

log = logging.getLogger("crawler.engine")

_PLAIN, _GEN, _ASYNC, _ASYNC_GEN = range(4)
_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


def _kind(method: Callable[..., Any]) -> int:
    if inspect.isasyncgenfunction(method):
        return _ASYNC_GEN
    if inspect.iscoroutinefunction(method):
        return _ASYNC
    if inspect.isgeneratorfunction(method):
        return _GEN
    return _PLAIN


def callback_label(callback: Callback) -> str:
    """How a callback is named in logs and errors: its name, or its qualified name."""
    if isinstance(callback, str):
        return callback
    func = getattr(callback, "func", callback)  # a functools.partial names its function
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else repr(callback)


def _is_many(value: Any) -> bool:
    # A mapping (UserDict, a Mapping class of one's own) is one item, not its keys; so is
    # a pydantic model, though iterating it gives its fields. A list or tuple is never an
    # item: it is many without asking itemadapter (whose import costs megabytes).
    kind = type(value)
    if kind is list or kind is tuple:
        return True
    return (
        isinstance(value, Iterable)
        and not isinstance(value, str | bytes | Mapping)
        and not item_adapter().is_item(value)
    )


class Callbacks:
    """Runs a spider's callbacks by name; their exceptions are logged, counted and contained."""

    def __init__(
        self,
        spider: object,
        spider_name: str,
        *,
        enqueue: Callable[[Request, PageReferrer | None], object],
        item: Callable[[Any], Awaitable[None]],
        stats: Stats,
        stop: Callable[[str], None],
    ) -> None:
        self.spider = spider
        self._stop = stop
        self.spider_name = spider_name
        self._enqueue = enqueue
        self._item = item
        self._stats = stats
        self._methods: dict[str, tuple[Callable[..., Any], int]] = {}

    def names(self) -> list[str]:
        """The callbacks called so far: those looked up, so counting them costs nothing."""
        return list(self._methods)

    def _lookup(self, name: Callback) -> tuple[Callable[..., Any], int]:
        if not isinstance(name, str):
            # A function, lambda or partial (in-memory crawls only): not cached, since a
            # spider may make a new one per request.
            return name, _kind(name)
        entry = self._methods.get(name)
        if entry is None:
            method = getattr(self.spider, name, None)
            if method is None or not callable(method):
                raise AttributeError(f"spider {self.spider_name} has no callback method {name!r}")
            entry = self._methods[name] = (method, _kind(method))
        return entry

    async def invoke(
        self,
        request: Request,
        name: Callback,
        args: tuple[Any, ...],
        referrer: PageReferrer | None = None,
        kwargs: Mapping[str, Any] = _NO_KWARGS,
    ) -> None:
        """Call ``name(*args, **kwargs)`` for ``request`` and route its output; ``referrer``
        is the page the callback got, which gives the requests it yields their Referer;
        ``kwargs`` are the request's ``cb_kwargs`` (for its callback, not its errback)."""
        route = self._route
        try:
            method, kind = self._lookup(name)
            if kind == _GEN:
                for result in method(*args, **kwargs):
                    await route(request, result, referrer)
            elif kind == _ASYNC_GEN:
                async for result in method(*args, **kwargs):
                    await route(request, result, referrer)
            else:
                out = method(*args, **kwargs)
                if kind == _ASYNC or inspect.isawaitable(out):
                    # A plain decorator around a coroutine function returns its coroutine.
                    out = await out
                if out is None:
                    return
                if isinstance(out, AsyncIterable):
                    # ...or its async generator: iterate it rather than export it as an item.
                    async for result in out:
                        await route(request, result, referrer)
                elif isinstance(out, Request) or not _is_many(out):
                    await route(request, out, referrer)
                else:
                    for result in out:
                        await route(request, result, referrer)
        except CloseSpider as exc:
            log.info(
                "spider %s: callback %s raised CloseSpider(%r) on %s",
                self.spider_name,
                callback_label(name),
                exc.reason,
                request.url,
            )
            self._stop(exc.reason)
        except SitemapError as exc:
            # Bad input, not a bug: its message names the sitemap; no traceback.
            self._stats.errors["sitemap"] += 1
            log.error("spider %s: %s", self.spider_name, exc)
        except Exception:
            self._stats.callback_errors += 1
            log.exception(
                "spider %s: callback %s failed on %s",
                self.spider_name,
                callback_label(name),
                request.url,
            )

    async def _route(self, parent: Request, result: Any, referrer: PageReferrer | None) -> None:
        if isinstance(result, Request):
            result.depth = parent.depth + 1
            self._enqueue(result, referrer)
        elif result is not None:
            await self._item(result)
