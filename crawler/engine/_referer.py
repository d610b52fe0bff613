"""The Referer header of the requests a page yields, by a W3C Referrer Policy.

Browsers, wget and Scrapy tell a site which of its pages led to a request;
sites use it for analytics and sometimes to refuse hot-linked requests. The
crawl does the same: a request yielded by a page's callback is sent with the
page's URL (without fragment or credentials) as Referer, trimmed or left out
as the ``referer_policy`` setting says. Start requests have none, and a
Referer the spider set itself is kept.

The policy is applied in the scheduler to requests that passed its filters,
so the many links dropped as duplicates cost nothing here. Requests of one page
that get the same Referer share one (read-only) headers dict: a queued request
without headers of its own then costs a pointer, not a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from .._links import normalize_absolute
from ..request import Request
from ..settings._model import DEFAULT_REFERRER_POLICY as DEFAULT_POLICY
from ..settings._model import REFERRER_POLICIES
from ._robots import origin_of

__all__ = [
    "DEFAULT_POLICY",
    "REFERRER_POLICIES",
    "PageReferrer",
    "redirect_referer",
    "referrer_policy",
    "referrer_source",
]

#: ``policy(source, target)``: the Referer for a request to ``target`` from the page
#: ``source`` (already without fragment and credentials), or None to send none.
Policy = Callable[[str, str], str | None]


def _downgrade(source: str, target: str) -> bool:
    """From a TLS-protected page to a URL that is not (https to http)."""
    return source.startswith("https:") and not target.startswith("https:")


def _same_origin(source: str, target: str) -> bool:
    return origin_of(source) == origin_of(target)


def _origin(source: str) -> str:
    return origin_of(source) + "/"


def _no_referrer(source: str, target: str) -> None:
    return None


def _no_referrer_when_downgrade(source: str, target: str) -> str | None:
    return None if _downgrade(source, target) else source


def _same_origin_only(source: str, target: str) -> str | None:
    return source if _same_origin(source, target) else None


def _origin_only(source: str, target: str) -> str:
    return _origin(source)


def _strict_origin(source: str, target: str) -> str | None:
    return None if _downgrade(source, target) else _origin(source)


def _origin_when_cross_origin(source: str, target: str) -> str:
    return source if _same_origin(source, target) else _origin(source)


def _strict_origin_when_cross_origin(source: str, target: str) -> str | None:
    if _same_origin(source, target):
        return source
    return None if _downgrade(source, target) else _origin(source)


def _unsafe_url(source: str, target: str) -> str:
    return source


_POLICIES: dict[str, Policy] = {
    "no-referrer": _no_referrer,
    "no-referrer-when-downgrade": _no_referrer_when_downgrade,
    "same-origin": _same_origin_only,
    "origin": _origin_only,
    "strict-origin": _strict_origin,
    "origin-when-cross-origin": _origin_when_cross_origin,
    "strict-origin-when-cross-origin": _strict_origin_when_cross_origin,
    "unsafe-url": _unsafe_url,
}


def referrer_policy(name: str) -> Policy:
    """The policy function of ``name`` (one of ``REFERRER_POLICIES``)."""
    try:
        return _POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown referrer policy {name!r}; use one of {', '.join(REFERRER_POLICIES)}"
        ) from None


def referrer_source(url: str) -> str:
    """``url`` as a Referer: without its fragment and its ``user:password@``.

    A URL a spider wrote by hand may hold non-ASCII text, which no header can
    carry: it is percent-encoded first, as the request for it was.
    """
    if not url.isascii():
        url = normalize_absolute(url) or url
    cut = url.find("#")
    if cut >= 0:
        url = url[:cut]
    start = url.find("://") + 3
    end = len(url)
    for sep in "/?":
        found = url.find(sep, start)
        if 0 <= found < end:
            end = found
    at = url.rfind("@", start, end)
    return url if at < 0 else url[:start] + url[at + 1 :]


class _SharedHeaders(dict[str, str]):
    """The headers of several queued requests at once: changing them in place for one
    would change them for all, so it is refused."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "these request headers are shared with other requests of the same page; "
            "give the request a copy instead: request.headers = dict(request.headers)"
        )

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse


def _has_referer(headers: Mapping[str, str]) -> bool:
    return any(name.lower() == "referer" for name in headers)


class PageReferrer:
    """The Referer one page gives the requests it yields; made once per page."""

    __slots__ = ("_policy", "_shared", "source")

    def __init__(self, policy: Policy, page_url: str) -> None:
        self._policy = policy
        self.source = referrer_source(page_url)
        self._shared: dict[str, _SharedHeaders] = {}

    def apply(self, request: Request) -> None:
        """Give ``request`` its Referer, unless the policy says none or it has one."""
        try:
            value = self._policy(self.source, request.url)
        except ValueError:  # not an absolute URL (a dont_filter request skips that check)
            return
        if value is None:
            return
        headers = request.headers
        if headers is None:
            shared = self._shared.get(value)
            if shared is None:
                shared = self._shared[value] = _SharedHeaders(Referer=value)
            request.headers = shared
        elif not _has_referer(headers):
            request.headers = {**headers, "Referer": value}


def redirect_referer(
    policy: Policy, headers: Mapping[str, str] | None, target: str
) -> dict[str, str] | None:
    """``headers`` for the request a redirect leads to: a Referer is checked against the
    policy again for the new URL (a redirect to another origin, or from https to http,
    may have to trim it or leave it out). None when there is nothing to change."""
    if not headers or not _has_referer(headers):
        return None
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() == "referer":
            try:
                kept = policy(referrer_source(value), target)
            except ValueError:  # set by the spider, and no URL: its business
                kept = value
            if kept is None:
                continue
            value = kept
        out[name] = value
    return out
