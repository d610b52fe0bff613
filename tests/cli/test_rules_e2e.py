"""A CrawlSpider through the real ``crawl`` command: the books spider of
docs/link-rules.md, run as written (pointed at a demo site on a free port),
whole and as a ``--job`` stopped part-way and resumed."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crawler.demo import DemoApp
from crawler.demo._books import BOOKS
from crawler.jobs._status import job_status
from tests.cli.helpers import FAST, crawl, ok, read_jsonl
from tests.crawl import helpers
from tests.servers import serve_asgi

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs" / "link-rules.md"


def docs_spider(site_url: str) -> str:
    """The books spider's code block from the docs, for the site at ``site_url``."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- the books spider[^\n]*-->\n```python\n(.*?)```", text, re.S)
    assert found is not None, "docs/link-rules.md lost its books spider"
    return found.group(1).replace("http://127.0.0.1:8000", site_url)


EXPECTED = sorted(
    (
        b.title,
        b.price,
        b.availability,
        b.rating,
        b.upc,
        b.category.name,
        f"/books/{b.path}",
    )
    for b in BOOKS
)


def rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return sorted(
        (
            i["title"],
            i["price"],
            i["availability"],
            i["rating"],
            i["upc"],
            i["category"],
            urlsplit(i["url"]).path,
        )
        for i in items
    )


class Recording:
    def __init__(self) -> None:
        self.app = DemoApp()
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


async def test_the_docs_books_spider_scrapes_every_book_once(tmp_path: Path) -> None:
    site = Recording()
    async with serve_asgi(site) as url:
        root = helpers.make_project(tmp_path / "proj", FAST, books=docs_spider(url))
        ok(await crawl(root, "books", "-o", "books.jsonl"))
    items = read_jsonl(root / "books.jsonl")
    assert rows(items) == EXPECTED  # all 50 books, each once, every field right
    fetched = [path for path in site.paths if path != "/robots.txt"]
    assert len(fetched) == 67 and max(site.paths.values()) == 1
    assert not any(path.endswith(".jpg") for path in fetched)
    assert all(path.startswith("/books/") for path in fetched)


async def test_a_rules_job_stopped_part_way_resumes_to_the_same_books(tmp_path: Path) -> None:
    site = Recording()
    async with serve_asgi(site) as url:
        root = helpers.make_project(tmp_path / "proj", FAST, books=docs_spider(url))
        args = ("books", "--job", "job", "-o", "books.jsonl")
        ok(await crawl(root, *args, "-s", "max_pages=12"))
        first = read_jsonl(root / "books.jsonl")
        status = job_status(root / "job")
        ok(await crawl(root, *args))
    assert 0 < len(first) < len(BOOKS)
    assert "pending:          0" not in status  # stopped with rule requests still queued
    assert rows(read_jsonl(root / "books.jsonl")) == EXPECTED
    # The second run asked for no page the first had fetched.
    assert max(count for path, count in site.paths.items() if path != "/robots.txt") == 1
