"""What the crawl tests share: settings tuned for loopback, a crawl run that keeps
its items, and a crawl project written to a temporary directory.

Test modules import these from here rather than from one another, so a test
module can be run, moved or split on its own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import trio

from crawler import Settings, Spider
from crawler.engine._engine import Crawler, Engine


class Collector:
    """A pipeline that keeps every item."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.opened = self.closed = False

    def open(self, spider: Spider) -> None:
        self.opened = True

    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        self.items.append(item)
        return item

    def close(self, spider: Spider) -> None:
        self.closed = True


def settings(base: str, **overrides: Any) -> Settings:
    """Settings for a crawl of a loopback site at ``base``: no jitter and near-zero
    backoff, so retries do not slow the suite down."""
    values: dict[str, Any] = {
        "concurrency": 4,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "download_delay_jitter": 0.0,
        "options": {"base": base},
    }
    values.update(overrides)
    return Settings(**values)


async def run(spider: type[Spider], s: Settings) -> tuple[Any, list[dict[str, Any]]]:
    stats, items, _ = await run_crawler(spider, s)
    return stats, items


async def run_crawler(
    spider: type[Spider], s: Settings
) -> tuple[Any, list[dict[str, Any]], Crawler]:
    """Crawl with ``spider`` through the engine; the stats, the items in the order
    they reached the pipeline, and the crawler (for what the stats do not show)."""
    collector = Collector()
    async with Engine(s) as engine:
        crawler = engine.crawler(spider, s, pipelines=[collector])
        with trio.fail_after(30):
            stats = await crawler.run()
    assert collector.opened and collector.closed
    return stats, collector.items, crawler


def make_project(root: Path, settings: str = "", **spiders: str) -> Path:
    """A crawl project in ``root``: its settings.toml and a ``spiders`` package with
    one module per keyword (module name = source). Both texts are dedented, so
    tests can write them inline at any indentation."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.toml").write_text(textwrap.dedent(settings), encoding="utf-8")
    package = root / "spiders"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name, source in spiders.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return root
