"""Worker processes (the crawl command) sharing one crawl through a real redis-server:
several at once, one killed with SIGKILL midway, and crawl status / stop / export."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.cli.helpers import CRAWL, FAST, crawl, ok, read_jsonl
from tests.crawl.helpers import make_project
from tests.distributed.helpers import SPIDER_SOURCE, TwoHostSite, serve_two_hosts
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

# A lease outlives a silent worker by 10 s: even on a loaded machine no live worker is
# taken for dead; the test that kills one shortens it for that worker.
SETTINGS = FAST + "obey_robots = false\nlease_ttl = 10.0\nconcurrency = 4\n"


def project(root: Path) -> Path:
    return make_project(root / "project", SETTINGS, twohosts=SPIDER_SOURCE)


def worker_args(site: TwoHostSite, url: str, agent: str, *extra: str) -> list[str]:
    return [
        *extra,
        "twohosts",
        "--frontier",
        url,
        "-s",
        f'start="{site.url(0)}"',
        "-s",
        f'user_agent="{agent}"',
    ]


async def start_worker(
    cwd: Path, site: TwoHostSite, url: str, agent: str, *extra: str
) -> trio.Process:
    return await trio.lowlevel.open_process(
        [*CRAWL, *worker_args(site, url, agent, *extra)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def finish(process: trio.Process) -> str:
    """Wait for a worker (bounded) and return its log; it must exit 0."""
    assert process.stderr is not None
    chunks: list[bytes | bytearray] = []
    with trio.fail_after(60):
        async with process.stderr:
            async for chunk in process.stderr:
                chunks.append(chunk)
        status = await process.wait()
    log = b"".join(chunks).decode()
    assert status == 0, log
    return log


async def export(cwd: Path, url: str) -> list[str]:
    out = cwd / "items.jsonl"
    ok(await crawl(cwd, "export", url, "--spider", "twohosts", "-O", str(out)))
    return [item["url"] for item in read_jsonl(out)]


def held(site: TwoHostSite, hold_from: int) -> int:
    return sum(n for url, n in page_hits(site).items() if int(url.rsplit("/", 1)[1]) >= hold_from)


def page_hits(site: TwoHostSite) -> dict[str, int]:
    return {url: n for url, n in site.hits.items() if "/p/" in url}


async def test_three_worker_processes_share_a_crawl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cwd = project(tmp_path)
    async with serve_two_hosts(TwoHostSite(150, delay=0.02)) as site:
        workers = [await start_worker(cwd, site, redis_server.url, f"w{n}") for n in range(3)]
        for process in workers:
            await finish(process)
    assert page_hits(site) == dict.fromkeys(site.all_urls(), 1)
    urls = await export(cwd, redis_server.url)
    assert sorted(urls) == sorted(site.all_urls())


async def test_a_killed_worker_loses_nothing_and_exports_nothing_twice(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cwd = project(tmp_path)
    async with serve_two_hosts(TwoHostSite(200, hold_from=40)) as site:
        # its leases expire 2 s after its last heartbeat
        doomed = await start_worker(cwd, site, redis_server.url, "doomed", "-s", "lease_ttl=2")
        # pages 40 and on are held: once it asked for one, it has pages it cannot commit
        await site.wait_for(lambda: site.by_agent["doomed"] >= 10 and held(site, 40) >= 1)
        doomed.send_signal(signal.SIGKILL)
        with trio.fail_after(30):
            await doomed.wait()
        site.release.set()
        survivor = await start_worker(cwd, site, redis_server.url, "survivor")
        await finish(survivor)
        status = (await crawl(cwd, "status", redis_server.url)).stdout.decode()
    hits = page_hits(site)
    assert set(hits) == site.all_urls()  # every page fetched...
    urls = await export(cwd, redis_server.url)
    assert sorted(urls) == sorted(site.all_urls())  # ...and every item exported once
    # the pages the killed worker held were fetched again, and the status says so
    assert sum(hits.values()) > 200
    reaped = int(status.split("leases taken back from dead workers")[0].rsplit(";", 1)[1])
    assert reaped >= 1, status
    assert "pages done:    200" in status


async def test_status_and_stop_then_a_new_worker_resumes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cwd = project(tmp_path)
    async with serve_two_hosts(TwoHostSite(120, hold_from=20)) as site:
        first = await start_worker(cwd, site, redis_server.url, "first")
        # pages 20 and on wait: the crawl is midway, with pages in flight (breadth first,
        # pages 0-14 are asked for before any of them, so at least 15 are answered)
        await site.wait_for(lambda: site.by_agent["first"] >= 15)
        live = (await crawl(cwd, "status", redis_server.url, "--spider", "twohosts")).stdout
        stopped = ok(await crawl(cwd, "stop", redis_server.url, "--spider", "twohosts"))
        site.release.set()  # the pages in flight are answered; the worker commits and exits
        log = await finish(first)
        after = (await crawl(cwd, "status", redis_server.url)).stdout.decode()
        await finish(await start_worker(cwd, site, redis_server.url, "second"))
    assert "workers alive: 1" in live.decode()
    assert stopped == "" and "crawl stop requested" in log
    assert "workers alive: 0" in after and "in flight:     0 (leased)" in after
    assert "(stop requested)" in after
    pending = int(after.split("pending:")[1].split()[0])
    assert pending > 0  # stopped midway, and what was leased went back to the queue
    assert page_hits(site) == dict.fromkeys(site.all_urls(), 1)
    assert sorted(await export(cwd, redis_server.url)) == sorted(site.all_urls())


async def test_a_worker_refuses_feeds_and_an_unreachable_redis(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    refused = await crawl(cwd, "twohosts", "--frontier", "redis://127.0.0.1:1/0", "-o", "x.jsonl")
    assert refused.returncode == 2
    assert "crawl export" in refused.stderr.decode()
    down = await crawl(cwd, "twohosts", "--frontier", "redis://:s3cret@127.0.0.1:1/0")
    assert down.returncode == 2
    message = down.stderr.decode()
    assert "redis://127.0.0.1:1/0: cannot connect" in message
    assert "s3cret" not in message
    assert "Traceback" not in message


async def test_export_trim_from_the_command_line(redis_server: RedisServer, tmp_path: Path) -> None:
    cwd = project(tmp_path)
    out = cwd / "items.jsonl"
    async with serve_two_hosts(TwoHostSite(12)) as site:
        await finish(await start_worker(cwd, site, redis_server.url, "w1"))
    trim = ("export", redis_server.url, "--spider", "twohosts", "-o", str(out), "--trim")
    result = await crawl(cwd, *trim)
    ok(result)
    assert b"12 items exported" in result.stdout
    status = (await crawl(cwd, "status", redis_server.url)).stdout.decode()
    assert "items:         12 (0 in the stream, 12 exported and trimmed)" in status
    assert sorted(item["url"] for item in read_jsonl(out)) == sorted(site.all_urls())
