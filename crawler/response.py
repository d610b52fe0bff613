"""The crawl-level Response: the HTTP response plus parsing and link following.

It is the HTTP client's Response adopted in place (no copy of headers or body),
with a selectolax tree built on first use and only once, so a callback that
only reads JSON never pays for HTML parsing and one that runs ten selectors
parses the page once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ._links import extract_links, resolve_url
from .http import Response as HTTPResponse
from .request import Callback, Request

__all__ = ["Response"]

# Request arguments under which a URL seen before is not necessarily a duplicate.
_CHANGES_IDENTITY = frozenset({"dont_filter", "method", "body", "data", "json"})
_ABSOLUTE = ("http://", "https://")


class Response(HTTPResponse):
    """What a spider callback receives.

    ``request`` stays the HTTP request that was sent (after redirects, the last
    one); ``crawl_request`` is the crawl Request that asked for this page, so
    ``meta``, ``depth`` and the callback name are at hand.
    """

    __slots__ = ("_base", "_tree", "_unseen", "crawl_request")

    _base: str | None
    _tree: LexborHTMLParser | None
    _unseen: Callable[[list[str]], list[str]] | None
    crawl_request: Request

    @classmethod
    def from_http(
        cls,
        response: HTTPResponse,
        crawl_request: Request,
        unseen: Callable[[list[str]], list[str]] | None = None,
    ) -> Response:
        """Adopt ``response``. ``unseen(urls)`` drops URLs the crawl already queued."""
        new: Response = cls._adopt(response)
        new._tree = None
        new._base = None
        new._unseen = unseen
        new.crawl_request = crawl_request
        return new

    @property
    def meta(self) -> dict[str, Any]:
        return self.crawl_request.meta

    @property
    def tree(self) -> LexborHTMLParser:
        """The parsed document; parsed on first access (from bytes, so lexbor sniffs)."""
        tree = self._tree
        if tree is None:
            tree = self._tree = LexborHTMLParser(self.content)
        return tree

    def css(self, selector: str) -> list[LexborNode]:
        return self.tree.css(selector)

    def css_first(self, selector: str, default: Any = None) -> Any:
        return self.tree.css_first(selector, default=default)

    def links(self) -> list[str]:
        """Absolute, de-fragmented, page-deduplicated http(s) links of ``<a href>`` and
        ``<area href>`` (image maps), in document order."""
        return extract_links(self.tree, str(self.url))

    def urljoin(self, href: str) -> str | None:
        """``href`` resolved as the page's links are: against its ``<base href>`` if any."""
        if href.startswith(_ABSOLUTE):
            return resolve_url(str(self.url), href)  # no base needed: no parse either
        return resolve_url(self._base_url(), href)

    def _base_url(self) -> str:
        """The URL relative links resolve against, as in ``links()``: the page's own,
        or its first ``<base href>`` when that is a usable http(s) URL."""
        base = self._base
        if base is None:
            base = str(self.url)
            node = self.tree.css_first("base[href]")
            if node is not None:
                base = resolve_url(base, node.attrs["href"] or "") or base
            self._base = base
        return base

    def follow(
        self,
        url_or_node: str | LexborNode,
        callback: Callback | None = None,
        **request_kwargs: Any,
    ) -> Request:
        """A Request for a link relative to this page (a node gives its href or src).

        It goes out in the session this page was fetched in, unless ``session=`` says otherwise.
        """
        if isinstance(url_or_node, str):
            href: str | None = url_or_node
        else:
            attrs = url_or_node.attributes
            href = attrs.get("href") or attrs.get("src")
        if not href:
            raise ValueError(f"cannot follow {url_or_node!r} from {self.url}: it has no URL")
        url = self.urljoin(href)
        if url is None:
            raise ValueError(f"cannot follow {href!r} from {self.url}: not an http(s) URL")
        if "session" not in request_kwargs and self.crawl_request.session is not None:
            request_kwargs["session"] = self.crawl_request.session
        return Request(url, callback=callback, **request_kwargs)

    def follow_all(
        self,
        urls_or_nodes: Iterable[str | LexborNode] | None = None,
        callback: Callback | None = None,
        *,
        css: str | None = None,
        **request_kwargs: Any,
    ) -> list[Request]:
        """Requests for many links; unusable ones (mailto:, empty) are skipped quietly.

        With neither ``urls_or_nodes`` nor ``css``, every link of the page is
        followed. Links the crawl already queued or fetched are left out
        (they would only be dropped as duplicates; the crawl counts them as
        such), unless ``dont_filter``, a method or a body is given.
        """
        unseen = self._unseen
        if unseen is not None and not request_kwargs.keys().isdisjoint(_CHANGES_IDENTITY):
            unseen = None
        if css is None and urls_or_nodes is None:
            urls = self.links()
        else:
            items = self.css(css) if css is not None else urls_or_nodes or ()
            urljoin = self.urljoin
            urls = []
            for item in items:
                if isinstance(item, str):
                    href: str | None = item
                else:
                    attrs = item.attributes
                    href = attrs.get("href") or attrs.get("src")
                if href:
                    url = urljoin(href)
                    if url is not None:
                        urls.append(url)
        if unseen is not None:
            urls = unseen(urls)
        if "session" not in request_kwargs and self.crawl_request.session is not None:
            request_kwargs["session"] = self.crawl_request.session
        return [Request(url, callback, **request_kwargs) for url in urls]

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}] {self.crawl_request.url}>"
