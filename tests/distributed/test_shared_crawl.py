"""Several crawlers share one crawl through a real redis-server: each in its own engine
(its own pool, scheduler and frontier), as separate processes would be."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest
import trio

from crawler import Settings
from crawler.distributed import RedisClient
from crawler.distributed._admin import crawl_status, export_items, position_path
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from crawler.settings import SettingsError
from tests.distributed.helpers import (
    CuttableRelay,
    TwoHostSite,
    TwoHostSpider,
    serve_two_hosts,
)
from tests.distributed.workers import (
    KEYS,
    collect,
    page_hits,
    run_worker,
    shared_settings,
    stream_urls,
)
from tests.redis_server import RedisServer, run_redis
from tests.servers import serve_tcp


async def test_two_workers_fetch_every_page_once_and_export_every_item_once(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(TwoHostSite(120)) as site:
        s = shared_settings(site, redis_server.url)
        results: list[Stats] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2"):
                    nursery.start_soon(collect, results, s, agent)
    assert page_hits(site) == dict.fromkeys(site.all_urls(), 1)
    urls = await stream_urls(redis_server.url)
    assert sorted(urls) == sorted(site.all_urls())
    assert all(stats.finish_reason == "finished" for stats in results)
    status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
    assert "pages done:    120" in status and "pending:       0" in status
    assert "refetches:     0" in status and "state:         finished" in status


async def test_a_worker_joining_a_finished_crawl_fetches_nothing(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(TwoHostSite(10)) as site:
        s = shared_settings(site, redis_server.url)
        with trio.fail_after(60):
            await run_worker(s, "w1")
            hits = dict(site.hits)
            await run_worker(s, "w2")
    assert dict(site.hits) == hits
    assert len(await stream_urls(redis_server.url)) == 10


async def test_redis_restarted_mid_crawl_with_aof_and_the_crawl_completes(
    tmp_path: Path,
) -> None:
    where = tmp_path / "redis"
    stack = ExitStack()
    server = await trio.to_thread.run_sync(
        lambda: stack.enter_context(run_redis(where, appendonly=True))
    )
    try:
        async with serve_two_hosts(TwoHostSite(80, delay=0.02)) as site:
            s = shared_settings(site, server.url, lease_ttl=30.0, concurrency=2)
            with trio.fail_after(90):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_worker, s, "w1")
                    await site.wait_for(lambda: sum(page_hits(site).values()) >= 10)
                    await trio.to_thread.run_sync(stack.close)
                    seen_down = sum(page_hits(site).values())
                    server = await trio.to_thread.run_sync(
                        lambda: stack.enter_context(
                            run_redis(where, port=server.port, appendonly=True)
                        )
                    )
        assert seen_down < 80  # the restart happened mid-crawl
        assert set(page_hits(site)) == site.all_urls()
        assert sorted(await stream_urls(server.url)) == sorted(site.all_urls())
    finally:
        await trio.to_thread.run_sync(stack.close)


async def test_export_writes_each_item_once_and_resumes_after_a_torn_run(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with serve_two_hosts(TwoHostSite(20)) as site:
        with trio.fail_after(60):
            await run_worker(shared_settings(site, redis_server.url), "w1")
    out = tmp_path / "items.jsonl"
    first = await trio.to_thread.run_sync(
        lambda: export_items(
            redis_server.url, "twohosts", "default", out, append=False, follow=False
        )
    )
    assert first.written == 20
    # a run killed after writing lines it had not recorded: a torn tail, and whole lines
    torn = out.read_bytes() + b'{"url": "duplicate"}\n{"url": "tor'
    out.write_bytes(torn)
    again = await trio.to_thread.run_sync(
        lambda: export_items(
            redis_server.url, "twohosts", "default", out, append=True, follow=False
        )
    )
    assert again.written == 0
    urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
    assert sorted(urls) == sorted(site.all_urls())
    assert json.loads(position_path(out).read_text())["offset"] == out.stat().st_size


async def test_frontier_url_with_a_job_dir_or_feeds_is_refused(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    s = Settings(frontier_url=redis_server.url, job_dir=str(tmp_path / "job"))
    async with Engine(s) as engine:
        with pytest.raises(SettingsError, match="frontier_url and job_dir"):
            engine.crawler(TwoHostSpider, s)
        s2 = Settings(frontier_url=redis_server.url)
        with pytest.raises(SettingsError, match="crawl export"):
            engine.crawler(TwoHostSpider, s2, feeds=[tmp_path / "x.jsonl"])


async def test_a_worker_cut_off_past_its_lease_has_its_commits_refused_and_pages_refetched(
    redis_server: RedisServer,
) -> None:
    relay = CuttableRelay(redis_server.port)
    async with (
        serve_tcp(relay.handle) as relay_port,
        serve_two_hosts(TwoHostSite(60, hold_from=12)) as site,
    ):
        cut_off = shared_settings(
            site, f"redis://127.0.0.1:{relay_port}/0", concurrency=2, lease_ttl=2.0
        )
        direct = shared_settings(site, redis_server.url, concurrency=2)
        results: list[Stats] = []
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, results, cut_off, "cut")
                # the first worker waits on held pages (12 and on): its pages in flight
                await site.wait_for(lambda: site.by_agent["cut"] >= 8 and _held(site, 12) >= 1)
                relay.cut()
                site.release.set()  # its pages are answered; their commits cannot be sent
                nursery.start_soon(collect, results, direct, "direct")
                await _until_reaped(redis_server.url)
                relay.restore()
        status = await trio.to_thread.run_sync(crawl_status, redis_server.url, None, "default")
    hits = page_hits(site)
    assert set(hits) == site.all_urls()
    assert sorted(await stream_urls(redis_server.url)) == sorted(site.all_urls())
    refetches = int(status.split("refetches:")[1].split()[0])
    assert refetches >= 1, status
    assert sum(hits.values()) >= 60 + refetches


def _held(site: TwoHostSite, hold_from: int) -> int:
    return sum(n for url, n in site.hits.items() if int(url.rsplit("/", 1)[1]) >= hold_from)


async def _until_reaped(url: str) -> None:
    """Poll (bounded by the caller's fail_after) until a worker's leases were taken back."""
    async with RedisClient(url) as client:
        for _ in range(1200):
            if await client.execute("HGET", KEYS.stats, "reaped"):
                return
            await trio.sleep(0.05)
    raise AssertionError("no worker's leases were taken back")


async def test_errors_of_each_worker_are_summed_in_the_status(redis_server: RedisServer) -> None:
    async with serve_two_hosts(TwoHostSite(5)) as site:
        missing = f"{site.bases[0]}/missing"
        s = shared_settings(site, redis_server.url, options={"start": missing})
        with trio.fail_after(60):
            stats = await run_worker(s, "w1")
    assert stats.failed == 1  # a 404 (not retried)
    status = await trio.to_thread.run_sync(crawl_status, redis_server.url, "twohosts", "default")
    assert "errors:        1 " in status
    assert "pages done:    1" in status  # a failed page is done too: it is not fetched again


async def test_pages_cancelled_by_an_abort_are_not_committed_but_given_back(
    redis_server: RedisServer,
) -> None:
    async with serve_two_hosts(TwoHostSite(40, hold_from=10)) as site:
        s = shared_settings(site, redis_server.url, concurrency=2)
        with trio.fail_after(60):
            async with Engine(s) as engine:
                crawler = engine.crawler(TwoHostSpider, s, pipelines=[])
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(crawler.run)
                    # pages 10 and on are held: the worker has them in flight
                    await site.wait_for(lambda: _held(site, 10) >= 2)
                    crawler.abort()  # a second Ctrl-C: the pages in flight are cancelled
            site.release.set()
            await run_worker(s, "w2")
    assert set(page_hits(site)) == site.all_urls()
    assert sorted(await stream_urls(redis_server.url)) == sorted(site.all_urls())


async def test_export_follow_writes_items_as_they_come_until_no_worker_is_left(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "live.jsonl"
    async with serve_two_hosts(TwoHostSite(40, hold_from=20)) as site:
        s = shared_settings(site, redis_server.url, concurrency=2)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_worker, s, "w1")
                await site.wait_for(lambda: _held(site, 20) >= 1)  # joined, and midway

                async def follow() -> None:
                    await trio.to_thread.run_sync(
                        lambda: export_items(
                            redis_server.url, "twohosts", "default", out, append=True, follow=True
                        )
                    )

                # the export runs while the crawl goes on, and ends after the worker left
                nursery.start_soon(follow)
                site.release.set()
    urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
    assert sorted(urls) == sorted(site.all_urls())
