"""The demo site's sitemaps over real HTTP: an index, a plain and a gzipped child,
every listed page there to fetch."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest
from lxml import etree

from crawler.demo import DemoApp
from crawler.demo._sitemap import SECTIONS, site_file
from crawler.http import Client
from tests.servers import serve_asgi

NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with serve_asgi(DemoApp()) as url:
        yield url


def locs(body: bytes) -> list[str]:
    return [str(loc) for loc in etree.fromstring(body).xpath("//s:loc/text()", namespaces=NS)]


async def test_the_index_lists_a_plain_and_a_gzipped_child_of_existing_pages(site: str) -> None:
    async with Client() as client:
        index = await client.get(f"{site}/sitemap.xml")
        assert index.status_code == 200
        assert index.headers["content-type"] == "application/xml; charset=utf-8"
        children = locs(index.content)
        assert children == [
            f"{site}/sitemap-quotes.xml.gz",
            f"{site}/sitemap-authors.xml",
            f"{site}/sitemap-books.xml",
        ]
        pages: list[str] = []
        for child in children:
            got = await client.get(child)
            assert got.status_code == 200
            body = got.content
            if child.endswith(".gz"):
                assert got.headers["content-type"] == "application/gzip"
                assert "content-encoding" not in got.headers  # a .gz file, not a coding
                body = gzip.decompress(body)
            pages.extend(locs(body))
        assert len(pages) == 80 == len(set(pages))  # 10 quote pages, 20 authors, 50 books
        assert f"{site}/" in pages and f"{site}/page/10/" in pages
        assert sum("/books/catalogue/" in page for page in pages) == 50
        for page in pages:
            assert (await client.get(page)).status_code == 200, page
        assert (await client.head(f"{site}/sitemap.xml")).content == b""
        assert (await client.post(f"{site}/sitemap.xml")).status_code == 405
        assert (await client.get(f"{site}/sitemap-shop.xml")).status_code == 404


def test_an_odd_host_header_never_reaches_the_xml() -> None:
    """The URLs are made from the Host header only when it is a plain host[:port]."""
    scope = {
        "path": "/sitemap.xml",
        "scheme": "http",
        "headers": [(b"host", b'x"><evil/>')],
        "server": ("127.0.0.1", 8000),
    }
    served = site_file("GET", scope)
    assert served is not None
    assert locs(served[0])[0] == f"http://127.0.0.1:8000/{SECTIONS[0].file}"
    v6 = site_file("GET", {**scope, "headers": [(b"host", b"[::1]:8000")]})
    assert v6 is not None and locs(v6[0])[0].startswith("http://[::1]:8000/")
