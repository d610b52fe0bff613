"""LinkExtractor: Scrapy's parameters with Scrapy's meaning, on pages fetched from a
real loopback server (so the page URL, its base and its bytes are what a crawl sees)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from crawler import IGNORED_EXTENSIONS, Link, LinkExtractor, Request, Response
from crawler.http import Client
from tests.servers import serve_asgi

PAGE = """<!DOCTYPE html><html><head><title>Links</title></head><body>
<div id="nav"><a href="/dir/list?sort=new&amp;page=2">Next page</a>
<a href="other.html" rel="Nofollow noopener">Other</a></div>
<div class="content">
 <a href="item/1.html">Item <b>one</b></a>
 <a href="item/1.html#reviews">Reviews</a>
 <a href="item/1.html">Item one again</a>
 <a href="  item/2.html
 ">Item two</a>
 <a href="/files/report.PDF">Report</a>
 <a href="/files/archive.tar.gz">Archive</a>
 <a href="/img/cover.jpg?size=big">Cover</a>
 <a href="/img/cover.jpg.html">A page named after a cover</a>
 <a href="mailto:someone@example.test">Mail</a>
 <a href="javascript:goTo('item/3.html')">Three</a>
 <map name="m"><area href="/map/zone" alt="zone"></map>
 <img src="/img/logo.png" alt="logo">
 <a href="http://sub.example.test/x">Sub</a>
 <a href="http://example.test.evil/y">Evil</a>
 <a href="https://ads.example.test/z">Ad</a>
 <a name="anchor-only">No href</a>
