"""The demo site's robots.txt and sitemaps, built from lists of page paths.

``/sitemap.xml`` is a sitemap index with one child sitemap per section of the
site; a section is a name and the paths of its pages, so a new section of the
site is one more ``Section`` in ``SECTIONS``. One child is served gzipped
(``.xml.gz``), as large sites do, so that both kinds are there to crawl.

Sitemaps need absolute URLs and the demo runs on whatever port it was given,
so the files are made per origin (the request's Host header, checked to be a
plain host[:port]) and cached.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

from ._books import BOOKS
from ._content import AUTHORS, QUOTES, page_count

__all__ = ["SECTIONS", "Section", "robots_txt", "site_file"]

XML = b"application/xml; charset=utf-8"
GZIP = b"application/gzip"
TEXT = b"text/plain; charset=utf-8"
INDEX = "sitemap.xml"
_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Section:
    """One child sitemap: ``/sitemap-NAME.xml`` (``.xml.gz`` if gzipped) listing ``paths``."""

    name: str
    paths: tuple[str, ...]
    lastmod: str
    gzipped: bool = False

    @property
    def file(self) -> str:
        return f"sitemap-{self.name}.xml" + (".gz" if self.gzipped else "")


def quote_paths() -> tuple[str, ...]:
    """The quotes listing: ``/`` is page 1, then ``/page/2/`` onwards."""
    pages = page_count(len(QUOTES))
    return ("/", *(f"/page/{n}/" for n in range(2, pages + 1)))


def author_paths() -> tuple[str, ...]:
    return tuple(f"/author/{author.slug}" for author in AUTHORS)


def book_paths() -> tuple[str, ...]:
    """The bookshop's product pages (its listings are found by following links)."""
    return tuple(f"/books/{book.path}" for book in BOOKS)


# The content never changes, so neither do the dates.
SECTIONS: tuple[Section, ...] = (
    Section("quotes", quote_paths(), "2024-05-01", gzipped=True),
    Section("authors", author_paths(), "2024-03-01"),
    Section("books", book_paths(), "2024-06-01"),
)
_BY_FILE = {section.file: section for section in SECTIONS}


def robots_txt(origin: str) -> bytes:
    return (f"User-agent: *\nDisallow: /private-archive/\nSitemap: {origin}/{INDEX}\n").encode()


def _urlset(origin: str, section: Section) -> bytes:
    urls = "".join(
        f"  <url><loc>{escape(origin + path)}</loc><lastmod>{section.lastmod}</lastmod></url>\n"
        for path in section.paths
    )
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{_NS}">\n'
    return f"{head}{urls}</urlset>\n".encode()


def _index(origin: str) -> bytes:
    sitemaps = "".join(
        f"  <sitemap><loc>{escape(f'{origin}/{s.file}')}</loc>"
        f"<lastmod>{s.lastmod}</lastmod></sitemap>\n"
        for s in SECTIONS
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{_NS}">\n'
        f"{sitemaps}</sitemapindex>\n"
    ).encode()


@lru_cache(maxsize=64)
def _file(name: str, origin: str) -> tuple[bytes, bytes] | None:
    if name == "robots.txt":
        return robots_txt(origin), TEXT
    if name == INDEX:
        return _index(origin), XML
    section = _BY_FILE.get(name)
    if section is None:
        return None
    body = _urlset(origin, section)
    if section.gzipped:
        return gzip.compress(body, mtime=0), GZIP
    return body, XML


def _origin(scope: MutableMapping[str, Any]) -> str:
    """``scheme://host[:port]`` the client used: its Host header if that is a plain
    host[:port] (so nothing odd lands in the XML), else the address it reached."""
    scheme = scope.get("scheme") or "http"
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
            if _HOST.fullmatch(host):
                return f"{scheme}://{host}"
            break
    server = scope.get("server") or ("127.0.0.1", 80)
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def site_file(method: str, scope: MutableMapping[str, Any]) -> tuple[bytes, bytes] | None:
    """The body and Content-Type of robots.txt or a sitemap; None for any other page."""
    if method not in ("GET", "HEAD"):
        return None
    path: str = scope["path"]
    if path.count("/") != 1 or not (path.endswith((".xml", ".xml.gz")) or path == "/robots.txt"):
        return None
    return _file(path[1:], _origin(scope))
