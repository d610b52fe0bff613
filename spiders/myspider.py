"""The example spider: quotes and their authors.

With no settings it crawls the demo site that ships with the crawler: the
``crawl`` command starts it on a free loopback port (``serve_demo_site``) and
hands its URL over as the ``site_url`` option, so ``crawl myspider`` works
with no network. The
selectors follow the markup of quotes.toscrape.com, which the demo site
mirrors; ``-s site_url=...`` points the spider at another copy of the site.

It logs in first (the demo account by default: options ``username`` and
``password``, best set from the environment in settings.toml as
``password = "${DEMO_PASSWORD}"``) and so also scrapes the logged-in-only
favourites page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from crawler import Request, Response, Session, Spider


def _text(node: Any, selector: str) -> str:
    found = node.css_first(selector)
    return found.text(strip=True) if found is not None else ""


class MySpider(Spider):
    name = "myspider"
    custom_settings = {
        "serve_demo_site": True,
        # Items pass through the project's own pipeline (pipelines/checks.py), then
        # through the exporter that -o adds.
        "pipelines": ["pipelines.checks:DropHollowQuotes"],
    }
    options = {"site_url": "", "username": "demo", "password": "demo"}

    def _base(self) -> str:
        base: str = self.settings["site_url"]
        if not base:
            raise ValueError(
                "myspider: no site to crawl; set site_url (-s site_url=https://...), "
                "or keep serve_demo_site = true and run it with the crawl command, "
                "which starts the demo site"
            )
        return base.rstrip("/")

    # A path: resolved against each response's URL, whichever site the crawl is on.
    login_url = "/login"

    async def login(self, session: Session) -> None:
        page = await session.get(self._base() + self.login_url)
        await session.submit_form(
            page,
            "form",
            {"username": self.settings["username"], "password": self.settings["password"]},
            # The Logout link is what both the demo site and quotes.toscrape.com show
            # only to a logged-in visitor.
            expect='a[href="/logout"]',
        )

    def start_requests(self) -> Iterator[Request]:
        yield Request(self._base() + "/", callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
        """A page of quotes: its quotes, their authors' pages, the next page.

        Contracts, which ``crawl check myspider`` runs on the demo site (the path
        is resolved against site_url):

        @url /
        @returns items 10 10
        @returns requests 11
        @scrapes type text author tags url
        """
        url = str(response.url)
        for quote in response.css("div.quote"):
            yield {
                "type": "quote",
                "text": _text(quote, "span.text"),
                "author": _text(quote, "small.author"),
                "tags": [tag.text(strip=True) for tag in quote.css("div.tags a.tag")],
                "url": url,
            }
            author = quote.css_first('a[href*="/author/"]')
            if author is not None:
                yield response.follow(author, callback=self.parse_author)
        next_page = response.css_first("li.next a")
        if next_page is not None:
            yield response.follow(next_page, callback=self.parse)
        # Only shown when logged in; every page links it, the crawl fetches it once.
        favourites = response.css_first('a[href="/private/"]')
        if favourites is not None:
            yield response.follow(favourites, callback=self.parse_favourites)

    async def parse_favourites(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        """The logged-in visitor's favourites (``crawl check`` logs in first).

        @url /private/
        @returns items 1
        @returns requests 0 0
        @scrapes type text author url
        """
        url = str(response.url)
        for quote in response.css("div.quote"):
            yield {
                "type": "favourite",
                "text": _text(quote, "span.text"),
                "author": _text(quote, "small.author"),
                "url": url,
            }

    async def parse_author(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        """One author's page.

        @url /author/Adela-Brightwater
        @returns items 1 1
        @scrapes name born_date born_location description url
        """
        yield {
            "type": "author",
            "name": _text(response, "h3.author-title"),
            "born_date": _text(response, "span.author-born-date"),
            "born_location": _text(response, "span.author-born-location"),
            "description": _text(response, "div.author-description"),
            "url": str(response.url),
        }
