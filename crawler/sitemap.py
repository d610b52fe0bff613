"""SitemapSpider: crawl the pages a site lists in its sitemaps.

Sitemaps, sitemap indexes and robots.txt files are fetched as ordinary
requests whose callback is ``_parse_sitemap`` (by name, so a ``--job`` crawl
stores and resumes them like any other), and the pages they list become
ordinary requests too: deduplicated, depth-counted, robots-checked, offsite-
filtered. See docs/sitemaps.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ._links import resolve_url
from ._sitemap_xml import (
    SITEMAPINDEX,
    SitemapError,
    SitemapReader,
    body_chunks,
    robots_sitemaps,
)
from .request import Request
from .response import Response
from .spider import Spider

__all__ = ["SitemapError", "SitemapReader", "SitemapSpider"]

#: A callback of ``sitemap_rules``: a spider method, or its name.
RuleCallback = str | Callable[..., Any]
_PARSE_SITEMAP = "_parse_sitemap"


class SitemapSpider(Spider):
    """Subclass it, set ``sitemap_urls`` and write the callbacks of ``sitemap_rules``.

    ``sitemap_urls`` are sitemaps, sitemap indexes (followed recursively) or
    robots.txt URLs (their ``Sitemap:`` lines are followed); gzipped sitemaps
    are read too, up to ``sitemap_max_size`` bytes decompressed.

    ``sitemap_rules`` maps each page URL to its callback: (regex, callback)
    pairs, the first whose regex is found in the URL wins, a URL matching none
    is not crawled. ``sitemap_follow`` are regexes of the index entries worth
    following (all by default). ``sitemap_alternate_links`` also crawls the
    ``<xhtml:link rel="alternate">`` URLs of each entry. ``sitemap_filter``
    chooses entries by what else they say (``lastmod``...).

    A sitemap that cannot be read (not XML, not a sitemap, corrupt, too large)
    is logged as an error naming its URL and counted in the stats as
    ``errors["sitemap"]``; the crawl goes on with the others.
    """

    #: Set on the instance (in ``start_requests``, before ``super()``) when known only at run time.
    sitemap_urls: Sequence[str] = ()
    sitemap_rules: ClassVar[Sequence[tuple[str | re.Pattern[str], RuleCallback]]] = [("", "parse")]
    sitemap_follow: ClassVar[Sequence[str | re.Pattern[str]]] = [""]
    sitemap_alternate_links: ClassVar[bool] = False

    _compiled_rules: list[tuple[re.Pattern[str], str]] | None = None
    _compiled_follow: list[re.Pattern[str]] | None = None

    def start_requests(self) -> Iterable[Request]:
        self._rules()  # a bad rule or regex is reported before anything is fetched
        self._follow()
        return (Request(url, callback=_PARSE_SITEMAP) for url in self.sitemap_urls)

    def sitemap_filter(self, entries: SitemapReader) -> Iterable[dict[str, Any]]:
        """The entries to crawl, from those of one sitemap; by default all of them.

        Each entry is a dict of the ``<url>`` (or, in an index, ``<sitemap>``)
        element's children by name, as text: ``loc`` always, and ``lastmod``,
        ``changefreq``, ``priority`` when given; ``alternate`` is the list of
        its alternate-language URLs. ``entries.type`` says which kind of sitemap
        they come from (``"urlset"`` or ``"sitemapindex"``), ``entries.url`` which
        sitemap. Override it as a generator to skip entries, e.g. by ``lastmod``.
        """
        return entries

    # -- the sitemap callback ---------------------------------------------------------

    def _parse_sitemap(self, response: Response) -> Iterator[Request]:
        url = str(response.url)
        if urlsplit(url).path.endswith("/robots.txt"):
            for sitemap in robots_sitemaps(response.text, url):
                yield Request(sitemap, callback=_PARSE_SITEMAP)
            return
        max_size: int = self.settings.sitemap_max_size
        reader = SitemapReader(body_chunks(response.content, url, max_size), url)
        entries = self.sitemap_filter(reader)
        alternates = self.sitemap_alternate_links
        if reader.type == SITEMAPINDEX:
            follow = self._follow()
            for loc in _locs(entries, alternates, url):
                if any(pattern.search(loc) for pattern in follow):
                    yield Request(loc, callback=_PARSE_SITEMAP)
            return
        rules = self._rules()
        for loc in _locs(entries, alternates, url):
            for pattern, callback in rules:
                if pattern.search(loc):
                    yield Request(loc, callback=callback)
                    break

    # -- rules, compiled once -----------------------------------------------------------

    def _rules(self) -> list[tuple[re.Pattern[str], str]]:
        rules = self._compiled_rules
        if rules is None:
            rules = self._compiled_rules = [
                (_regex(pattern, "sitemap_rules"), self._callback(callback))
                for pattern, callback in self.sitemap_rules
            ]
        return rules

    def _follow(self) -> list[re.Pattern[str]]:
        follow = self._compiled_follow
        if follow is None:
            follow = self._compiled_follow = [
                _regex(pattern, "sitemap_follow") for pattern in self.sitemap_follow
            ]
        return follow

    def _callback(self, callback: RuleCallback) -> str:
        """The name a rule's callback is stored under; checked to be a method here, so a
        typo fails the crawl at its start, not on the first page of a sitemap."""
        name = callback if isinstance(callback, str) else getattr(callback, "__name__", None)
        if not name or not callable(getattr(self, name, None)):
            raise ValueError(
                f"{type(self).__name__}.sitemap_rules: callback {callback!r} is not a method "
                "of the spider (give a method or its name)"
            )
        return name


def _regex(pattern: str | re.Pattern[str], where: str) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: {pattern!r} is not a valid regular expression: {exc}") from None


def _locs(entries: Iterable[dict[str, Any]], alternates: bool, base: str) -> Iterator[str]:
    """The URLs to request, resolved against the sitemap's own URL (which absolute ones,
    as the protocol wants them, do not need); anything but http(s) is left out."""
    for entry in entries:
        locs = entry.get("alternate", ()) if alternates else ()
        for loc in (entry["loc"], *locs):
            url = resolve_url(base, loc)
            if url is not None:
                yield url
