"""The files ``crawl new`` and ``crawl startproject`` write.

Templates are ``string.Template`` text (``$name``), not code generation: what
a user gets is what they read here. Each spider template runs as written and
passes ``mypy --strict``, so a new project starts clean.
"""

from __future__ import annotations

from string import Template

__all__ = ["PIPELINES_INIT", "PROJECT_README", "PYPROJECT", "SPIDERS", "STARTPROJECT_SPIDER"]

BASIC = Template('''\
"""The $name spider: crawls $domain.

Run it with ``crawl $name -o $name.jsonl``. Try a callback on one page with
``crawl parse URL --spider $name``; see a page as the crawl gets it with
``crawl fetch URL --spider $name``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class $class_name(Spider):
    name = "$name"
    allowed_domains = ["$host"]  # links elsewhere are dropped (and counted as offsite)
    start_urls = ["$start_url"]

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
        """Each page's URL and title, and its links to follow.

        ``crawl check $name`` runs this on @url and checks the lines below it;
        keep them true as the callback changes (docs/testing-spiders.md):

        @url $start_url
        @returns items 1 1
        @scrapes url title
        """
        # One item per page: replace with the fields you want, e.g.
        # response.css("div.quote") and node.css_first("span.text").text(strip=True).
        title = response.css_first("title")
        yield {
            "url": str(response.url),
            "title": title.text(strip=True) if title is not None else "",
        }
        for link in response.links():
            yield response.follow(link, callback=self.parse)
''')

LOGIN = Template('''\
"""The $name spider: logs in to $domain, then crawls it.

Set the account in settings.toml, the password from the environment::

    [spiders.$name]
    username = "me"
    password = "$${${env_name}_PASSWORD}"

or for one run: ``crawl $name -s username=me -s password=...``. Check the login
with ``crawl fetch URL --spider $name``, which logs in first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin

from crawler import Request, Response, Session, Spider


class $class_name(Spider):
    name = "$name"
    allowed_domains = ["$host"]  # links elsewhere are dropped (and counted as offsite)
    start_urls = ["$start_url"]
    options = {"username": "", "password": ""}
    login_url = "/login"

    async def login(self, session: Session) -> None:
        page = await session.get(urljoin(self.start_urls[0], self.login_url))
        await session.submit_form(
            page,
            "form",
            {"username": self.settings["username"], "password": self.settings["password"]},
            # Something only a logged-in visitor sees: no match means the login failed.
            expect='a[href="/logout"]',
        )

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
        """Each page's URL and title, and its links to follow.

        ``crawl check $name`` logs in, runs this on @url and checks the lines
        below it (docs/testing-spiders.md):

        @url $start_url
        @returns items 1 1
        @scrapes url title
        """
        title = response.css_first("title")
        yield {
            "url": str(response.url),
            "title": title.text(strip=True) if title is not None else "",
        }
        for link in response.links():
            if "/logout" not in link:  # following it would log the crawl out
                yield response.follow(link, callback=self.parse)
''')

SITEMAP = Template('''\
"""The $name spider: crawls the pages $domain lists in its sitemaps.

Run it with ``crawl $name -o $name.jsonl``. It reads the ``Sitemap:`` lines of
robots.txt; if the site has none, list its sitemap URLs in ``sitemap_urls``.
See the crawler's docs/sitemaps.md for rules, indexes and filters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from crawler import Response, SitemapReader, SitemapSpider


class $class_name(SitemapSpider):
    name = "$name"
    allowed_domains = ["$host"]  # URLs elsewhere are dropped (and counted as offsite)
    sitemap_urls = ["${start_url}robots.txt"]
    # (regex, callback): each page goes to the first callback whose regex is in its URL;
    # a page no regex matches is not crawled.
    sitemap_rules = [("", "parse")]

    def sitemap_filter(self, entries: SitemapReader) -> Iterator[dict[str, Any]]:
        # Every entry by default; skip some here, e.g. by entry.get("lastmod").
        yield from entries

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        title = response.css_first("title")
        yield {
            "url": str(response.url),
            "title": title.text(strip=True) if title is not None else "",
        }
''')


