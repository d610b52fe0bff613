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
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from .http import (
    Cookie,
    CookieError,
    InvalidURL,
    LocalProtocolError,
    Proxy,
    check_cookie,
    check_header,
)

if TYPE_CHECKING:
    from .response import Response
    from .sessions._forms import Click

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


def _callback_name(callback: Callback | None) -> Callback | None:
    """A spider method becomes its name (what a job stores); any other callable (a
    function, a lambda, a ``functools.partial``) is kept as it is, for an in-memory
    crawl: a ``--job`` crawl refuses it when it is queued."""
    if callback is None or isinstance(callback, str):
        return callback
    if not callable(callback):
        raise TypeError(
            f"callback must be callable or the name of a spider method, got {callback!r}"
        )
    name = getattr(callback, "__name__", None)
    if name is not None and getattr(callback, "__self__", None) is not None:
        return str(name)
    return callback


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


#: What ``cookies=`` takes: ``{name: value}``, or Scrapy's list of dicts with ``name``,
#: ``value`` and optionally ``domain``, ``path`` and ``secure``.
CookiesArg = Mapping[str, Any] | Iterable[Mapping[str, Any]]

_COOKIE_KEYS = frozenset({"name", "value", "domain", "path", "secure"})


def _checked_cookies(cookies: CookiesArg, url: str) -> list[dict[str, Any]]:
    """The request's cookies as plain data a job can store, each checked here, where the
    spider made the request, rather than when a worker sends it."""
    if isinstance(cookies, Mapping):
        given: list[Mapping[str, Any]] = [{"name": k, "value": v} for k, v in cookies.items()]
    elif isinstance(cookies, str | bytes):
        raise TypeError(f"cookies of {url} must be a dict or a list of dicts, not a string")
    else:
        given = list(cookies)
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(given):
        if not isinstance(raw, Mapping) or "name" not in raw or "value" not in raw:
            raise CookieError(
                f"cookie #{index} of {url} must be a dict with 'name' and 'value', got {raw!r}"
            )
        unknown = set(raw) - _COOKIE_KEYS
        if unknown:
            raise CookieError(
                f"cookie {raw['name']!r} of {url} has unknown keys {sorted(unknown)}; "
                f"a cookie takes {sorted(_COOKIE_KEYS)}"
            )
        cookie = Cookie(
            str(raw["name"]),
            str(raw["value"]),
            str(raw.get("domain") or ""),
            str(raw.get("path") or "/"),
            secure=bool(raw.get("secure", False)),
        )
        try:
            check_cookie(cookie)
        except CookieError as exc:
            raise CookieError(f"cookies of {url}: {exc}") from None
        plain: dict[str, Any] = {"name": cookie.name, "value": cookie.value}
        if cookie.domain:
            plain["domain"] = cookie.domain
        if cookie.path != "/":
            plain["path"] = cookie.path
        if cookie.secure:
            plain["secure"] = True
        out.append(plain)
    return out


