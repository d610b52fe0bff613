"""Scrapy-style link extractors: which links of a page to follow, said declaratively.

``LinkExtractor(allow=r"/catalogue/", deny_domains=["ads.example"])`` keeps the
parameters and meaning of Scrapy's, so rules written for Scrapy read the same
here. It runs on the selectolax tree the response already parses and resolves
hrefs with the fast paths of the crawl's own link extraction; everything that
does not depend on the page (regexes, the CSS query, the domain and extension
tables) is built once, when the extractor is made, since one extractor serves
every page of a crawl.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from re import Pattern
from typing import TYPE_CHECKING, Any

from ._links import href_resolver, make_host_filter
from .frontier._fingerprint import canonicalize_url

if TYPE_CHECKING:
    from selectolax.lexbor import LexborNode

    from .response import Response

__all__ = ["IGNORED_EXTENSIONS", "Link", "LinkExtractor"]

#: Extensions of links that are not pages: never followed unless ``deny_extensions`` says
#: otherwise. The same list as Scrapy's, so that a rule behaves as it did there.
IGNORED_EXTENSIONS: tuple[str, ...] = (
    # archives
    *("7z", "7zip", "bz2", "rar", "tar", "tar.gz", "xz", "zip"),
    # images
    *("mng", "pct", "bmp", "gif", "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff"),
    *("ai", "drw", "dxf", "eps", "ps", "svg", "cdr", "ico", "webp"),
    # audio
    *("mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff"),
    # video
    *("3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv"),
    *("m4a", "m4v", "flv", "webm"),
    # office documents
    *("xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx", "ppt", "pptm", "pptx"),
    *("pps", "doc", "docb", "docm", "docx", "dotm", "dotx", "odt", "ods", "odg", "odp"),
    # other
    *("css", "pdf", "exe", "bin", "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js", "hqx"),
)

# What HTML counts as whitespace around an attribute value.
_HTML_SPACE = " \t\n\r\x0c"

Patterns = str | Pattern[str] | Iterable[str | Pattern[str]] | None
Strings = str | Iterable[str] | None


@dataclass(frozen=True, slots=True)
class Link:
    """One link found on a page.

    ``url`` is absolute, with its fragment if the href had one (as in Scrapy);
    ``fragment`` is that fragment without the ``#`` ("" for none); ``text`` the
    anchor's text; ``nofollow`` whether its ``rel`` says ``nofollow``.
    """

    url: str
    text: str = ""
    fragment: str = ""
    nofollow: bool = False


def _strings(value: Strings, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise TypeError(f"LinkExtractor({name}=...) takes strings, not {item!r}")
    return out


def _patterns(value: Patterns, name: str) -> tuple[Pattern[str], ...]:
    """Regexes compiled once: a crawl tests them against every link of every page."""
    if value is None:
        return ()
    items = (value,) if isinstance(value, str | Pattern) else tuple(value)
    out = []
    for item in items:
        if isinstance(item, Pattern):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"LinkExtractor({name}=...) takes regexes, not {item!r}")
        try:
            out.append(re.compile(item))
        except re.error as exc:
            raise ValueError(f"LinkExtractor({name}=...): bad regex {item!r}: {exc}") from None
    return tuple(out)


def _domain_filter(value: Strings, name: str) -> Callable[[str], bool] | None:
    domains = _strings(value, name)
    if not domains:
        return None
    try:
        return make_host_filter(list(domains))
    except ValueError as exc:
        raise ValueError(f"LinkExtractor({name}=...): {exc}") from None


def _extension_of(url: str) -> tuple[str, str]:
    """The last and the last two extensions of a URL's last path segment, lowercase
    (``("gz", "tar.gz")``); the query and fragment are not part of the path."""
    end = len(url)
    for sep in "?#":
        cut = url.find(sep, 0, end)
        if cut >= 0:
            end = cut
    start = url.rfind("/", 0, end) + 1
    segment = url[start:end].lower()
    dot = segment.rfind(".")
    if dot <= 0:
        return "", ""
    prev = segment.rfind(".", 0, dot)
    return segment[dot + 1 :], segment[prev + 1 :] if prev > 0 else ""


def _nofollow(rel: str | None) -> bool:
    return rel is not None and "nofollow" in rel.lower().replace(",", " ").split()


class LinkExtractor:
    """Finds the links of a page that a crawl should follow, as Scrapy's does.

    * ``allow`` / ``deny``: regexes searched (``re.search``) in the absolute URL; a
      link must match one ``allow`` (if any are given) and no ``deny``: deny wins.
    * ``allow_domains`` / ``deny_domains``: a domain matches itself and its subdomains.
    * ``restrict_css`` / ``restrict_xpaths``: only links inside (or being) the elements
      these select.
    * ``tags`` / ``attrs``: which elements and attributes hold links.
    * ``deny_extensions``: extensions never followed; None means ``IGNORED_EXTENSIONS``,
      ``()`` none.
    * ``unique``: each URL once (fragments count: ``a#x`` and ``a#y`` are two links);
      ``canonicalize``: URLs in canonical form (query sorted, fragment dropped).
    * ``process_value``: called with each value (joined with the page's base URL) before
      it is resolved; what it returns is followed instead, None drops the link.
    * ``strip``: strip whitespace around attribute values first.
    """

    __slots__ = (
        "_allow",
        "_allow_domains",
        "_attrs",
        "_deny",
        "_deny_domains",
        "_deny_ext",
        "_query",
        "_restrict_css",
        "_restrict_xpaths",
        "_tags",
        "canonicalize",
        "process_value",
        "strip",
        "unique",
    )

    def __init__(
        self,
        allow: Patterns = (),
        deny: Patterns = (),
        allow_domains: Strings = (),
        deny_domains: Strings = (),
        restrict_xpaths: Strings = (),
        tags: Strings = ("a", "area"),
        attrs: Strings = ("href",),
        canonicalize: bool = False,
        unique: bool = True,
        process_value: Callable[[str], str | None] | None = None,
        deny_extensions: Strings = None,
        restrict_css: Strings = (),
        strip: bool = True,
    ) -> None:
        self._allow = _patterns(allow, "allow")
        self._deny = _patterns(deny, "deny")
        self._allow_domains = _domain_filter(
            _strings(allow_domains, "allow_domains"), "allow_domains"
        )
        self._deny_domains = _domain_filter(_strings(deny_domains, "deny_domains"), "deny_domains")
        self._restrict_xpaths = _strings(restrict_xpaths, "restrict_xpaths")
        self._restrict_css = _strings(restrict_css, "restrict_css")
        self._tags = frozenset(t.lower() for t in _strings(tags, "tags"))
        self._attrs = tuple(a.lower() for a in _strings(attrs, "attrs"))
        if not self._tags or not self._attrs:
            raise ValueError("LinkExtractor needs at least one tag and one attribute to look in")
        extensions = IGNORED_EXTENSIONS if deny_extensions is None else deny_extensions
        self._deny_ext = frozenset(
            e.lower().lstrip(".") for e in _strings(extensions, "deny_extensions")
        )
        # One query finds every candidate element in document order.
        self._query = ", ".join(f"{t}[{a}]" for t in sorted(self._tags) for a in self._attrs)
        self.canonicalize = canonicalize
        self.unique = unique
        self.process_value = process_value
        self.strip = strip

    def __repr__(self) -> str:
        return f"<LinkExtractor {self._query!r}>"

    def extract_links(self, response: Response) -> list[Link]:
        """The page's links that pass every filter, in document order."""
        return self._extract(response, page_resolver(response))

    def _extract(
        self, response: Response, resolve: Callable[[str], str | None] | None
    ) -> list[Link]:
        """``extract_links`` with the page's resolver given: the rules of a CrawlSpider
        share one per page rather than each finding the page's base again."""
        if resolve is None:
            return []
        links: list[Link] = []
        seen_urls: set[str] = set()  # as written: most repeats are the very same string
        seen_keys: set[str] = set()  # canonical: the same page written another way
        resolved: dict[str, str | None] = {}
        unique = self.unique
        # A value repeated on the page (a product's image and title both link it) gives
        # the same URL again: with no process_value to change it, it is skipped first.
        skip_repeats = unique and self.process_value is None
        seen_values: set[str] = set()
        for node in self._candidates(response):
            attrs = node.attributes
            for attr in self._attrs:
                if attr not in attrs:
                    continue
                value = attrs[attr] or ""
                if skip_repeats:
                    if value in seen_values:
                        continue
                    seen_values.add(value)
                url, fragment = self._url(value, resolve, resolved)
                if url is None:
                    continue
                if unique:
                    if url in seen_urls:
                        continue
                    seen_urls.add(url)
                    key = _key(url)
                    if key in seen_keys:
                        continue
                    seen_keys.add(key)
                # The text is read only for links that are kept.
                text: str = node.text(deep=True)
                links.append(Link(url, text, fragment, _nofollow(attrs.get("rel"))))
        return links

    def _candidates(self, response: Response) -> list[LexborNode]:
        """The elements that may hold links: the whole page's, or those in the regions."""
        if not self._restrict_css and not self._restrict_xpaths:
            found: list[LexborNode] = response.tree.css(self._query)
            return found
        regions: list[LexborNode] = []
        for query in self._restrict_css:
            regions.extend(sel.node for sel in response.css(query))
        for query in self._restrict_xpaths:
            regions.extend(sel.node for sel in response.xpath(query) if _is_element(sel.root))
        out: list[LexborNode] = []
        for region in regions:
            if region.tag in self._tags:
                out.append(region)  # the region is itself a link
            out.extend(region.css(self._query))
        return out

    def _url(
        self,
        value: str,
        resolve: Callable[[str], str | None],
        resolved: dict[str, str | None],
    ) -> tuple[str | None, str]:
        """The link's URL as a Link gives it (None: not taken) and its fragment."""
        if self.strip:
            value = value.strip(_HTML_SPACE)
        if self.process_value is not None:
            processed = self.process_value(_joined(resolve, value))
            if processed is None:
                return None, ""
            value = processed
        if value in resolved:
            url = resolved[value]
        else:
            url = resolved[value] = self._allowed(resolve(value))
        if url is None:
            return None, ""
        cut = value.find("#")
        fragment = value[cut + 1 :] if cut >= 0 else ""
        if self.canonicalize:
            return canonicalize_url(url), fragment
        return (f"{url}#{fragment}" if fragment else url), fragment

    def _allowed(self, url: str | None) -> str | None:
        """``url`` if it passes the URL filters (which ignore fragments), else None."""
        if url is None:
            return None
        if self._allow and not any(p.search(url) for p in self._allow):
            return None
        if self._deny and any(p.search(url) for p in self._deny):
            return None
        if self._allow_domains is not None and not self._allow_domains(url):
            return None
        if self._deny_domains is not None and self._deny_domains(url):
            return None
        if self._deny_ext:
            last, last_two = _extension_of(url)
            if last in self._deny_ext or last_two in self._deny_ext:
                return None
        return url


def _key(url: str) -> str:
    """Links that differ only in how their URL is written count as one."""
    cut = url.find("#")
    head = url if cut < 0 else url[:cut]
    try:
        canonical = canonicalize_url(head)
    except ValueError:
        canonical = head
    return canonical if cut < 0 else canonical + url[cut:]


def page_resolver(response: Response) -> Callable[[str], str | None] | None:
    """Resolves the hrefs of ``response`` (its ``<base href>`` honoured); None when the
    page's own URL cannot be a base."""
    return href_resolver(response.tree, str(response.url))


def _joined(resolve: Callable[[str], str | None], value: str) -> str:
    """What ``process_value`` sees: an http(s) href made absolute, anything else as written
    (a ``javascript:`` link, say, whose argument the function picks out)."""
    url = resolve(value)
    if url is None:
        return value
    cut = value.find("#")
    return url if cut < 0 or cut == len(value) - 1 else url + value[cut:]


def _is_element(root: Any) -> bool:
    return not isinstance(root, str)