RULES = Template('''\
"""The $name spider: crawls $domain by rules.

Each rule names the links it takes (a LinkExtractor) and the callback that gets
the pages they lead to; for each page the rules are tried in order and a link
goes to the first rule that takes it (the crawler's docs/link-rules.md). Run it
with ``crawl $name -o $name.jsonl``; ``crawl parse URL --spider $name --callback
parse_item`` shows what parse_item yields on one page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crawler import CrawlSpider, LinkExtractor, Response, Rule


class $class_name(CrawlSpider):
    name = "$name"
    allowed_domains = ["$host"]  # links elsewhere are dropped (and counted as offsite)
    start_urls = ["$start_url"]

    rules = (
        # Item pages go to parse_item; their links are not followed. The pattern fits
        # the book pages of the demo site's bookshop: write your site's item URLs here.
        Rule(LinkExtractor(allow=r"/catalogue/[^/]+_\\d+/index\\.html$$"), callback="parse_item"),
        # Every other link is followed, for the links on its page (images, archives and
        # other files are left out: LinkExtractor's deny_extensions).
        Rule(LinkExtractor()),
    )

    def parse_item(self, response: Response) -> Iterator[dict[str, Any]]:
        # Replace with the fields you want, e.g. response.css("p.price_color::text").get().
        yield {
            "url": str(response.url),
            "title": response.css("h1::text").get(""),
        }
''')


SPIDERS = {"basic": BASIC, "login": LOGIN, "rules": RULES, "sitemap": SITEMAP}

STARTPROJECT_SPIDER = '''\
"""The example spider: the quotes and authors of the bundled demo site.

``crawl quotes -o quotes.jsonl`` starts the demo site on a free loopback port
(``serve_demo_site``) and hands its URL over as the ``site_url`` option, so it
works with no network. ``-s site_url=https://quotes.toscrape.com`` points it at
the public site the demo mirrors; ``crawl demo`` serves the demo on
http://127.0.0.1:8000/ for ``crawl fetch`` and ``crawl parse``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


def _text(node: Any, selector: str) -> str:
    found = node.css_first(selector)
    return found.text(strip=True) if found is not None else ""


class QuotesSpider(Spider):
    name = "quotes"
    custom_settings = {"serve_demo_site": True}
    options = {"site_url": ""}

    async def start_requests(self) -> AsyncIterator[Request]:
        base: str = self.settings["site_url"]
        if not base:
            raise ValueError("quotes: no site to crawl; set site_url (-s site_url=https://...)")
        yield Request(base.rstrip("/") + "/", callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any] | Request]:
        """A page of quotes: its quotes, their authors' pages, the next page.

        ``crawl check`` runs this on the demo site (a path in @url is resolved
        against site_url) and checks the lines below it:

        @url /
        @returns items 10 10
        @returns requests 1
        @scrapes type text author tags url
        """
        for quote in response.css("div.quote"):
            yield {
                "type": "quote",
                "text": _text(quote, "span.text"),
                "author": _text(quote, "small.author"),
                "tags": [tag.text(strip=True) for tag in quote.css("div.tags a.tag")],
                "url": str(response.url),
            }
            author = quote.css_first('a[href*="/author/"]')
            if author is not None:
                yield response.follow(author, callback=self.parse_author)
        next_page = response.css_first("li.next a")
        if next_page is not None:
            yield response.follow(next_page, callback=self.parse)

    async def parse_author(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        """One author's page.

        @url /author/Adela-Brightwater
        @returns items 1 1
        @scrapes type name born_date url
        """
        yield {
            "type": "author",
            "name": _text(response, "h3.author-title"),
            "born_date": _text(response, "span.author-born-date"),
            "url": str(response.url),
        }
'''

PIPELINES_INIT = '''\
"""The project's item pipelines, named in settings.toml by import path
(``pipelines = ["pipelines.mymodule:MyPipeline"]``); see the crawler's docs/pipelines.md."""
'''

PYPROJECT = Template("""\
[project]
name = "$project"
version = "0.1.0"
description = "A crawl project."
requires-python = ">=3.11"
dependencies = ["crawler"]
""")

PROJECT_README = Template("""\
# $project

A crawl project. `crawl list` lists its spiders; `crawl quotes -o quotes.jsonl`
crawls the bundled demo site with the example spider in `spiders/quotes.py`.
`crawl new NAME DOMAIN` adds a spider; `settings.toml` lists every setting.
""")
