"""The crawl-level Request: what spiders yield and the frontier stores.

It is deliberately small and made of plain data (the callback is kept by
name, meta must be JSON-like) so that a durable frontier can store millions
of them and a resumed crawl can rebuild them. The HTTP-level request is built
from it only when a worker sends it.

What the engine needs to know about a request (how often it was retried or
redirected, whether it may be, which error statuses its callback takes) is in
typed fields of its own, stored with it; ``meta`` is left to the spider.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from types import MethodType
from typing import Any, Literal
from urllib.parse import urlencode

from .http import InvalidURL, LocalProtocolError, Proxy, check_header

__all__ = ["Request"]

Callback = Callable[..., Any] | str

#: ``accept_statuses=ALL_STATUSES``: every status reaches the callback.
ALL_STATUSES: Literal["all"] = "all"

AcceptStatuses = frozenset[int] | Literal["all"]

_NO_STATUSES: frozenset[int] = frozenset()


def _accepted(statuses: Iterable[int] | str, url: str) -> AcceptStatuses:
    """``accept_statuses`` checked once, where the spider built the request."""
    if isinstance(statuses, str):
        if statuses == ALL_STATUSES:
            return ALL_STATUSES
        raise ValueError(
            f"accept_statuses of {url} must be status codes or 'all', not {statuses!r}"
        )
    out = frozenset(statuses)
    for status in out:
        if type(status) is not int or not 100 <= status <= 999:
            raise ValueError(
                f"accept_statuses of {url} must be status codes (100-999), not {status!r}"
            )
    return out


def _checked_proxy(proxy: str, url: str) -> str:
    """A request's proxy URL, refused where the spider built the request if unusable."""
    if not isinstance(proxy, str):
        raise TypeError(f"proxy of {url} must be a URL string, not {type(proxy).__name__}")
    if proxy:
        try:
            _parse_proxy(proxy)
        except (ValueError, InvalidURL) as exc:
            raise ValueError(f"proxy of {url}: {exc}") from None
    return proxy


# A spider gives the same few proxies to many requests: each is parsed once.
_parse_proxy = lru_cache(maxsize=64)(Proxy)


def _callback_name(callback: Callback | None) -> str | None:
    if callback is None or isinstance(callback, str):
        return callback
    name = getattr(callback, "__name__", None)
    if name is None or getattr(callback, "__self__", None) is None:
        raise TypeError(
            f"callback must be a spider method or its name, got {callback!r}: "
            "requests are stored by callback name so that crawls can resume"
        )
    return str(name)


