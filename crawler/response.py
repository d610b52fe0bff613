"""The crawl-level Response: the HTTP response plus parsing and link following.

It is the HTTP client's Response adopted in place (no copy of headers or body),
with a selectolax tree built on first use and only once, so a callback that
only reads JSON never pays for HTML parsing and one that runs ten selectors
parses the page once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from ._links import extract_links, resolve_url
from .http import Request as HTTPRequest
from .http import Response as HTTPResponse
from .request import Callback, Request
from .selector import (
    Selector,
    SelectorError,
    SelectorList,
    _css,
    _Document,
    _element,
    _xpath,
    document,
)

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

    __slots__ = ("_base", "_doc", "_tree", "_unseen", "crawl_request")

    _base: str | None
    _doc: _Document | None
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
        new._doc = None
        new._base = None
        new._unseen = unseen
        new.crawl_request = crawl_request
        return new

    @classmethod
    def from_body(
        cls,
        url: str,
        body: bytes | str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        request: Request | None = None,
    ) -> Response:
        """A response made without a server, for a recorded page in a test or a saved file
        in ``crawl shell``; ``request`` is the crawl Request it answers (for its meta and
        callback), a GET of ``url`` by default. A str body is sent as UTF-8, and an HTML
        Content-Type is assumed unless ``headers`` name one."""
        content = body.encode("utf-8") if isinstance(body, str) else body
        fields = dict(headers or {})
        if not any(name.lower() == "content-type" for name in fields):
            fields["Content-Type"] = (
                "text/html; charset=utf-8" if isinstance(body, str) else "text/html"
            )
        http = HTTPResponse(
            status, headers=fields, content=content, request=HTTPRequest("GET", url)
        )
        return cls.from_http(http, request if request is not None else Request(url))

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

    def _document(self) -> _Document:
        doc = self._doc
        if doc is None:
            doc = self._doc = document(lambda: self.tree, lambda: self.text)
        return doc

    def css(self, query: str) -> SelectorList:
        """Matches of a CSS selector, Scrapy's ``::text`` and ``::attr(name)`` included.

        Items are ``Selector``s: ``.get()``, ``.css()``, ``.xpath()`` as in Scrapy,
        and for elements the selectolax node's ``css_first()``, ``text()``, ``attributes``.
        """
        return _css(self.tree, query, self._document())

    def css_first(self, query: str, default: Any = None) -> Any:
        """The first match of ``query`` as a ``Selector``, or ``default``."""
        if "::" in query:
            found = self.css(query)
            return found[0] if found else default
        try:
            node = self.tree.css_first(query)
        except SelectolaxError as exc:
            raise SelectorError(f"invalid CSS selector {query!r}: {exc}") from exc
        return default if node is None else _element(node, self._document())

    def xpath(
        self, query: str, namespaces: Mapping[str, str] | None = None, **variables: Any
    ) -> SelectorList:
        """Results of an XPath query on the page; lxml parses the page on the first call."""
        doc = self._document()
        return _xpath(doc.lxml_root(), query, doc, namespaces, variables)

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
        url_or_node: str | Selector | LexborNode,
        callback: Callback | None = None,
        **request_kwargs: Any,
    ) -> Request:
        """A Request for a link relative to this page (a node gives its href or src;
        a selector of ``::attr(href)`` or ``::text`` its string).

        It goes out in the session this page was fetched in, unless ``session=`` says otherwise.
        """
        href = _href(url_or_node)
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
        urls_or_nodes: Iterable[str | Selector | LexborNode] | None = None,
        callback: Callback | None = None,
        *,
        css: str | None = None,
        xpath: str | None = None,
        **request_kwargs: Any,
    ) -> list[Request]:
        """Requests for many links; unusable ones (mailto:, empty) are skipped quietly.

        With neither ``urls_or_nodes`` nor ``css`` nor ``xpath``, every link of the page is
        followed. Links the crawl already queued or fetched are left out
        (they would only be dropped as duplicates; the crawl counts them as
        such), unless ``dont_filter``, a method or a body is given.
        """
        unseen = self._unseen
        if unseen is not None and not request_kwargs.keys().isdisjoint(_CHANGES_IDENTITY):
            unseen = None
        if css is None and xpath is None and urls_or_nodes is None:
            urls = self.links()
        else:
            items: Iterable[str | Selector | LexborNode]
            if css is not None:
                items = self.css(css)
            elif xpath is not None:
                items = self.xpath(xpath)
            else:
                items = urls_or_nodes or ()
            urljoin = self.urljoin
            urls = []
            for item in items:
                href = _href(item)
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


def _href(item: str | Selector | LexborNode) -> str | None:
    """The URL a followed item stands for: a string itself, an element its href or src."""
    if isinstance(item, str):
        return item
    if isinstance(item, Selector):
        root = item.root
        if isinstance(root, str):
            return root
        attrib = item.attrib
        return attrib.get("href") or attrib.get("src")
    attrs = item.attributes
    return attrs.get("href") or attrs.get("src")
