"""The example spider: quotes and their authors.

With no settings it crawls the demo site that ships with the engine, started
on a free loopback port, so ``crawl myspider`` works with no network. The
selectors follow the markup of quotes.toscrape.com, which the demo site
mirrors, so ``crawl myspider -s site_url=https://quotes.toscrape.com`` scrapes
the public sandbox instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from crawler import Request, Response, Spider


def _text(node: Any, selector: str) -> str:
    found = node.css_first(selector)
    return found.text(strip=True) if found is not None else ""


class MySpider(Spider):
    name = "myspider"
    custom_settings = {"serve_demo_site": True}
    options = {"site_url": ""}

    # Set by the engine when it serves the demo site for this spider.
    demo_url: str = ""

    def start_requests(self) -> Iterator[Request]:
        base = self.settings["site_url"] or self.demo_url
        if not base:
            raise ValueError(
                "myspider: no site to crawl; set site_url (-s site_url=https://...) "
                "or keep serve_demo_site = true so the engine starts the demo site"
            )
        yield Request(base.rstrip("/") + "/", callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
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

    async def parse_author(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "author",
            "name": _text(response, "h3.author-title"),
            "born_date": _text(response, "span.author-born-date"),
            "born_location": _text(response, "span.author-born-location"),
            "description": _text(response, "div.author-description"),
            "url": str(response.url),
        }