def _checked(headers: Mapping[str, str], url: str) -> dict[str, str]:
    """The headers as text, refused here if they could never be sent: a spider learns
    why where it built the request, rather than the request failing in a worker."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        elif not isinstance(value, str):
            raise TypeError(
                f"header {name!r} of {url} must be text, not {type(value).__name__}: {value!r}"
            )
        try:
            check_header(name, value)
            if not value.isascii():
                value.encode("latin-1")  # what HTTP/1.1 can carry
        except (LocalProtocolError, UnicodeEncodeError) as exc:
            raise ValueError(f"header {name!r} of {url}: {exc}") from None
        out[name] = value
    return out


def _plain_statuses(statuses: AcceptStatuses) -> list[int] | str:
    return statuses if isinstance(statuses, str) else sorted(statuses)


class Request:
    """A request to crawl: URL, HTTP fields and crawl bookkeeping.

    ``cb_kwargs`` are keyword arguments of its callback (plain JSON-like data,
    like ``meta``, so that a job can store them). The spider sets how the
    engine treats it: ``dont_retry``, ``dont_redirect``
    (a 3xx reaches the callback), ``accept_statuses`` (error statuses that reach
    the callback rather than fail it: codes, or ``"all"``) and
    ``retry_any_method`` (retry a POST or PATCH too) and ``proxy`` (an HTTP
    proxy URL for this request, above ``[domains]`` and the settings; ``""``
    for none; checked here). The engine keeps
    ``retries`` and ``redirects`` (how many it took to get here) and
    ``cross_origin_redirect`` (a redirect left the first origin: no session auth).
    """

    __slots__ = (
        "accept_statuses",
        "body",
        "callback",
        "cb_kwargs",
        "cross_origin_redirect",
        "depth",
        "dont_filter",
        "dont_redirect",
        "dont_retry",
        "errback",
        "headers",
        "meta",
        "method",
        "priority",
        "proxy",
        "redirects",
        "retries",
        "retry_any_method",
        "session",
        "url",
    )

    def __init__(
        self,
        url: str,
        callback: Callback | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        *,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        dont_filter: bool = False,
        session: str | None = None,
        errback: Callback | None = None,
        depth: int = 0,
        dont_retry: bool = False,
        dont_redirect: bool = False,
        accept_statuses: Iterable[int] | Literal["all"] = (),
        retry_any_method: bool = False,
        cb_kwargs: Mapping[str, Any] | None = None,
        proxy: str | None = None,
    ) -> None:
        # The fast path matters: a page yields a Request per link, and most
        # are duplicates dropped a microsecond later.
        self.url = url if type(url) is str else str(url)
        cb_type = type(callback)
        if cb_type is MethodType:
            self.callback = callback.__name__  # type: ignore[union-attr]
        else:
            self.callback = _callback_name(callback)
        self.errback = None if errback is None else _callback_name(errback)
        self.method = method if method == "GET" else method.upper()
        self.headers: dict[str, str] | None = _checked(headers, self.url) if headers else None
        if data is not None:
            body = urlencode(list(data.items()), doseq=True)
            self._set_default_header("Content-Type", "application/x-www-form-urlencoded")
        elif json is not None:
            body = jsonlib.dumps(json, separators=(",", ":"))
            self._set_default_header("Content-Type", "application/json")
        if body is None:
            self.body: bytes = b""
        else:
            self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.priority = priority
        # A copy: requests made from one dict (follow_all(meta=...)) must not
        # see each other's changes.
        self.meta: dict[str, Any] = dict(meta) if meta else {}
        # Keyword arguments of the callback (not the errback); JSON-like, like meta.
        self.cb_kwargs: dict[str, Any] = dict(cb_kwargs) if cb_kwargs else {}
        self.dont_filter = dont_filter
        self.session = session
        self.depth = depth
        self.dont_retry = dont_retry
        self.dont_redirect = dont_redirect
        self.accept_statuses: AcceptStatuses = (
            _NO_STATUSES if not accept_statuses else _accepted(accept_statuses, self.url)
        )
        self.retry_any_method = retry_any_method
        self.proxy = proxy if proxy is None else _checked_proxy(proxy, self.url)
        self.retries = 0
        self.redirects = 0
        self.cross_origin_redirect = False

    def _set_default_header(self, name: str, value: str) -> None:
        headers = self.headers if self.headers is not None else {}
        if not any(k.lower() == name.lower() for k in headers):
            headers[name] = value
        self.headers = headers

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a durable frontier (body as latin-1 text to stay JSON-safe)."""
        return {
            "url": self.url,
            "callback": self.callback,
            "errback": self.errback,
            "method": self.method,
            "headers": self.headers,
            "body": self.body.decode("latin-1"),
            "priority": self.priority,
            "meta": self.meta,
            "cb_kwargs": self.cb_kwargs,
            "dont_filter": self.dont_filter,
            "session": self.session,
            "depth": self.depth,
            "dont_retry": self.dont_retry,
            "dont_redirect": self.dont_redirect,
            "accept_statuses": _plain_statuses(self.accept_statuses),
            "retry_any_method": self.retry_any_method,
            "proxy": self.proxy,
            "retries": self.retries,
            "redirects": self.redirects,
            "cross_origin_redirect": self.cross_origin_redirect,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        request = cls(
            data["url"],
            callback=data.get("callback"),
            errback=data.get("errback"),
            method=data.get("method", "GET"),
            headers=data.get("headers"),
            body=data.get("body", "").encode("latin-1"),
            priority=data.get("priority", 0),
            meta=data.get("meta"),
            cb_kwargs=data.get("cb_kwargs"),
            dont_filter=data.get("dont_filter", False),
            session=data.get("session"),
            depth=data.get("depth", 0),
            dont_retry=data.get("dont_retry", False),
            dont_redirect=data.get("dont_redirect", False),
            accept_statuses=data.get("accept_statuses", ()),
            retry_any_method=data.get("retry_any_method", False),
            proxy=data.get("proxy"),
        )
        request.retries = data.get("retries", 0)
        request.redirects = data.get("redirects", 0)
        request.cross_origin_redirect = data.get("cross_origin_redirect", False)
        return request

    def replace(self, **changes: Any) -> Request:
        data = self.to_dict()
        data["body"] = self.body.decode("latin-1")
        data.update(changes)
        if isinstance(data.get("body"), bytes):
            data["body"] = data["body"].decode("latin-1")
        return Request.from_dict(data)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"