def _statuses_alias(
    accept_statuses: Iterable[int] | Literal["all"],
    handle_httpstatus_list: Iterable[int] | None,
    handle_httpstatus_all: bool,
    url: str,
) -> Iterable[int] | Literal["all"]:
    """Scrapy's names for ``accept_statuses``, refused when they contradict it."""
    alias: Iterable[int] | Literal["all"] = (
        ALL_STATUSES if handle_httpstatus_all else (handle_httpstatus_list or ())
    )
    if accept_statuses and alias:
        raise ValueError(
            f"request for {url}: give accept_statuses or Scrapy's handle_httpstatus_list/"
            "handle_httpstatus_all, not both"
        )
    return alias or accept_statuses


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
    for none; checked here). Scrapy's ``handle_httpstatus_list=[...]`` and
    ``handle_httpstatus_all=True`` are other names for ``accept_statuses``.
    ``cookies`` (``{name: value}`` or Scrapy's list of dicts with ``name``,
    ``value``, ``domain``, ``path``, ``secure``) are stored in the request's
    session jar just before it is sent, as Scrapy does: they go with this
    request and with later ones the jar finds them for. The engine keeps
    ``retries`` and ``redirects`` (how many it took to get here) and
    ``cross_origin_redirect`` (a redirect left the first origin: no session auth).
    """

    __slots__ = (
        "_cb_kwargs",
        "_meta",
        "accept_statuses",
        "body",
        "callback",
        "cookies",
        "cross_origin_redirect",
        "depth",
        "dont_filter",
        "dont_redirect",
        "dont_retry",
        "errback",
        "headers",
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
        cookies: CookiesArg | None = None,
        handle_httpstatus_list: Iterable[int] | None = None,
        handle_httpstatus_all: bool = False,
    ) -> None:
        # The fast path matters: a page yields a Request per link, and most
        # are duplicates dropped a microsecond later.
        self.url = url if type(url) is str else str(url)
        self.callback: Callback | None
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
        # see each other's changes. None until used (see the meta property).
        self._meta: dict[str, Any] | None = dict(meta) if meta else None
        # Keyword arguments of the callback (not the errback); JSON-like, like meta.
        self._cb_kwargs: dict[str, Any] | None = dict(cb_kwargs) if cb_kwargs else None
        self.dont_filter = dont_filter
        self.session = session
        self.depth = depth
        self.dont_retry = dont_retry
        self.dont_redirect = dont_redirect
        if handle_httpstatus_list is not None or handle_httpstatus_all:
            accept_statuses = _statuses_alias(
                accept_statuses, handle_httpstatus_list, handle_httpstatus_all, self.url
            )
        self.accept_statuses: AcceptStatuses = (
            _NO_STATUSES if not accept_statuses else _accepted(accept_statuses, self.url)
        )
        self.retry_any_method = retry_any_method
        self.proxy = proxy if proxy is None else _checked_proxy(proxy, self.url)
        self.cookies: list[dict[str, Any]] | None = (
            _checked_cookies(cookies, self.url) if cookies else None
        )
        self.retries = 0
        self.redirects = 0
        self.cross_origin_redirect = False

    @property
    def meta(self) -> dict[str, Any]:
        """The spider's data for this request (JSON-like), a dict of its own made the
        first time it is asked for: most requests never have any, and an empty dict
        each would cost a crawl 64 bytes per queued request. The engine reads
        ``_meta`` (None: empty) so as not to make one."""
        meta = self._meta
        if meta is None:
            meta = self._meta = {}
        return meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = value

    @property
    def cb_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the callback; made on first use, as ``meta`` is."""
        kwargs = self._cb_kwargs
        if kwargs is None:
            kwargs = self._cb_kwargs = {}
        return kwargs

    @cb_kwargs.setter
    def cb_kwargs(self, value: dict[str, Any]) -> None:
        self._cb_kwargs = value

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
            "cookies": self.cookies,
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
            cookies=data.get("cookies"),
        )
        request.retries = data.get("retries", 0)
        request.redirects = data.get("redirects", 0)
        request.cross_origin_redirect = data.get("cross_origin_redirect", False)
        return request

    @classmethod
    def from_form(
        cls,
        response: Response,
        *,
        formcss: str | None = None,
        formxpath: str | None = None,
        formname: str | None = None,
        formid: str | None = None,
        formnumber: int = 0,
        formdata: Mapping[str, Any] | None = None,
        clickdata: Click = None,
        dont_click: bool = False,
        method: str | None = None,
        callback: Callback | None = None,
        **request_kwargs: Any,
    ) -> Request:
        """A request that submits a form of ``response`` as a browser would, to yield from
        a callback like any other (Scrapy's ``FormRequest.from_response``).

        The form is the one named ``formname``, else with id ``formid``, else the
        first found by ``formxpath`` or ``formcss`` (an element inside a form picks
        that form), else the form at position ``formnumber``. Its hidden and default
        values are kept (CSRF tokens included) and ``formdata`` goes on top (``None``
        leaves a field out). The first submit button is clicked, or the one
        ``clickdata`` picks (its name or value, or a dict of its attributes, ``nr``
        being its position among the buttons the other keys match); ``dont_click``
        clicks none. ``method`` overrides the form's. Other keywords go to ``Request``;
        it is sent in the session the page was fetched in unless ``session=`` says
        otherwise. A form that is not there raises ``FormError`` naming the page.
        """
        from .sessions._forms import FormError, find_form, form_submission

        page_url = str(response.url)
        tree = response.tree
        if formxpath is not None and formname is None and formid is None:
            form = _form_by_xpath(response, formxpath, page_url)
        else:
            form = find_form(
                tree, page_url, css=formcss, name=formname, form_id=formid, number=formnumber
            )
        submission = form_submission(
            tree,
            form,
            page_url,
            formdata or {},
            click=clickdata,
            dont_click=dont_click,
            method=method,
        )
        headers = {**submission.headers, **(request_kwargs.pop("headers", None) or {})}
        if submission.method != "GET":
            origin = response.url
            headers.setdefault("Origin", f"{origin.scheme}://{origin.netloc}")
        if "session" not in request_kwargs and response.crawl_request.session is not None:
            request_kwargs["session"] = response.crawl_request.session
        if "body" in request_kwargs or "data" in request_kwargs:
            raise FormError(f"from_form on {page_url}: give the form's fields as formdata")
        return cls(
            submission.url,
            callback=callback,
            method=submission.method,
            headers=headers,
            body=submission.body or None,
            **request_kwargs,
        )

    def replace(self, **changes: Any) -> Request:
        data = self.to_dict()
        data["body"] = self.body.decode("latin-1")
        data.update(changes)
        if isinstance(data.get("body"), bytes):
            data["body"] = data["body"].decode("latin-1")
        return Request.from_dict(data)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


def _form_by_xpath(response: Response, query: str, page_url: str) -> Any:
    """The form holding the first node ``query`` finds (or that node, if it is a form)."""
    from .sessions._forms import FormError

    for found in response.xpath(query):
        for form in found.xpath("ancestor-or-self::form[1]"):
            return form._lexbor_twin()
    raise FormError(f"No form holds an element matching XPath {query!r} on {page_url}")
