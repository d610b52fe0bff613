"""The engine's spider for the shared benchmark site (see ../shared/bench/README.md).

It follows every same-host link and yields one item per page with the fields
the benchmark checks. Deduplication (query parameters sorted, fragments cut)
is the engine's own, as it would be for any user spider.

``bench/crawl_bench.sh`` runs it with the ``crawl`` command::

    BENCH_START_URL=http://127.0.0.1:8081/index.html \
        .venv/bin/crawl bench -s 'spider_modules=["bench"]' -o out.jsonl

Running this file directly does the same without the command line.

``BENCH_HOSTS=N`` (1 to 4) crawls the site on N hosts at once: the benchmark's
nginx serves the same files on 127.0.0.1 to 127.0.0.4 (same port), so the
spider starts on each and follows links on all of them; relative links stay
on their host, absolute ones lead to the first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler import Request, Response, Settings, Spider
from crawler.engine._engine import run_crawl

START_URL = os.environ.get("BENCH_START_URL", "http://127.0.0.1:8081/index.html")
HOSTS = int(os.environ.get("BENCH_HOSTS", "1"))


def start_urls(first: str, hosts: int) -> list[str]:
    """``first``, then the same URL on 127.0.0.2 ... 127.0.0.<hosts> (same port)."""
    if not 1 <= hosts <= 4:
        raise ValueError(f"BENCH_HOSTS={hosts}: the benchmark site has 1 to 4 hosts")
    parts = urlsplit(first)
    port = f":{parts.port}" if parts.port else ""
    others = [parts._replace(netloc=f"127.0.0.{i}{port}").geturl() for i in range(2, hosts + 1)]
    return [first, *others]


START_URLS = start_urls(START_URL, HOSTS)


def _text(node: Any) -> str | None:
    return None if node is None else node.text()


class BenchSpider(Spider):
    name = "bench"
    # The netlocs (host:port) so that 127.0.0.1:8081 (and the other hosts crawled)
    # are allowed and the trap hosts 127.0.0.9/10:8081 and localhost:8081 are not.
    allowed_domains = [urlsplit(url).netloc for url in START_URLS]
    # One benchmark server of our own on loopback: as many connections to it as
    # requests in flight (Scrapy's peer uses CONCURRENT_REQUESTS_PER_DOMAIN=64).
    custom_settings = {"max_connections_per_host": 64, "download_delay": 0.0}

    def start_requests(self) -> Iterator[Request]:
        for url in START_URLS:
            yield Request(url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        tree = response.tree
        yield {
            "url": str(response.url),
            "title": _text(tree.css_first("title")),
            "name": _text(tree.css_first(".product-name")),
            "price": _text(tree.css_first(".price")),
            "sku": _text(tree.css_first(".sku")),
        }
        yield from response.follow_all(callback=self.parse)


def bench_settings(_: type[Spider]) -> Settings:
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "64"))
    return Settings(
        concurrency=concurrency,
        max_connections_per_host=concurrency,
        max_connections=concurrency,
        download_delay=0.0,
        log_level="INFO",
    )


def main() -> int:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    out = Path(os.environ.get("BENCH_OUT", "bench-items.jsonl"))
    stats = os.environ.get("BENCH_STATS")
    return run_crawl(
        [BenchSpider], bench_settings, feeds=[out], stats_json=Path(stats) if stats else None
    )


if __name__ == "__main__":
    sys.exit(main())
