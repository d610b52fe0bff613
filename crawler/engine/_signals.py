"""Signals: named moments of a crawl that spiders, middlewares and extensions can hook into.

``crawler.signals.connect("item_scraped", handler)``. A handler may be sync or
``async`` and takes, by name, the arguments of its signal it wants (it is
called with those its signature names, or all of them if it takes
``**kwargs``), so that adding an argument to a signal never breaks a handler.
A handler that raises is logged with its name and counted in the stats'
``errors`` as ``signal_handler``; the crawl goes on.

What a signal costs is decided when the crawl starts: a signal on the path of
every request or item with nothing connected to it (the usual case) is not
looked at, because the crawler then runs the code that does not send it. So
connect handlers before the crawl starts (in ``from_crawler`` or an
``open_spider``), or at the latest in a ``spider_opened`` handler.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal, get_args

import trio

__all__ = ["SIGNALS", "SignalName", "Signals"]

log = logging.getLogger("crawler.engine")

#: The signals and the keyword arguments their handlers may take.
SignalName = Literal[
    "spider_opened",  # spider
    "spider_idle",  # spider; may return or yield Requests to crawl
    "spider_closed",  # spider, reason
    "request_scheduled",  # request, spider
    "request_dropped",  # request, reason, spider
    "response_received",  # response, request, spider
    "item_scraped",  # item, spider
    "item_dropped",  # item, reason, spider
    "item_error",  # item, error, spider
]
SIGNALS: frozenset[str] = frozenset(get_args(SignalName))


class _Handler:
    """One connected callable, with what it accepts and whether to await it, found once."""

    __slots__ = ("accepts", "call", "is_async", "label")

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call = call
        self.is_async = inspect.iscoroutinefunction(call)
        self.label = getattr(call, "__qualname__", None) or repr(call)
        try:
            parameters = inspect.signature(call).parameters.values()
        except (TypeError, ValueError):  # no signature to read: give it everything
            parameters = None
        if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters):
            self.accepts: frozenset[str] | None = None
        else:
            self.accepts = frozenset(
                p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )

    def arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        accepts = self.accepts
        if accepts is None:
            return kwargs
        return {k: v for k, v in kwargs.items() if k in accepts}


class Signals:
    """The signals of one crawl: ``connect(name, handler)``, ``disconnect``, ``send``."""

    def __init__(self, spider_name: str, count_error: Callable[[], None]) -> None:
        self._name = spider_name
        self._count_error = count_error
        self._handlers: dict[str, list[_Handler]] = {}
        #: Where async handlers of signals sent from sync code run (set while crawling).
        self.nursery: trio.Nursery | None = None

    def connect(self, signal: SignalName, handler: Callable[..., Any]) -> None:
        """Call ``handler`` whenever ``signal`` is sent (once per connection)."""
        if signal not in SIGNALS:
            known = ", ".join(sorted(SIGNALS))
            raise ValueError(f"no signal named {signal!r}; the signals are {known}")
        if not callable(handler):
            raise TypeError(f"signal {signal!r}: the handler {handler!r} is not callable")
        self._handlers.setdefault(signal, []).append(_Handler(handler))

    def disconnect(self, signal: SignalName, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``signal`` (nothing happens if it was not connected)."""
        handlers = self._handlers.get(signal, [])
        handlers[:] = [h for h in handlers if h.call != handler]
        if not handlers:
            self._handlers.pop(signal, None)

    def connected(self, signal: SignalName) -> bool:
        """Whether anything listens to ``signal``: the crawler asks once, at the start."""
        return signal in self._handlers

    async def send(self, signal: SignalName, **kwargs: Any) -> list[Any]:
        """Call every handler of ``signal`` in turn; what they returned (``None`` for one
        that failed, which is logged and counted)."""
        results: list[Any] = []
        for handler in tuple(self._handlers.get(signal, ())):
            results.append(await self._call(signal, handler, kwargs))
        return results

    def send_nowait(self, signal: SignalName, **kwargs: Any) -> None:
        """``send`` from sync code (scheduling a request): sync handlers run now, async
        ones as tasks of the crawl (those still running when it ends are cancelled)."""
        for handler in tuple(self._handlers.get(signal, ())):
            if handler.is_async and self.nursery is not None:
                self.nursery.start_soon(self._call, signal, handler, kwargs)
                continue
            try:
                handler.call(**handler.arguments(kwargs))
            except Exception:
                self._failed(signal, handler)

    async def _call(self, signal: str, handler: _Handler, kwargs: dict[str, Any]) -> Any:
        try:
            result = handler.call(**handler.arguments(kwargs))
            if handler.is_async or inspect.isawaitable(result):
                result = await result
        except Exception:
            self._failed(signal, handler)
            return None
        return result

    def _failed(self, signal: str, handler: _Handler) -> None:
        self._count_error()
        log.exception("spider %s: %s handler %s failed", self._name, signal, handler.label)
