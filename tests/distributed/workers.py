"""Shared-crawl workers run in the test's own process, each in an engine of its own
(its own pool, scheduler and frontier), as separate processes would be."""

from __future__ import annotations

import json
from typing import Any

from crawler import Settings
from crawler.distributed import RedisClient
from crawler.distributed._frontier import CrawlKeys
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from tests.crawl.helpers import settings
from tests.distributed.helpers import TwoHostSite, TwoHostSpider

KEYS = CrawlKeys("twohosts", "default")


def shared_settings(site: TwoHostSite, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "frontier_url": url,
        # long enough that no live worker is taken for dead on a loaded machine
        "lease_ttl": 10.0,
        "obey_robots": False,
        "options": {"start": site.url(0)},
    }
    values.update(overrides)
    return settings(site.bases[0], **values)


async def run_worker(s: Settings, agent: str, spider: type[TwoHostSpider] = TwoHostSpider) -> Stats:
    s = Settings(**{**_fields(s), "user_agent": agent})
    async with Engine(s) as engine:
        return await engine.crawler(spider, s, pipelines=[]).run()


def _fields(s: Settings) -> dict[str, Any]:
    return {name: getattr(s, name) for name in s.__dataclass_fields__ if name != "sources"}


async def stream_urls(url: str) -> list[str]:
    async with RedisClient(url) as client:
        entries = await client.execute("XRANGE", KEYS.items, "-", "+")
    assert isinstance(entries, list)
    return [json.loads(fields[1])["url"] for _, fields in entries]


def page_hits(site: TwoHostSite) -> dict[str, int]:
    return {url: n for url, n in site.hits.items() if "/p/" in url}


async def collect(results: list[Stats], s: Settings, agent: str) -> None:
    results.append(await run_worker(s, agent))
