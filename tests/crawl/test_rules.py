"""CrawlSpider and Rule through the real engine, on the demo site's bookshop."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

from crawler import CrawlSpider, Link, LinkExtractor, Request, Response, Rule
from crawler.demo import DemoApp
from crawler.demo._books import BOOKS, CATEGORIES
from tests.crawl import helpers
from tests.servers import serve_asgi

LISTINGS = r"/books/catalogue/(page-\d+\.html|category/)"


def _book(response: Response) -> dict[str, Any]:
    rows = dict(
        zip(
            response.css("table th::text").getall(),
            response.css("table td::text").getall(),
            strict=True,
        )
    )
    return {
        "title": response.css("div.product_main h1::text").get(),
        "upc": rows["UPC"],
        "rating": response.css("div.product_main p.star-rating::attr(class)").get("").split()[-1],
        "category": response.css("ul.breadcrumb li:nth-child(2) a::text").get(),
        "path": response.url.path,
    }


EXPECTED = sorted((b.title, b.upc, b.rating, b.category.name, f"/books/{b.path}") for b in BOOKS)


def _rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (i["title"], i["upc"], i["rating"], i["category"], i["path"]) for i in items if "upc" in i
    )


class _Books(CrawlSpider):
    name = "books"
    rules = (
        Rule(LinkExtractor(allow=LISTINGS)),
        Rule(LinkExtractor(restrict_css="article.product_pod h3"), callback="parse_book"),
    )

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/books/", callback=self.parse)

    def parse_book(self, response: Response) -> dict[str, Any]:
        return _book(response)


class _Recording:
    """The demo app, counting the paths it was asked for."""

    def __init__(self) -> None:
        self.app = DemoApp()
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


async def _crawl(spider: type[CrawlSpider], **settings: Any) -> tuple[Any, list[Any], _Recording]:
    site = _Recording()
    async with serve_asgi(site) as url:
        stats, items = await helpers.run(spider, helpers.settings(url, **settings))
    return stats, items, site


async def test_rules_reach_every_book_once_and_nothing_else() -> None:
    stats, items, site = await _crawl(_Books)
    assert _rows(items) == EXPECTED
    assert len(items) == len(BOOKS)
    fetched = {p for p in site.paths if p != "/robots.txt"}
    categories = [f"/books/catalogue/category/books/{c.slug}/" for c in CATEGORIES]
    paged = [
        c for c in categories if sum(1 for b in BOOKS if c.endswith(f"/{b.category.slug}/")) > 10
    ]
    assert fetched == {
        "/books/",  # the start; the header's "index.html" link matches no rule
        *(f"/books/catalogue/page-{n}.html" for n in range(1, 6)),
        *(c + "index.html" for c in categories),
        *(c + f"page-{n}.html" for c in paged for n in (1, 2)),
        *(f"/books/{b.path}" for b in BOOKS),
    }  # no .jpg, and not the footer's link back to the quotes
    assert max(site.paths.values()) == 1
    assert stats.pages == len(fetched)


class _Ordered(CrawlSpider):
    """Two rules extract the product links: the first one takes them."""

    name = "ordered"
    rules = (
        Rule(LinkExtractor(allow=LISTINGS, restrict_css="ul.pager")),
        Rule(
            LinkExtractor(allow=r"/catalogue/[^/]+_\d+/index\.html$"),
            callback="first",
            cb_kwargs={"rule": "first"},
        ),
        Rule(LinkExtractor(allow=r"/catalogue/"), callback="second"),
    )
    start_urls: ClassVar[list[str]] = []

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/books/", callback=self.parse)

    def parse_start_url(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {"start": response.url.path}

    async def first(self, response: Response, rule: str) -> AsyncIterator[dict[str, Any]]:
        yield {"rule": rule, "path": response.url.path, "text": response.meta["link_text"]}

    def second(self, response: Response) -> dict[str, Any]:
        return {"rule": "second", "path": response.url.path}


async def test_the_first_rule_that_extracts_a_link_takes_it() -> None:
    _, items, _ = await _crawl(_Ordered)
    assert items[0] == {"start": "/books/"}
    firsts = [i for i in items if i.get("rule") == "first"]
    seconds = [i for i in items if i.get("rule") == "second"]
    # Pagination only (restrict_css), so the catalogue's 5 pages: every book, via "first".
    assert sorted(i["path"] for i in firsts) == sorted(f"/books/{b.path}" for b in BOOKS)
    assert {i["text"] for i in firsts} <= {b.title for b in BOOKS} | {""}
    # "second" gets what only it extracts: category listings, which it does not follow
    # (a callback makes follow default to False).
    assert seconds and all("/category/" in i["path"] for i in seconds)
    assert len(seconds) == len({i["path"] for i in seconds})


class _Hooks(CrawlSpider):
    """process_links, process_request and an errback, given by name."""

    name = "hooks"
    rules = (
        Rule(
            LinkExtractor(restrict_css="ul.pager"),
            callback="listing",
            follow=True,
            process_links="only_next",
            process_request="tag",
        ),
        # The cover's link: denied by default (.jpg), allowed here; the demo answers 404.
        Rule(
            LinkExtractor(restrict_css="a.full-image", deny_extensions=()),
            callback="never",
            errback="missing_image",
        ),
    )

    def start_requests(self) -> Iterator[Request]:
        base = self.settings["base"]
        yield Request(base + "/books/", callback=self.parse)
        yield Request(f"{base}/books/{BOOKS[0].path}", callback=self.parse)

    def listing(self, response: Response) -> dict[str, Any]:
        return {"listing": response.url.path, "from": response.meta["from"]}

    def only_next(self, links: list[Link]) -> list[Link]:
        return [link for link in links if link.text == "next"]

    def tag(self, request: Request, response: Response) -> Request | None:
        if request.url.endswith("page-4.html"):
            return None  # dropped: the crawl stops at page 3
        request.meta["from"] = response.url.path
        return request

    def never(self, response: Response) -> None:
        raise AssertionError("a 404 never reaches the callback")

    def missing_image(self, request: Request, failure: Exception) -> Iterator[dict[str, Any]]:
        yield {"failed": request.url.rsplit("/books/", 1)[1], "rule": request.meta["rule"]}


async def test_process_links_process_request_and_errback() -> None:
    stats, items, site = await _crawl(_Hooks, retry_times=0)
    assert sorted(items, key=str) == sorted(
        [
            {"listing": "/books/catalogue/page-2.html", "from": "/books/"},
            {"listing": "/books/catalogue/page-3.html", "from": "/books/catalogue/page-2.html"},
            {"failed": BOOKS[0].image, "rule": 1},
        ],
        key=str,
    )
    assert "/books/catalogue/page-4.html" not in site.paths  # process_request dropped it
    assert "/books/catalogue/page-1.html" not in site.paths  # process_links dropped it
    assert stats.callback_errors == 0


def test_a_crawl_spider_may_not_define_parse() -> None:
    with pytest.raises(TypeError, match=r"defines parse.*parse_start_url"):

        class _Wrong(CrawlSpider):
            def parse(self, response: Response) -> None:  # type: ignore[override]
                pass


def test_rule_names_are_checked_when_the_spider_is_made() -> None:
    class _Typo(CrawlSpider):
        name = "typo"
        rules = (Rule(LinkExtractor(), callback="parse_itme"),)

    with pytest.raises(AttributeError, match=r"rules\[0\]: callback 'parse_itme' is not a method"):
        _Typo()

    class _NotARule(CrawlSpider):
        name = "notarule"
        rules = (LinkExtractor(),)  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"rules\[0\] is <LinkExtractor.*not a Rule"):
        _NotARule()


def test_follow_defaults_to_true_only_without_a_callback() -> None:
    assert Rule().follow is True
    assert Rule(callback="parse_item").follow is False
    assert Rule(callback="parse_item", follow=True).follow is True
    assert Rule(follow=False).follow is False


def test_a_request_naming_a_rule_the_spider_lacks_says_so() -> None:
    from crawler.http import Request as HTTPRequest
    from crawler.http import Response as HTTPResponse

    url = "http://shop.test/books/"
    stale = Request(url, callback="_rule_response", meta={"rule": 5})
    http = HTTPResponse(200, html="<p>hi</p>", request=HTTPRequest("GET", url))
    response = Response.from_http(http, stale)
    with pytest.raises(ValueError, match=r"books/ names rule 5, but the spider has 2 rules"):
        _Books()._rule_response(response)


class _NextOnly(LinkExtractor):
    """A LinkExtractor subclass with its own extract_links: the rule must call it."""

    def extract_links(self, response: Response) -> list[Link]:
        return [link for link in super().extract_links(response) if link.text == "next"]


class _Products:
    """Not a LinkExtractor at all: anything with extract_links(response) will do."""

    def extract_links(self, response: Response) -> list[Link]:
        hrefs = response.css("article.product_pod h3 a::attr(href)").getall()[:1]
        return [Link(url) for url in map(response.urljoin, hrefs) if url is not None]


class _OwnExtractors(CrawlSpider):
    name = "own"
    rules = (
        Rule(_NextOnly(restrict_css="ul.pager")),
        Rule(_Products(), callback="parse_book"),
    )

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/books/", callback=self.parse)

    def parse_book(self, response: Response) -> dict[str, Any]:
        return _book(response)


async def test_extractors_of_ones_own_are_asked_through_extract_links() -> None:
    _, items, site = await _crawl(_OwnExtractors)
    # The first book of each of the catalogue's five pages; no "previous" link followed.
    assert sorted(i["path"] for i in items) == sorted(f"/books/{b.path}" for b in BOOKS[::10])
    assert "/books/catalogue/page-1.html" not in site.paths


class _ByFunction(CrawlSpider):
    """Callbacks given as the functions of the class body, before they are methods."""

    name = "byfunction"

    def parse_book(self, response: Response) -> dict[str, Any]:
        return {**_book(response), "spider": self.name}

    def first_only(self, links: list[Link]) -> list[Link]:
        return links[:1]

    rules = (
        Rule(
            LinkExtractor(restrict_css="article.product_pod h3"),
            callback=parse_book,
            process_links=first_only,
        ),
    )

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/books/", callback=self.parse)


async def test_functions_of_the_class_body_are_bound_to_the_spider() -> None:
    _, items, _ = await _crawl(_ByFunction)
    assert [(i["path"], i["spider"]) for i in items] == [(f"/books/{BOOKS[0].path}", "byfunction")]


class _Empty(_Books):
    name = "empty_books"

    def parse_book(self, response: Response) -> Any:
        return None  # a selector that matched nothing, say


async def test_the_no_items_warning_names_the_rules_callbacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = _Recording()
    async with serve_asgi(site) as url:
        _, items, crawler = await helpers.run_crawler(_Empty, helpers.settings(url))
    assert items == []
    with caplog.at_level("WARNING", "crawler.engine"):
        crawler.warn_if_no_items()
    [warning] = [r.getMessage() for r in caplog.records if "yielded no items" in r.getMessage()]
    assert "callbacks parse, parse_book, which" in warning
    assert "_rule_response" not in warning
