"""Scrapy's tutorial spider, as Scrapy users write it, through the real ``crawl`` command.

The spider's ``parse`` is the tutorial's, word for word: ``::text`` and
``::attr(href)`` selectors, ``get()``/``getall()``, ``response.follow`` with the
string the selector gave. It runs as a subprocess against the bundled demo site
(the command starts it) and must export every quote of the site exactly once.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from crawler.demo._content import QUOTES
from tests.cli.helpers import FAST, crawl, ok, read_jsonl

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "from-scrapy.md"

TUTORIAL_SPIDER = """\
from crawler import Request, Spider


class QuotesSpider(Spider):
    name = "quotes"
    custom_settings = {"serve_demo_site": True}
    options = {"site_url": ""}

    def start_requests(self):
        yield Request(self.settings["site_url"].rstrip("/") + "/page/1/", callback=self.parse)

    def parse(self, response):
        for quote in response.css("div.quote"):
            yield {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("div.tags a.tag::text").getall(),
            }

        next_page = response.css("li.next a::attr(href)").get()
        if next_page is not None:
            yield response.follow(next_page, self.parse)
"""


async def test_the_scrapy_tutorial_spider_scrapes_every_quote_once(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(FAST, encoding="utf-8")
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "__init__.py").write_text("", encoding="utf-8")
    (spiders / "quotes.py").write_text(textwrap.dedent(TUTORIAL_SPIDER), encoding="utf-8")
    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"

    ok(await crawl(tmp_path, "quotes", "-o", str(out), "--stats-json", str(stats_file)))

    items = read_jsonl(out)
    expected = [{"text": q.text, "author": q.author.name, "tags": list(q.tags)} for q in QUOTES]
    assert sorted(items, key=json.dumps) == sorted(expected, key=json.dumps)
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert (stats["finish_reason"], stats["failed"], stats["callback_errors"]) == (
        "finished",
        0,
        0,
    )


async def test_the_tutorial_spider_of_the_scrapy_guide_runs_as_printed(tmp_path: Path) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    source = guide.split("```python\n", 1)[1].split("```", 1)[0]
    assert "class QuotesSpider(Spider)" in source
    (tmp_path / "settings.toml").write_text(FAST, encoding="utf-8")
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "__init__.py").write_text("", encoding="utf-8")
    (spiders / "quotes.py").write_text(source, encoding="utf-8")
    out = tmp_path / "quotes.jsonl"

    ok(await crawl(tmp_path, "quotes", "-O", str(out)))

    expected = [{"text": q.text, "author": q.author.name, "tags": list(q.tags)} for q in QUOTES]
    assert sorted(read_jsonl(out), key=json.dumps) == sorted(expected, key=json.dumps)
