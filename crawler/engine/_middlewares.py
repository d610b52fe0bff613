"""Crawl middlewares: user code around each exchange, in the order the settings list them.

``middlewares = ["mymodule:RotateUserAgent", "mymodule:Cache"]`` lists them from
the engine's side to the network's side, as Scrapy's priorities sort them from
low to high::

    scheduler -> robots.txt -> process_request: RotateUserAgent, Cache
                                   -> session (cookies, login, auth) -> network
    policy (redirect, retry, fail, callback) <- process_response: Cache, RotateUserAgent
                                   <- the response
    policy (retry, fail) <- process_exception: Cache, RotateUserAgent <- the error

``process_request`` runs once the request has its host slot and robots.txt
allowed it; ``process_response`` and ``process_exception`` run on what the
exchange gave, before the engine follows a redirect, retries or fails it, so a
middleware can serve a response, change one, or turn one into a new request
before any of those decisions. Each redirect hop and each retry is a request
of its own through the scheduler, so it passes through the chain again.

Whether each method exists and is ``async`` is decided once, when the crawl
starts; a crawl without middlewares runs a worker that has no chain at all.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..http import URL, HTTPError
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse
from ..request import Request
from ..response import Response
from ._components import ComponentError
from ._fetch import Failed, Outcome, Skipped

if TYPE_CHECKING:
    from ..spider import Spider
    from ._fetch import Fetcher

__all__ = [
    "MAX_MIDDLEWARE_REQUESTS",
    "DropRequest",
    "Dropped",
    "Middleware",
    "MiddlewareChain",
    "Replaced",
]

log = logging.getLogger("crawler.engine")

#: How many times in a row middlewares may replace a request by another (the count is
#: kept in the new request's ``meta["middleware_requests"]``): past it, the request is
#: dropped as ``middleware_loop``, so that a middleware that always answers with a new
#: request cannot keep a crawl going forever.
MAX_MIDDLEWARE_REQUESTS = 10
_HOPS = "middleware_requests"


class DropRequest(Exception):
    """Raised by a middleware method to drop the request; ``reason`` is counted in the
    stats' ``dropped`` and passed to ``request_dropped`` handlers.

    Keep reasons short and stable (``"blocked_path"``, not the URL): requests are
    counted by reason.
    """

    def __init__(self, reason: str = "dropped") -> None:
        super().__init__(reason)
        self.reason = reason or "dropped"


class Middleware(Protocol):
    """A crawl middleware; every method may be sync or ``async``, and may be left out.

    * ``process_request(request, spider)``: ``None`` to go on (changing ``request``
      in place is fine, its URL aside), a ``Request`` to send instead (it is
      scheduled, the current one is done), or a ``Response`` to answer without
      sending anything (the later middlewares' ``process_request`` are skipped,
      every ``process_response`` still runs).
    * ``process_response(request, response, spider)``: the ``Response`` to go on
      with (the same or another), or a ``Request`` to schedule instead.
    * ``process_exception(request, error, spider)``: ``None`` to let the next one
      and then the engine's retries handle ``error``; a ``Response`` to use as the
      answer; a ``Request`` to schedule instead.

    Any of them may raise :class:`DropRequest`. ``open_spider(spider)`` and
    ``close_spider(spider)`` are called once at the start and the end of the crawl.
    A class is built by its ``from_crawler(crawler)`` class method if it has one.
    """

    def process_request(
        self, request: Request, spider: Spider
    ) -> Request | Response | Awaitable[Request | Response | None] | None: ...

    def process_response(
        self, request: Request, response: Response, spider: Spider
    ) -> Request | Response | Awaitable[Request | Response]: ...

    def process_exception(
        self, request: Request, error: HTTPError, spider: Spider
    ) -> Request | Response | Awaitable[Request | Response | None] | None: ...


@dataclass(frozen=True, slots=True)
class Replaced:
    """A middleware answered with ``request``, to be scheduled in place of the current one."""

    request: Request


@dataclass(frozen=True, slots=True)
class Dropped:
    """The request goes no further: dropped for ``reason``, or ``broken`` by a failing
    middleware (already logged)."""

    reason: str
    broken: bool = False


ChainOutcome = Outcome | Replaced | Dropped


class _Broken(Exception):
    """A middleware method raised or returned something it may not; carries the message."""


class _Hook:
    """One middleware method: its label for messages, the bound call, and whether to await."""

    __slots__ = ("call", "is_async", "label")

    def __init__(self, label: str, call: Callable[..., Any]) -> None:
        self.label = label
        self.call = call
        self.is_async = inspect.iscoroutinefunction(call)

    async def __call__(self, *args: Any) -> Any:
        try:
            result = self.call(*args)
            if self.is_async or inspect.isawaitable(result):
                result = await result
        except DropRequest:
            raise
        except Exception as exc:
            raise _Broken(self.label) from exc
        return result


def _label(middleware: object) -> str:
    cls = type(middleware)
    return f"{cls.__module__}:{cls.__qualname__}"


_METHODS = ("process_request", "process_response", "process_exception")


def _hooks(middlewares: Sequence[object], method: str) -> tuple[_Hook, ...]:
    return tuple(
        _Hook(f"{_label(m)}.{method}", call)
        for m in middlewares
        if callable(call := getattr(m, method, None))
    )


class MiddlewareChain:
    """Runs one request through the middlewares and the fetch step:
    ``await chain.fetch(request)`` -> what the policy acts on, a replacement
    request, or a drop."""

    def __init__(
        self,
        middlewares: Sequence[object],
        spider: Spider,
        spider_name: str,
        fetcher: Fetcher,
        *,
        unseen: Callable[[list[str]], list[str]],
        count_error: Callable[[], None],
    ) -> None:
        for middleware in middlewares:
            if not any(callable(getattr(middleware, name, None)) for name in _METHODS):
                raise ComponentError(
                    f"middleware {_label(middleware)!r} has none of "
                    "process_request, process_response, process_exception"
                )
        self.middlewares = tuple(middlewares)
        self._spider = spider
        self._name = spider_name
        self._fetcher = fetcher
        self._unseen = unseen
        self._count_error = count_error
        # process_request from the engine's side; the others from the network's side.
        self._requests = _hooks(middlewares, "process_request")
        self._responses = _hooks(middlewares[::-1], "process_response")
        self._exceptions = _hooks(middlewares[::-1], "process_exception")
        self._opened: list[object] = []

    def __bool__(self) -> bool:
        return bool(self.middlewares)

    async def open(self) -> None:
        """Call each ``open_spider``, in order; a failure closes those opened and stops
        the crawl before anything is sent."""
        for middleware in self.middlewares:
            hook = getattr(middleware, "open_spider", None)
            if hook is not None:
                try:
                    await _maybe_await(hook(self._spider))
                except Exception as exc:
                    await self.close()
                    raise ComponentError(
                        f"middleware {_label(middleware)!r}: open_spider failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            self._opened.append(middleware)

    async def close(self) -> None:
        """Call each opened middleware's ``close_spider``, last first; failures are logged."""
        opened, self._opened = self._opened, []
        for middleware in reversed(opened):
            hook = getattr(middleware, "close_spider", None)
            if hook is None:
                continue
            try:
                await _maybe_await(hook(self._spider))
            except Exception:
                log.exception(
                    "spider %s: middleware %s: close_spider failed", self._name, _label(middleware)
                )

    async def fetch(self, request: Request) -> ChainOutcome:
        fetcher = self._fetcher
        try:
            skipped = await fetcher.disallowed(request)
            if skipped is not None:
                return skipped
            answer = await self._process_request(request)
            if answer is None:
                outcome = await fetcher.send(request)
                if type(outcome) is Skipped:
                    return outcome
                if type(outcome) is Failed:
                    return await self._process_exception(request, outcome)
                assert isinstance(outcome, HTTPResponse)
                answer = outcome
            elif isinstance(answer, Request):
                return self._replaced(request, answer)
            return await self._process_response(request, answer)
        except DropRequest as exc:
            return Dropped(exc.reason)
        except _Broken as exc:
            self._count_error()
            log.error(
                "spider %s: middleware %s failed on %s %s: %s: %s; the request is dropped",
                self._name,
                exc,
                request.method,
                request.url,
                type(exc.__cause__).__name__,
                exc.__cause__,
                exc_info=exc.__cause__,
            )
            return Dropped("middleware_error", broken=True)

    async def _process_request(self, request: Request) -> Request | HTTPResponse | None:
        spider = self._spider
        for hook in self._requests:
            result = await hook(request, spider)
            if result is None:
                continue
            if isinstance(result, Request | HTTPResponse):
                return result
            raise _wrong(hook, result, "None, a Request or a Response")
        return None

    async def _process_exception(self, request: Request, failed: Failed) -> ChainOutcome:
        spider = self._spider
        for hook in self._exceptions:
            result = await hook(request, failed.error, spider)
            if result is None:
                continue
            if isinstance(result, Request):
                return self._replaced(request, result)
            if isinstance(result, HTTPResponse):
                return await self._process_response(request, result)
            raise _wrong(hook, result, "None, a Request or a Response")
        return failed

    async def _process_response(self, request: Request, answer: HTTPResponse) -> ChainOutcome:
        spider = self._spider
        response = self._crawl_response(request, answer)
        for hook in self._responses:
            result = await hook(request, response, spider)
            if isinstance(result, Request):
                return self._replaced(request, result)
            if not isinstance(result, HTTPResponse):
                raise _wrong(hook, result, "a Response or a Request")
            if result is not response:
                response = self._crawl_response(request, result)
        return response

    def _crawl_response(self, request: Request, answer: HTTPResponse) -> Response:
        """A response as middlewares and callbacks see it: the crawl-level one, with the
        request it answers (one a middleware made may have none: it gets one for its URL,
        so ``url`` and error messages work as for a fetched one)."""
        if answer.request is None:
            answer.request = HTTPRequest(request.method, URL(request.url))
        if isinstance(answer, Response) and getattr(answer, "crawl_request", None) is request:
            return answer
        return Response.from_http(answer, request, self._unseen)

    def _replaced(self, request: Request, new: Request) -> Replaced | Dropped:
        """``new`` goes to the scheduler in place of ``request``: not deduplicated away (it
        is most often the same URL), at the same depth, and counted, so loops end."""
        hops = int(request.meta.get(_HOPS, 0)) + 1
        if hops > MAX_MIDDLEWARE_REQUESTS:
            log.warning(
                "spider %s: middlewares replaced %s %s by a new request %d times in a row; "
                "dropped (middleware_loop)",
                self._name,
                request.method,
                request.url,
                hops - 1,
            )
            return Dropped("middleware_loop")
        if new is request:
            new = request.replace()
        new.dont_filter = True
        new.depth = request.depth
        new.meta[_HOPS] = hops
        return Replaced(new)


def _wrong(hook: _Hook, result: object, expected: str) -> _Broken:
    error = _Broken(hook.label)
    shown = f"{type(result).__name__} {result!r:.100}"
    error.__cause__ = TypeError(f"returned {shown}; expected {expected}")
    return error


async def _maybe_await(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result
