"""Reading sitemaps: bounded gunzip, a streaming XML parse, robots.txt ``Sitemap:`` lines.

A sitemap is someone else's file and may be hostile, so reading it is bounded
in every direction: the decompressed size (a gzip bomb stops at the limit, one
piece at a time, never inflated whole), entities (never expanded: no XXE, no
billion laughs), the network (the parser never fetches a DTD) and memory (the
document is parsed as it is fed, and each entry is dropped from the tree once
read, so a 50 MB sitemap never becomes a 500 MB tree).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from protego import Protego

from ._links import resolve_url

__all__ = ["GZIP_MAGIC", "SitemapError", "SitemapReader", "body_chunks", "robots_sitemaps"]

GZIP_MAGIC = b"\x1f\x8b"
#: Bytes decompressed (or fed to the parser) at a time: the granularity of the size check.
STEP = 64 * 1024
#: The root elements of the two sitemap kinds.
URLSET = "urlset"
SITEMAPINDEX = "sitemapindex"


class SitemapError(ValueError):
    """A sitemap could not be read: not XML, not a sitemap, corrupt gzip, or larger
    than ``sitemap_max_size`` once decompressed. The message names the sitemap's URL."""


def body_chunks(body: bytes, url: str, max_size: int) -> Iterator[bytes]:
    """The sitemap's XML in pieces of at most ``STEP`` bytes, gunzipped if it is gzip.

    A gzipped body is recognised by its magic bytes, whatever its URL or
    Content-Type say (a server that gzipped a ``.xml`` file, or that served a
    ``.xml.gz`` with ``Content-Encoding: gzip`` which the client already undid).
    """
    if not body.startswith(GZIP_MAGIC):
        if len(body) > max_size:
            raise _too_large(url, max_size)
        for start in range(0, len(body), STEP):
            yield body[start : start + STEP]
        return
    size = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as unzipped:
            while chunk := unzipped.read(STEP):
                size += len(chunk)
                if size > max_size:
                    raise _too_large(url, max_size)
                yield chunk
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise SitemapError(f"sitemap {url} is corrupt or truncated gzip data ({exc})") from None


def _too_large(url: str, max_size: int) -> SitemapError:
    return SitemapError(
        f"sitemap {url} is larger than sitemap_max_size ({max_size} bytes) once "
        "decompressed; not read further"
    )


@cache
def _etree() -> Any:
    """lxml's etree, imported with the first sitemap: a crawl without one does not load it."""
    from lxml import etree

    return etree


def _local(tag: Any) -> str | None:
    """``{namespace}name`` -> ``name``; None for comments, entities and the like."""
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2]


def _text(el: Any) -> str | None:
    """The element's text, stripped; None if it holds an entity reference, which is
    never expanded: half a URL (what comes before ``&xxe;``) is no URL to fetch."""
    entity = _etree().Entity
    for child in el:
        if child.tag is entity:
            return None
    return (el.text or "").strip()


def _entry(el: Any) -> dict[str, Any]:
    """One ``<url>`` or ``<sitemap>``: its children by local name (``loc``, ``lastmod``,
    ``changefreq``, ``priority``...) and ``alternate``, the hrefs of its ``<xhtml:link>``s."""
    entry: dict[str, Any] = {}
    for child in el:
        name = _local(child.tag)
        if name is None:
            continue
        if name == "link":
            href = child.get("href")
            if href:
                entry.setdefault("alternate", []).append(href.strip())
            continue
        value = _text(child)
        if value is not None:
            entry[name] = value
    return entry


class SitemapReader:
    """The entries of one sitemap, parsed as its chunks arrive.

    ``type`` (``"urlset"`` or ``"sitemapindex"``) is known once the root element
    has been read, before any entry: ``sitemap_filter`` may look at it. Entries
    without a ``loc`` are skipped. Iterate once.
    """

    def __init__(self, chunks: Iterable[bytes], url: str) -> None:
        self.url = url
        self._chunks = iter(chunks)
        self._parser = _etree().XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        self._depth = 0
        self._root: Any = None
        self._pending: list[tuple[str, Any]] = []
        self.type = self._read_root()

    def _feed(self, chunk: bytes | None) -> list[tuple[str, Any]]:
        """Feed a chunk (None: the end) and return the events it completed."""
        try:
            if chunk is None:
                self._parser.close()
            else:
                self._parser.feed(chunk)
            return list(self._parser.read_events())
        except _etree().XMLSyntaxError as exc:
            raise SitemapError(f"sitemap {self.url} is not well-formed XML: {exc}") from None

    def _read_root(self) -> str:
        empty = True
        for chunk in self._chunks:
            empty = empty and not chunk.strip()
            events = self._feed(chunk)
            if events:
                self._pending = events
                _, root = events[0]
                kind = _local(root.tag)
                if kind not in (URLSET, SITEMAPINDEX):
                    raise SitemapError(
                        f"sitemap {self.url} is not a sitemap: its root element is <{kind}>, "
                        "not <urlset> or <sitemapindex>"
                    )
                return kind
        if empty:
            raise SitemapError(f"sitemap {self.url} is empty")
        self._feed(None)  # raises: the document ended before its root element
        raise SitemapError(f"sitemap {self.url} has no root element")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self._entries(self._pending)
        self._pending = []
        for chunk in self._chunks:
            yield from self._entries(self._feed(chunk))
        yield from self._entries(self._feed(None))

    def _entries(self, events: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
        for event, el in events:
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self._root = el
                continue
            self._depth -= 1
            if self._depth != 1:
                continue
            # A child of the root ended: read it, then drop it and what came before it.
            entry = _entry(el)
            el.clear()
            root = self._root
            while el.getprevious() is not None:
                del root[0]
            if entry.get("loc"):
                yield entry


def robots_sitemaps(text: str, base_url: str) -> list[str]:
    """The ``Sitemap:`` URLs of a robots.txt, made absolute against its URL."""
    found = (resolve_url(base_url, url.strip()) for url in Protego.parse(text).sitemaps)
    return [url for url in found if url is not None]
