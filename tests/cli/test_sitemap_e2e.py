"""Sitemap crawls through the real ``crawl`` command, on the bundled demo site:
the exact items, a ``--job`` crawl stopped and resumed, and the sitemap template."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crawler.demo import DemoApp
from crawler.demo._content import AUTHORS, QUOTES
from crawler.demo._sitemap import SECTIONS, author_paths, book_paths, quote_paths
from crawler.jobs._status import job_status
from tests.cli.helpers import FAST, TIME_LIMIT, crawl, ok, read_jsonl, type_check
from tests.crawl.helpers import make_project
from tests.servers import serve_asgi

pytestmark = pytest.mark.e2e


SPIDER = """\
from crawler import SitemapSpider


def _text(node, selector):
    found = node.css_first(selector)
    return found.text(strip=True) if found is not None else ""


class QuotesSitemap(SitemapSpider):
    name = "quotes_sitemap"
    options = {"site_url": "", "start": "/sitemap.xml"}
    sitemap_rules = [("/author/", "parse_author"), ("", "parse")]

    def start_requests(self):
        self.sitemap_urls = [self.settings["site_url"] + self.settings["start"]]
        return super().start_requests()

    def parse(self, response):
        for quote in response.css("div.quote"):
            yield {
                "type": "quote",
                "text": _text(quote, "span.text"),
                "author": _text(quote, "small.author"),
            }

    def parse_author(self, response):
        yield {"type": "author", "name": _text(response, "h3.author-title")}
"""

EXPECTED = sorted(
    [("quote", q.text, q.author.name) for q in QUOTES] + [("author", a.name, "") for a in AUTHORS]
)


def scraped(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The items as sorted tuples: duplicates would show, as would missing ones."""
    return sorted(
        (i["type"], i["text"], i["author"]) if i["type"] == "quote" else ("author", i["name"], "")
        for i in items
    )


class Counting:
    """The demo site, counting the requests it answers by path."""

    def __init__(self) -> None:
        self.app = DemoApp()
        self.hits: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.hits[scope["path"]] += 1
        await self.app(scope, receive, send)


async def test_a_sitemap_spider_scrapes_exactly_the_pages_of_the_demo_sitemaps(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "proj", FAST, site=SPIDER)
    stderr = ok(
        await crawl(root, "quotes_sitemap", "-s", "serve_demo_site=true", "-o", "out.jsonl")
    )
    assert scraped(read_jsonl(root / "out.jsonl")) == EXPECTED
    assert "0 callback errors, errors {}, dropped {}" in stderr


async def test_a_sitemap_job_stopped_and_resumed_scrapes_each_page_once(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", FAST, site=SPIDER)
    site = Counting()
    async with serve_asgi(site) as url:
        args = [
            "quotes_sitemap",
            "-s",
            f'site_url="{url}"',
            "-s",
            'start="/robots.txt"',
            "--job",
            "job",
            "-o",
            "out.jsonl",
        ]
        # Stopped after robots.txt, the index and one child sitemap: the rest is queued.
        ok(await crawl(root, *args, "-s", "max_pages=3", "-s", "concurrency=1"))
        assert "stopped (max_pages)" in job_status(root / "job")
        first = scraped(read_jsonl(root / "out.jsonl"))
        assert len(first) < len(EXPECTED)
        ok(await crawl(root, *args))
    assert "state:            finished" in job_status(root / "job")
    assert scraped(read_jsonl(root / "out.jsonl")) == EXPECTED
    listed = [
        *quote_paths(),
        *author_paths(),
        *book_paths(),
        "/sitemap.xml",
        *(f"/{s.file}" for s in SECTIONS),
    ]
    # Server-side proof that the resume redid nothing: every listed page fetched once.
    assert {path: site.hits[path] for path in listed} == dict.fromkeys(listed, 1)


async def test_the_sitemap_template_crawls_the_demo_site_and_type_checks(tmp_path: Path) -> None:
    ok(await crawl(tmp_path, "startproject", "proj"))
    root = tmp_path / "proj"
    async with serve_asgi(DemoApp()) as url:
        host = urlsplit(url).netloc
        ok(await crawl(root, "new", "mapped", host, "--template", "sitemap"))
        ok(await crawl(root, "mapped", "-o", "mapped.jsonl"))
    items = read_jsonl(root / "mapped.jsonl")
    assert sorted(i["url"] for i in items) == sorted(
        url + path for path in (*quote_paths(), *author_paths(), *book_paths())
    )
    assert "Quotes, page 1 - Demo Quotes" in {i["title"] for i in items}
    await type_check(root, "spiders/mapped.py", tmp_path / "mypy-cache", TIME_LIMIT * 4)
