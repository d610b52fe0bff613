"""The crawl engine: one connection pool, one or more spiders, clean stops on signals.

``Engine`` owns the pool every spider shares (so connections are reused across
spiders and the per-host cap holds across all of them); each spider runs as a
:class:`Crawler` with its own scheduler, cookie jar and pipelines. From Python::

    stats = await crawl(MySpider, settings)

From the command line, ``run_crawl`` does the same inside ``trio.run`` and
handles SIGINT/SIGTERM: the first signal stops sending new requests and lets
those in flight finish (up to ``shutdown_grace`` seconds); a second one
cancels them at once. Pipelines are closed either way, so exports are valid.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from .._heap import keep_heap_top
from .._paths import SPIDER_FIELD, for_spider
from ..pipelines._runner import Feed
from ._crawler import Crawler, SharedTransport, build_pool
from ._stats import Stats, log_summary, run_progress, write_stats_json

if TYPE_CHECKING:
    from ..distributed import SharedPoliteness
    from ..http import ConnectionPool
    from ..pipelines._runner import Pipeline
    from ..settings import Settings
    from ..spider import Spider

__all__ = ["Crawler", "Engine", "SharedTransport", "crawl", "run_crawl"]

log = logging.getLogger("crawler.engine")

#: ``prepare(nursery, [(spider class, settings), ...])``: run in the crawl's trio loop
#: before the spiders start; it may start services in ``nursery`` (cancelled when the
#: crawl ends) and returns the settings to crawl with, one per spider.
Prepare = Callable[
    [trio.Nursery, Sequence[tuple[type["Spider"], "Settings"]]], Awaitable[list["Settings"]]
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class Engine:
    """Holds the shared pool; ``async with Engine(settings) as engine: await engine.crawl(...)``.

    With ``frontier_url`` set (and no ``pool`` given), the pool's per-host caps
    and each spider's download delay hold across every process of the crawl
    through Redis: see ``SharedPoliteness``. ``spider`` names the crawl for
    that (with ``crawl_id``); several spiders in one process share the first
    one's name, since they share the pool.
    """

    def __init__(
        self, settings: Settings, *, pool: ConnectionPool | None = None, spider: str = ""
    ) -> None:
        self.settings = settings
        self._owns_pool = pool is None
        self.shared: SharedPoliteness | None = None
        if pool is None and settings.frontier_url:
            from ..distributed import RedisError, SharedPoliteness
            from ..settings import SettingsError

            try:
                self.shared = SharedPoliteness(
                    settings.frontier_url,
                    spider or "crawl",
                    settings.crawl_id,
                    lease_ttl=settings.connection_lease_ttl,
                )
            except RedisError as exc:
                raise SettingsError(f"frontier_url: {exc}") from None
        permits = self.shared.permits if self.shared is not None else None
        self.pool = pool if pool is not None else build_pool(settings, permits)
        if permits is not None and self._owns_pool:
            # Another worker refused a permit gets this one's idle connections to the host.
            permits.hand_over_idle(self.pool.close_idle)
        self.crawlers: list[Crawler] = []
        self._services: AsyncExitStack | None = None

    async def __aenter__(self) -> Engine:
        if self.shared is not None:
            # The shared politeness's tasks run in a nursery of the engine's own, open
            # from here to __aexit__ (cancelled first, then waited for, on the way out).
            stack = AsyncExitStack()
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            try:
                await self.shared.start(nursery)
            except BaseException:
                await stack.aclose()
                raise
            self._services = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_pool:
            with trio.CancelScope(shield=True):
                await self.pool.aclose()
        # The background tasks stop first (a batch they had under way goes back in the
        # queue), then what is left is given back in one last call.
        services, self._services = self._services, None
        if services is not None:
            await services.aclose()
        if self.shared is not None:
            await self.shared.aclose()

    def crawler(
        self,
        spider_cls: type[Spider],
        settings: Settings | None = None,
        *,
        feeds: Sequence[Path | Feed] = (),
        pipelines: Sequence[Pipeline] | None = None,
    ) -> Crawler:
        """A Crawler for ``spider_cls`` on this engine's pool (``pipelines`` replaces the
        settings' chain; ``feeds`` add exporters)."""
        crawler = Crawler(
            spider_cls,
            settings or self.settings,
            self.pool,
            feeds=feeds,
            pipelines=pipelines,
            shared_delays=self.shared.delays if self.shared is not None else None,
        )
        self.crawlers.append(crawler)
        return crawler

    async def crawl(
        self,
        spider_cls: type[Spider],
        settings: Settings | None = None,
        *,
        feeds: Sequence[Path | Feed] = (),
    ) -> Stats:
        return await self.crawler(spider_cls, settings or self.settings, feeds=feeds).run()

    def stop(self, reason: str = "shutdown") -> None:
        for crawler in self.crawlers:
            crawler.interrupted = True
            crawler.stop(reason)

    def abort(self) -> None:
        for crawler in self.crawlers:
            crawler.interrupted = True
            crawler.abort()