</div>
</body></html>"""

BASED = """<!DOCTYPE html><html><head><base href="/base/"></head><body>
<a href="rel.html">Relative</a> <a href="/abs.html">Absolute</a>
</body></html>"""

PAGES = {"/dir/page.html": PAGE, "/dir/based.html": BASED}


async def _site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = PAGES.get(scope["path"], "missing").encode()
    status = 200 if scope["path"] in PAGES else 404
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def fetch() -> AsyncIterator[Callable[[str], Any]]:
    async with serve_asgi(_site) as base, Client() as client:

        async def get(path: str) -> Response:
            url = base + path
            with trio.fail_after(30):
                http = await client.get(url)
            return Response.from_http(http, Request(url))

        yield get


def urls(links: list[Link], base: str) -> list[str]:
    return [link.url.removeprefix(base) for link in links]


def origin(response: Response) -> str:
    url = str(response.url)
    return url[: url.index("/", 8)]


async def test_defaults_follow_a_and_area_hrefs_in_order_once_without_files(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    links = LinkExtractor().extract_links(page)
    assert urls(links, origin(page)) == [
        "/dir/list?sort=new&page=2",
        "/dir/other.html",
        "/dir/item/1.html",
        "/dir/item/1.html#reviews",  # fragments make another link, as in Scrapy
        "/dir/item/2.html",  # whitespace around the href stripped
        # report.PDF, archive.tar.gz and cover.jpg?size=big: denied extensions
        "/img/cover.jpg.html",
        # mailto: and javascript: are not http(s)
        "/map/zone",
        "http://sub.example.test/x",
        "http://example.test.evil/y",
        "https://ads.example.test/z",
    ]
    first = links[2]
    assert first == Link(origin(page) + "/dir/item/1.html", "Item one", "", False)
    assert links[3].fragment == "reviews" and links[3].text == "Reviews"
    assert [link.nofollow for link in links[:3]] == [False, True, False]
    assert links[6].text == ""  # an <area> has no text


async def test_allow_and_deny_are_searched_in_the_absolute_url_and_deny_wins(
    fetch: Any,
) -> None:
    page = await fetch("/dir/page.html")
    base = origin(page)
    assert urls(LinkExtractor(allow=r"/item/").extract_links(page), base) == [
        "/dir/item/1.html",
        "/dir/item/1.html#reviews",
        "/dir/item/2.html",
    ]
    both = LinkExtractor(allow=[r"/item/", re.compile("example")], deny=(r"2\.html$", "ads"))
    assert urls(both.extract_links(page), base) == [
        "/dir/item/1.html",
        "/dir/item/1.html#reviews",
        "http://sub.example.test/x",
        "http://example.test.evil/y",
    ]
    # The scheme and host are part of what is searched.
    assert urls(LinkExtractor(allow=r"^https://").extract_links(page), base) == [
        "https://ads.example.test/z"
    ]


async def test_domains_match_themselves_and_their_subdomains_only(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    allowed = LinkExtractor(allow_domains="example.test").extract_links(page)
    assert [link.url for link in allowed] == [
        "http://sub.example.test/x",
        "https://ads.example.test/z",
    ]
    denied = LinkExtractor(
        allow_domains=["example.test", "127.0.0.1"], deny_domains=["ads.example.test"]
    ).extract_links(page)
    assert "https://ads.example.test/z" not in [link.url for link in denied]
    assert "http://sub.example.test/x" in [link.url for link in denied]
    assert "http://example.test.evil/y" not in [link.url for link in denied]
    assert len(denied) == 8


async def test_restrict_css_and_xpaths_keep_the_links_inside_the_regions(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    base = origin(page)
    nav = ["/dir/list?sort=new&page=2", "/dir/other.html"]
    assert urls(LinkExtractor(restrict_css="#nav").extract_links(page), base) == nav
    by_xpath = LinkExtractor(restrict_xpaths='//div[@id="nav"]').extract_links(page)
    assert urls(by_xpath, base) == nav
    # A region that is itself a link counts, as in Scrapy.
    rel = LinkExtractor(restrict_xpaths="//a[@rel]").extract_links(page)
    assert urls(rel, base) == ["/dir/other.html"]
    both = LinkExtractor(restrict_css="map", restrict_xpaths="//div[@id='nav']/a[1]")
    assert urls(both.extract_links(page), base) == ["/map/zone", "/dir/list?sort=new&page=2"]
    assert LinkExtractor(restrict_css="#absent").extract_links(page) == []


async def test_tags_attrs_and_deny_extensions(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    base = origin(page)
    images = LinkExtractor(tags="img", attrs=("src",), deny_extensions=())
    assert urls(images.extract_links(page), base) == ["/img/logo.png"]
    # The default list denies .png; the extension check is case-insensitive and
    # ignores the query; "tar.gz" in the list denies .tar.gz files.
    assert LinkExtractor(tags="img", attrs="src").extract_links(page) == []
    everything = LinkExtractor(deny_extensions=[])
    assert {"/files/report.PDF", "/files/archive.tar.gz", "/img/cover.jpg?size=big"} <= set(
        urls(everything.extract_links(page), base)
    )
    only_pdf = LinkExtractor(deny_extensions=[".pdf"], allow="/files/|/img/")
    assert urls(only_pdf.extract_links(page), base) == [
        "/files/archive.tar.gz",
        "/img/cover.jpg?size=big",
        "/img/cover.jpg.html",
    ]
    assert {"pdf", "jpg", "png", "zip", "mp4", "docx", "css", "js"} <= set(IGNORED_EXTENSIONS)


async def test_unique_canonicalize_and_process_value(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    base = origin(page)
    repeated = LinkExtractor(unique=False, allow="/item/").extract_links(page)
    assert [(link.url.removeprefix(base), link.text) for link in repeated] == [
        ("/dir/item/1.html", "Item one"),
        ("/dir/item/1.html#reviews", "Reviews"),
        ("/dir/item/1.html", "Item one again"),
        ("/dir/item/2.html", "Item two"),
    ]
    canonical = LinkExtractor(canonicalize=True, restrict_css="div").extract_links(page)
    assert urls(canonical, base)[:4] == [
        "/dir/list?page=2&sort=new",  # query sorted
        "/dir/other.html",
        "/dir/item/1.html",  # the #reviews link is the same page now: once
        "/dir/item/2.html",
    ]

    def from_javascript(value: str) -> str | None:
        found = re.search(r"goTo\('(.*?)'\)", value)
        return found.group(1) if found else None

    scripted = LinkExtractor(process_value=from_javascript).extract_links(page)
    assert urls(scripted, base) == ["/dir/item/3.html"]
    seen: list[str] = []
    LinkExtractor(process_value=lambda v: seen.append(v), restrict_css="#nav").extract_links(page)
    assert seen == [base + "/dir/list?sort=new&page=2", base + "/dir/other.html"]


async def test_strip_false_keeps_what_the_url_parser_then_removes(fetch: Any) -> None:
    page = await fetch("/dir/page.html")
    links = LinkExtractor(strip=False, allow=r"item/2").extract_links(page)
    assert urls(links, origin(page)) == ["/dir/item/2.html"]


async def test_base_href_is_honoured(fetch: Any) -> None:
    page = await fetch("/dir/based.html")
    assert urls(LinkExtractor().extract_links(page), origin(page)) == [
        "/base/rel.html",
        "/abs.html",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow": "(unclosed"}, r"allow=.*bad regex '\(unclosed'"),
        ({"deny": ["ok", "*bad"]}, r"deny=.*bad regex '\*bad'"),
        ({"allow_domains": ["http://example.test/"]}, r"allow_domains=.*not a domain"),
        ({"tags": ()}, "at least one tag"),
    ],
)
def test_bad_arguments_are_refused_when_the_extractor_is_made(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LinkExtractor(**kwargs)


def test_links_compare_and_hash_by_value() -> None:
    assert Link("http://a.test/", "x") == Link("http://a.test/", "x", "", False)
    assert len({Link("http://a.test/"), Link("http://a.test/"), Link("http://a.test/", "t")}) == 2
