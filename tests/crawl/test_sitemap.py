"""SitemapSpider against real loopback sites: indexes, gzip, robots.txt, rules, filters,
and sitemaps that are broken or hostile on purpose."""

from __future__ import annotations

import gzip
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from crawler import Response, SitemapError, SitemapReader, SitemapSpider
from crawler._sitemap_xml import STEP, body_chunks
from tests.crawl.helpers import run_crawler, settings
from tests.servers import serve_asgi

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
XHTML = 'xmlns:xhtml="http://www.w3.org/1999/xhtml"'
XML = "application/xml"
PAGE = b"<html><title>page</title></html>"


def urlset(*locs: str, extra: str = "") -> bytes:
    urls = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    return f'<?xml version="1.0"?>\n<urlset {NS}>{urls}{extra}</urlset>'.encode()


def index(*locs: str) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?>\n<sitemapindex {NS}>{entries}</sitemapindex>'.encode()


class Gzip(bytes):
    """A body to serve gzipped, once ``{base}`` in it is replaced."""


class Site:
    """Serves ``files`` (path -> (content type, body), where ``{base}`` in the body becomes
    the site's URL) and answers every other path with a small page, counting every
    request by path."""

    def __init__(self, files: Mapping[str, tuple[str, bytes]]) -> None:
        self.files = dict(files)
        self.hits: Counter[str] = Counter()
        self.base = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        self.hits[path] += 1
        status, kind, body = 200, "text/html", PAGE
        if path in self.files:
            kind, body = self.files[path]
            substituted = body.replace(b"{base}", self.base.encode())
            body = gzip.compress(substituted) if isinstance(body, Gzip) else substituted
        elif path == "/robots.txt" or path.startswith("/missing"):
            status, body = 404, b"no"
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def pages(self) -> set[str]:
        """The paths fetched that are not sitemaps (nor robots.txt)."""
        return {p for p in self.hits if p not in self.files and p != "/robots.txt"}


@pytest.fixture
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    served = Site(request.param)
    async with serve_asgi(served) as url:
        served.base = url
        yield served


