"""What a plain crawl keeps out of memory: libraries only some crawls need.

Memory is one of the engine's measures, and every module imported costs every crawl
its code and data. The layout test checks what importing the package loads; this
one checks what a whole ``crawl`` command loads while it crawls a plain http site
(no job, no Redis, no HTTP/2, no cache, uncompressed pages), as the benchmark does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import FAST, LAZY_LIBRARIES, crawl, ok, read_jsonl
from tests.crawl import helpers
from tests.servers import Reply, Seen, serve_h11

pytestmark = pytest.mark.e2e

# Loaded only by the crawls that use them (a job, a shared crawl, an https or HTTP/2
# site, a compressed page...).
NOT_FOR_A_PLAIN_CRAWL = (*LAZY_LIBRARIES, "crawler.distributed", "crawler.jobs")

SPIDER = f"""\
import sys

from crawler import Spider


class Plain(Spider):
    name = "plain"
    options = {{"start": ""}}

    @property
    def start_urls(self):
        return [self.settings["start"]]

    def parse(self, response):
        # A list, as a plain function may return: it is many results without asking
        # itemadapter, whose import would show in the next page's item.
        loaded = [m for m in {NOT_FOR_A_PLAIN_CRAWL!r} if m in sys.modules]
        item = {{"url": str(response.url), "loaded": loaded}}
        return [item, *response.follow_all(callback=self.parse)]
"""


def _site(seen: Seen) -> Reply:
    if seen.target == "/robots.txt":
        return Reply(404, [], b"")
    page = int(seen.target.strip("/") or 0)
    links = "".join(f'<a href="/{n}">{n}</a>' for n in (page + 1, page + 2) if n < 5)
    body = f"<html><title>{page}</title><body>{links}</body></html>".encode()
    return Reply(200, [("Content-Type", "text/html")], body)


async def test_a_plain_crawl_loads_no_library_only_some_crawls_need(tmp_path: Path) -> None:
    helpers.make_project(tmp_path, FAST, plain=SPIDER)
    out = tmp_path / "out.jsonl"
    async with serve_h11(_site) as server:
        ok(await crawl(tmp_path, "plain", "-s", f"start={server.url}/", "-O", str(out)))
    items = read_jsonl(out)
    assert sorted(item["url"].rsplit("/", 1)[1] for item in items) == ["", "1", "2", "3", "4"]
    assert [item["loaded"] for item in items] == [[]] * 5