async def crawl(
    spider_cls: type[Spider], settings: Settings | None = None, *, feeds: Sequence[Path | Feed] = ()
) -> Stats:
    """Run one spider to completion on a pool of its own; return its stats.

    Without ``settings``, the spider's settings are resolved as the ``crawl``
    command would: defaults, settings.toml (searched from the current
    directory), ``[spiders.NAME]`` and the spider's ``custom_settings``.
    """
    if settings is None:
        from ..settings import load_settings

        settings = load_settings(spider=spider_cls)
    async with Engine(settings, spider=spider_cls.name or spider_cls.__name__) as engine:
        return await engine.crawl(spider_cls, settings, feeds=feeds)


def _feeds_for(feeds: Sequence[Path | Feed], spider: type[Spider], many: bool) -> list[Path | Feed]:
    """With several spiders, each feed path must say where each spider's items go."""
    if not many:
        return list(feeds)
    out: list[Path | Feed] = []
    for feed in feeds:
        path = feed.path if isinstance(feed, Feed) else feed
        if not names_the_spider(feed):
            raise ValueError(
                f"-o {path}: several spiders would write the same file; "
                "put {spider} in the path (e.g. items-{spider}.jsonl)"
            )
        mine = for_spider(path, spider.name or spider.__name__)
        out.append(replace(feed, path=mine) if isinstance(feed, Feed) else mine)
    return out


def names_the_spider(feed: Path | Feed) -> bool:
    """Whether each spider's items go to a file of its own (``{spider}`` or ``%(name)s``
    in the path), or to standard output as JSON Lines, where whole lines can mix."""
    path = str(feed.path if isinstance(feed, Feed) else feed)
    if path == "-" and isinstance(feed, Feed) and feed.format in ("jsonl", "jl", "jsonlines"):
        return True
    return SPIDER_FIELD in path or "%(name)s" in path


async def _watch_signals(engine: Engine, grace: float, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for signum in signals:
            count += 1
            if count == 1:
                log.warning(
                    "%s received: finishing requests in flight (up to %.0fs); "
                    "press Ctrl-C again to stop at once",
                    signal.Signals(signum).name,
                    grace,
                )
                engine.stop("shutdown")

                async def _grace() -> None:
                    await trio.sleep(grace)
                    log.warning("shutdown grace of %.0fs is over: cancelling the rest", grace)
                    engine.abort()

                nursery.start_soon(_grace)
            else:
                log.warning("second signal: stopping at once")
                engine.abort()


async def _main(
    spider_classes: Sequence[type[Spider]],
    settings_for: Callable[[type[Spider]], Settings],
    feeds: Sequence[Path | Feed],
    stats_json: Path | None,
    prepare: Prepare | None,
) -> int:
    settings = [settings_for(cls) for cls in spider_classes]
    if prepare is None:
        return await _crawl_all(spider_classes, settings, feeds, stats_json)
    async with trio.open_nursery() as services:
        settings = await prepare(services, list(zip(spider_classes, settings, strict=True)))
        status = await _crawl_all(spider_classes, settings, feeds, stats_json)
        services.cancel_scope.cancel()
    return status


async def _crawl_all(
    spider_classes: Sequence[type[Spider]],
    settings: Sequence[Settings],
    feeds: Sequence[Path | Feed],
    stats_json: Path | None,
) -> int:
    many = len(spider_classes) > 1
    first = spider_classes[0]
    async with Engine(settings[0], spider=first.name or first.__name__) as engine:
        crawlers = [
            engine.crawler(cls, s, feeds=_feeds_for(feeds, cls, many))
            for cls, s in zip(spider_classes, settings, strict=True)
        ]
        failed = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, engine, settings[0].shutdown_grace, nursery)
            nursery.start_soon(
                run_progress,
                lambda: [c.refresh_stats() for c in crawlers],
                engine.pool.connection_counts,
            )
            async with trio.open_nursery() as runs:
                for crawler in crawlers:
                    runs.start_soon(crawler.run)
            nursery.cancel_scope.cancel()
    all_stats = [c.stats for c in crawlers]
    for crawler in crawlers:
        log_summary(crawler.stats)
        crawler.warn_if_no_items()
        failed = failed or crawler.aborted or crawler.failed or crawler.lost_items()
    if stats_json is not None:
        write_stats_json(stats_json, all_stats)
    if any(c.interrupted for c in crawlers):
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def run_crawl(
    spider_classes: list[type[Spider]],
    settings_for: Callable[[type[Spider]], Settings],
    *,
    feeds: Sequence[Path | Feed],
    stats_json: Path | None,
    prepare: Prepare | None = None,
) -> int:
    """Crawl with every spider in ``spider_classes`` (concurrently, one pool); the exit status.

    ``prepare`` starts what the crawl needs around it (the ``crawl`` command
    starts the demo site this way) and may adjust each spider's settings.

    0: every crawl ended normally (exhausted, or a max_* limit reached);
    130: stopped by SIGINT/SIGTERM; 1: a crawl failed (a login failed, none
    of its start requests could be crawled, or items were lost to pipeline
    errors while ``fail_on_item_errors`` is on).
    """
    keep_heap_top()
    try:
        return trio.run(_main, spider_classes, settings_for, feeds, stats_json, prepare)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