def files(**kw: tuple[str, bytes]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("site", [kw], indirect=True)


class Pages(SitemapSpider):
    """Yields one item per page, naming the callback that got it."""

    name = "pages"

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {"path": response.url.path, "callback": "parse"}


async def crawl(spider: type[SitemapSpider], site: Site, *start: str, **overrides: Any) -> Any:
    """Crawl with ``spider`` from the sitemaps at paths ``start`` of ``site``."""

    class Started(spider):  # type: ignore[valid-type,misc]
        sitemap_urls = [site.base + path for path in start]

    overrides.setdefault("obey_robots", False)
    stats, items, _ = await run_crawler(Started, settings(site.base, **overrides))
    return stats, items


def paths(items: Iterable[dict[str, Any]]) -> set[str]:
    return {item["path"] for item in items}


# -- indexes, gzip, robots.txt -------------------------------------------------------


@files(
    **{
        "/sitemap.xml": (XML, index("{base}/nested-index.xml", "{base}/plain.xml")),
        "/nested-index.xml": (XML, index("{base}/deep.xml.gz", "{base}/gz-by-content")),
        "/plain.xml": (XML, urlset("{base}/a", "{base}/b", "{base}/a")),
        "/deep.xml.gz": ("application/gzip", Gzip(urlset("{base}/c"))),
        # gzip recognised by its bytes, whatever the URL and content type say
        "/gz-by-content": (XML, Gzip(urlset("{base}/d", "{base}/b"))),
    }
)
async def test_indexes_are_followed_recursively_and_gzipped_children_read(site: Site) -> None:
    stats, items = await crawl(Pages, site, "/sitemap.xml")
    assert sorted(i["path"] for i in items) == ["/a", "/b", "/c", "/d"]  # deduplicated
    assert site.hits["/deep.xml.gz"] == site.hits["/gz-by-content"] == 1
    assert set(site.hits.values()) == {1}
    assert stats.errors == {}


@files(
    **{
        "/robots.txt": (
            "text/plain",
            b"User-agent: *\nDisallow: /private/\n"
            b"Sitemap: {base}/one.xml\nsitemap:   /two.xml\nSitemap: mailto:x@example.com\n",
        ),
        "/one.xml": (XML, urlset("{base}/from-one")),
        "/two.xml": (XML, urlset("{base}/from-two", "{base}/private/x")),
    }
)
async def test_robots_txt_sitemap_lines_are_followed_and_its_rules_obeyed(site: Site) -> None:
    stats, items = await crawl(Pages, site, "/robots.txt", obey_robots=True)
    assert paths(items) == {"/from-one", "/from-two"}
    assert stats.dropped["robots"] == 1  # /private/x: a sitemap does not beat robots.txt
    assert site.hits["/one.xml"] == site.hits["/two.xml"] == 1


# -- rules, follow, alternates, filter ------------------------------------------------


def _item(response: Response, callback: str) -> dict[str, Any]:
    return {"path": response.url.path, "callback": callback}


class Ruled(SitemapSpider):
    name = "ruled"

    def parse_special(self, response: Response) -> dict[str, Any]:
        return _item(response, "parse_special")

    sitemap_rules: ClassVar[Any] = [
        ("/product/", "parse_product"),
        (re.compile(r"/product/special|/offer/"), parse_special),  # a method works too
        ("/page/", "parse"),
    ]
    sitemap_follow: ClassVar[Any] = ["/shop-"]

    def parse_product(self, response: Response) -> dict[str, Any]:
        return _item(response, "parse_product")

    def parse(self, response: Response) -> dict[str, Any]:
        return _item(response, "parse")


@files(
    **{
        "/index.xml": (XML, index("{base}/shop-1.xml", "{base}/blog-1.xml")),
        "/shop-1.xml": (
            XML,
            urlset(
                "{base}/product/1",
                "{base}/product/special",
                "{base}/offer/2",
                "{base}/page/3",
                "{base}/elsewhere/4",
            ),
        ),
        "/blog-1.xml": (XML, urlset("{base}/page/blog")),
    }
)
async def test_rules_take_the_first_match_and_follow_picks_index_entries(site: Site) -> None:
    _, items = await crawl(Ruled, site, "/index.xml")
    got = {item["path"]: item["callback"] for item in items}
    assert got == {
        "/product/1": "parse_product",
        "/product/special": "parse_product",  # the first rule that matches wins
        "/offer/2": "parse_special",
        "/page/3": "parse",
    }
    assert "/elsewhere/4" not in site.hits  # no rule: not fetched at all
    assert "/blog-1.xml" not in site.hits  # not followed
    assert site.hits["/shop-1.xml"] == 1


ALTERNATES = urlset(
    extra=(
        f"<url {XHTML}><loc>{{base}}/en</loc>"
        '<xhtml:link rel="alternate" hreflang="de" href="{base}/de"/>'
        '<xhtml:link rel="alternate" hreflang="fr" href="/fr"/></url>'
    )
)


class WithAlternates(Pages):
    sitemap_alternate_links = True


@files(**{"/sitemap.xml": (XML, ALTERNATES)})
async def test_alternate_links_are_crawled_only_when_asked(site: Site) -> None:
    _, plain = await crawl(Pages, site, "/sitemap.xml")
    assert paths(plain) == {"/en"}
    _, both = await crawl(WithAlternates, site, "/sitemap.xml")
    assert paths(both) == {"/en", "/de", "/fr"}


LASTMODS = urlset(
    extra="".join(
        f"<url><loc>{{base}}/{name}</loc>{lastmod}</url>"
        for name, lastmod in (
            ("old", "<lastmod>2023-12-31</lastmod>"),
            ("new-day", "<lastmod>2024-01-01</lastmod>"),
            ("new-time", "<lastmod> 2025-06-01T10:30:00+02:00 </lastmod>"),
            ("undated", ""),
        )
    )
)
SINCE = datetime(2024, 1, 1, tzinfo=UTC)


def _modified(entry: dict[str, Any]) -> datetime:
    stamp = datetime.fromisoformat(entry["lastmod"])
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class Recent(Pages):
    kinds: ClassVar[list[tuple[str, str]]] = []

    def sitemap_filter(self, entries: SitemapReader) -> Iterator[dict[str, Any]]:
        self.kinds.append((entries.type, entries.url.rsplit("/", 1)[1]))
        if entries.type == "sitemapindex":
            yield from entries
            return
        for entry in entries:
            if "lastmod" in entry and _modified(entry) >= SINCE:
                yield entry


@files(
    **{
        "/index.xml": (XML, index("{base}/sitemap.xml")),
        "/sitemap.xml": (XML, LASTMODS),
    }
)
async def test_sitemap_filter_chooses_entries_by_lastmod(site: Site) -> None:
    _, items = await crawl(Recent, site, "/index.xml")
    assert paths(items) == {"/new-day", "/new-time"}
    assert Recent.kinds == [("sitemapindex", "index.xml"), ("urlset", "sitemap.xml")]
    assert "/old" not in site.hits and "/undated" not in site.hits


# -- broken and hostile sitemaps -------------------------------------------------------


def bomb(members: int, member_size: int = 8 * 1024 * 1024) -> bytes:
    """Valid-looking XML (an open urlset, then blanks) that inflates to about
    ``members * member_size`` bytes from a few KB each."""
    member = gzip.compress(b" " * member_size, compresslevel=9, mtime=0)
    return gzip.compress(f"<urlset {NS}>".encode(), mtime=0) + member * members


@files(
    **{
        "/index.xml": (
            XML,
            index(
                "{base}/truncated.xml",
                "{base}/html.xml",
                "{base}/bomb.xml.gz",
                "{base}/corrupt.xml.gz",
                "{base}/empty.xml",
                "{base}/good.xml",
            ),
        ),
        "/truncated.xml": (XML, urlset("{base}/t1")[:-20]),
        "/html.xml": ("text/html", b"<html><body><p>Not found</p></body></html>"),
        "/bomb.xml.gz": ("application/gzip", bomb(8)),
        "/corrupt.xml.gz": ("application/gzip", gzip.compress(urlset("{base}/c"))[:-12]),
        "/empty.xml": (XML, b""),
        "/good.xml": (XML, urlset("{base}/fine")),
    }
)
async def test_unreadable_sitemaps_are_errors_naming_them_and_the_crawl_goes_on(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="crawler.engine"):
        stats, items = await crawl(Pages, site, "/index.xml", sitemap_max_size=1024 * 1024)
    assert paths(items) == {"/fine"}
    assert stats.errors == {"sitemap": 5}
    assert stats.callback_errors == 0
    messages = [r.getMessage() for r in caplog.records]
    base = site.base
    expected = {
        "truncated.xml": "is not well-formed XML",
        "html.xml": "is not a sitemap: its root element is <html>",
        "bomb.xml.gz": "is larger than sitemap_max_size (1048576 bytes) once decompressed",
        "corrupt.xml.gz": "corrupt or truncated gzip data",
        "empty.xml": "is empty",
    }
    for name, what in expected.items():
        found = [m for m in messages if f"sitemap {base}/{name} " in m]
        assert len(found) == 1 and what in found[0], (name, messages)
    assert all("Traceback" not in m for m in messages)


def test_a_gzip_bomb_is_read_no_further_than_the_limit() -> None:
    """1 GiB of blanks from about 1 MB: the default limit stops it at 50 MiB, having
    handed on at most that much, one piece at a time."""
    limit = 50 * 1024 * 1024
    seen = 0
    with pytest.raises(SitemapError, match="larger than sitemap_max_size"):
        for chunk in body_chunks(bomb(128), "http://x/bomb.xml.gz", limit):
            assert len(chunk) <= STEP
            seen += len(chunk)
    assert limit - STEP < seen <= limit
    with pytest.raises(SitemapError, match="larger than sitemap_max_size"):
        list(body_chunks(b"<urlset>" + b" " * 100, "http://x/plain.xml", 100))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOPSECRET", encoding="utf-8")
    return path


def xxe(secret: Path) -> bytes:
    return (
        '<?xml version="1.0"?>\n'
        "<!DOCTYPE urlset [\n"
        f'  <!ENTITY file SYSTEM "file://{secret}">\n'
        '  <!ENTITY remote SYSTEM "{base}/xxe-fetched">\n'
        '  <!ENTITY lol "lollollollollollollollollollol">\n'
        '  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        '  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
        "]>\n"
        f"<urlset {NS}>"
        "<url><loc>{base}/leak/&file;</loc></url>"
        "<url><loc>{base}/remote/&remote;</loc></url>"
        "<url><loc>{base}/laughs/&lol3;</loc></url>"
        "<url><loc>{base}/plain</loc></url>"
        "</urlset>"
    ).encode()


async def test_entities_are_never_expanded(secret: Path) -> None:
    served = Site({"/sitemap.xml": (XML, xxe(secret))})
    async with serve_asgi(served) as url:
        served.base = url
        stats, items = await crawl(Pages, served, "/sitemap.xml")
    assert paths(items) == {"/plain"}  # entries whose loc holds an entity are left out
    assert "/xxe-fetched" not in served.hits
    assert not any("TOPSECRET" in path or "lol" in path for path in served.hits)
    assert not any(path.startswith(("/leak", "/remote")) for path in served.hits)
    assert stats.errors == {}


# -- mistakes in the spider -------------------------------------------------------------


class Misnamed(Pages):
    sitemap_rules: ClassVar[Any] = [("", "parse_pgae")]


class BadRegex(Pages):
    sitemap_follow: ClassVar[Any] = ["(unclosed"]


@files(**{"/sitemap.xml": (XML, index("{base}/child.xml"))})
async def test_rule_mistakes_are_reported_naming_the_rule(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="crawler.engine"):
        stats, _ = await crawl(Misnamed, site, "/sitemap.xml")
        bad, _ = await crawl(BadRegex, site, "/sitemap.xml")
    # Found before anything is fetched.
    assert stats.errors == bad.errors == {"start_requests": 1}
    assert not site.hits
    text = caplog.text
    assert "callback 'parse_pgae' is not a method of the spider" in text
    assert "sitemap_follow: '(unclosed' is not a valid regular expression" in text


@files(
    **{
        "/sitemap.xml": (XML, index("{base}/child.xml")),
        "/child.xml": (XML, urlset("{base}/a", "{base}/b", "{base}/c")),
    }
)
async def test_sitemap_requests_are_ordinary_requests(site: Site) -> None:
    """Depth counts from the first sitemap, and the crawl's limits hold."""

    class Deep(Pages):
        def parse(self, response: Response) -> Iterator[dict[str, Any]]:
            yield {"path": response.url.path, "depth": response.crawl_request.depth}

    _, items = await crawl(Deep, site, "/sitemap.xml")
    assert {(i["path"], i["depth"]) for i in items} == {("/a", 2), ("/b", 2), ("/c", 2)}
    _, limited = await crawl(Deep, site, "/sitemap.xml", depth_limit=1)
    assert limited == []
    assert site.hits["/child.xml"] == 2 and site.hits["/a"] == 1
