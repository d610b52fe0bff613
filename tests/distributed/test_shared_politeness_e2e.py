"""Global politeness end to end: several ``crawl`` processes sharing one Redis.

The workers are ``crawl`` processes started with the same ``frontier_url`` and
``crawl_id``: they share one crawl (its frontier), and what is tested here is
that they also share the per-host caps and delays. The sites are ``serve_h11`` servers on
127.0.0.x in the test's own trio loop, so what they saw (connections open at
once, arrival times) is the ground truth the assertions rest on.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from crawler.distributed import RedisClient
from tests.cli.helpers import CRAWL, FAST, crawl
from tests.crawl import helpers
from tests.redis_server import RedisServer, free_port
from tests.servers import Reply, Seen, serve_h11

pytestmark = pytest.mark.e2e

GUARD = 120  # seconds for a whole test: a hang guard, never reached when things work
PAGES = 12  # per host

SPIDER = """\
from crawler import Request, Spider


class Site(Spider):
    name = "site"
    options = {"start": [""]}

    def start_requests(self):
        for url in self.settings["start"]:
            yield Request(url, callback=self.parse)

    async def parse(self, response):
        yield {"url": str(response.url)}
        for link in response.links():
            yield response.follow(link, callback=self.parse)
"""


def page(seen: Seen) -> Reply:
    """The index links to PAGES leaves of the same host."""
    if seen.target == "/":
        links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(PAGES))
        return Reply(200, [("Content-Type", "text/html")], f"<html>{links}</html>".encode())
    return Reply(200, [("Content-Type", "text/html")], b"<html>leaf</html>")


def slow(seconds: float) -> Callable[[Seen], Awaitable[Reply]]:
    """A server that takes ``seconds`` per answer, so a worker's requests overlap."""

    async def respond(seen: Seen) -> Reply:
        await trio.sleep(seconds)
        return page(seen)

    return respond


def project(tmp_path: Path) -> Path:
    return helpers.make_project(tmp_path, FAST + "obey_robots = false\n", site=SPIDER)


def worker_args(redis: RedisServer, starts: list[str], *settings: str) -> list[str]:
    start = json.dumps(starts)
    args = [*CRAWL, "site", "-s", f"start={start}", "-s", f"frontier_url={redis.url}"]
    args += ["-s", "crawl_id=e2e"]
    for setting in settings:
        args += ["-s", setting]
    return args


async def run_worker(
    root: Path, args: list[str], results: list[subprocess.CompletedProcess[bytes]]
) -> None:
    results.append(
        await trio.run_process(
            args, cwd=root, capture_stdout=True, capture_stderr=True, check=False
        )
    )


def assert_all_ok(results: list[subprocess.CompletedProcess[bytes]]) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr.decode()[-3000:]


async def no_leases_left(redis: RedisServer) -> list[bytes]:
    async with RedisClient(redis.url) as client:
        keys = await client.execute("KEYS", "crawl:{site/e2e}:host:*:conns")
    assert isinstance(keys, list)
    return keys


async def test_three_workers_never_open_more_than_the_cap_per_host_together(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    root = project(tmp_path)
    results: list[subprocess.CompletedProcess[bytes]] = []
    with trio.fail_after(GUARD):
        async with (
            serve_h11(slow(0.02), "127.0.0.2") as a,
            serve_h11(slow(0.02), "127.0.0.3") as b,
            serve_h11(slow(0.02), "127.0.0.4") as c,
        ):
            servers = [a, b, c]
            args = worker_args(
                redis_server,
                [server.url + "/" for server in servers],
                "max_connections_per_host=2",
                "keepalive_expiry=0.5",
            )
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(run_worker, root, args, results)
    assert_all_ok(results)
    for server in servers:
        # the workers crawled the site together, each page once...
        assert sorted(seen.target for seen in server.requests) == sorted(
            ["/", *(f"/p/{i}" for i in range(PAGES))]
        )
        # ...and the server never saw more than 2 connections at once
        assert server.peak_open <= 2, server.host
    # nor only ever 1: the cap was reached
    assert max(server.peak_open for server in servers) == 2
    assert await no_leases_left(redis_server) == []


async def test_a_domain_cap_is_shared_too(tmp_path: Path, redis_server: RedisServer) -> None:
    root = project(tmp_path)
    (root / "settings.toml").write_text(
        FAST + 'obey_robots = false\n[domains."127.0.0.2"]\nmax_connections = 1\n'
    )
    results: list[subprocess.CompletedProcess[bytes]] = []
    with trio.fail_after(GUARD):
        async with (
            serve_h11(slow(0.02), "127.0.0.2") as one,
            serve_h11(slow(0.02), "127.0.0.3") as three,
        ):
            args = worker_args(
                redis_server, [one.url + "/", three.url + "/"], "max_connections_per_host=3"
            )
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(run_worker, root, args, results)
    assert_all_ok(results)
    assert one.peak_open == 1
    assert 1 < three.peak_open <= 3


async def test_a_killed_workers_leases_expire_and_the_others_reach_the_cap_again(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    root = project(tmp_path)
    ttl = 2.0
    hold = trio.Event()  # set when the first worker holds both connections
    phase_two = trio.Event()
    release_two = trio.Event()  # set when two phase-two requests are in at once
    in_flight = 0

    async def respond(seen: Seen) -> Reply:
        nonlocal in_flight
        if not phase_two.is_set():
            if len(server.requests) >= 2:
                hold.set()
            await phase_two.wait()  # the doomed worker's requests end only after its death
            return page(seen)
        in_flight += 1
        if in_flight >= 2:
            release_two.set()
        await release_two.wait()
        in_flight -= 1
        return page(seen)

    results: list[subprocess.CompletedProcess[bytes]] = []
    key = "crawl:{site/e2e}:host:127.0.0.2:conns"
    with trio.fail_after(GUARD):
        async with (
            serve_h11(respond, "127.0.0.2") as server,
            RedisClient(redis_server.url) as redis,
        ):
            args = worker_args(
                redis_server,
                [server.url + "/", server.url + "/?again"],
                "max_connections_per_host=2",
                f"connection_lease_ttl={ttl}",
                f"lease_ttl={ttl}",  # the dead worker's pages come back as soon
                "pool_timeout=60",
            )
            doomed = await trio.lowlevel.open_process(
                args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                await hold.wait()
                assert server.open_now == 2
                leases = await redis.execute("ZRANGE", key, 0, -1)
                assert isinstance(leases, list) and len(leases) == 2
            finally:
                doomed.kill()  # SIGKILL: no chance to give the leases back
                await doomed.wait()
            phase_two.set()
            for _ in range(100):  # the dead worker's connections end on the server side too
                if server.open_now == 0:
                    break
                await server.closed.wait()
            assert server.open_now == 0
            server.peak_open = 0
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(run_worker, root, args, results)
            # the survivors could open both connections only once the dead leases expired
            assert release_two.is_set()
            left = await redis.execute("ZRANGE", key, 0, -1)
            assert isinstance(left, list) and not set(left) & set(leases)
    assert_all_ok(results)
    assert server.peak_open == 2
    # the dead worker's two pages, then the whole site once by the survivors together
    assert len(server.requests) == 2 + (PAGES + 2)


async def test_two_workers_keep_the_download_delay_between_any_two_requests_to_a_host(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    root = project(tmp_path)
    delay = 0.5
    tolerance = 0.15  # scheduling noise between a booked slot and the request's arrival
    arrivals: dict[str, list[float]] = {}

    def recording(host: str) -> Callable[[Seen], Reply]:
        def respond(seen: Seen) -> Reply:
            arrivals.setdefault(host, []).append(trio.current_time())
            return page(seen)

        return respond

    results: list[subprocess.CompletedProcess[bytes]] = []
    pages = 16  # max_pages counts the whole crawl: both workers, both hosts
    with trio.fail_after(GUARD):
        async with (
            serve_h11(recording("a"), "127.0.0.2") as a,
            serve_h11(recording("b"), "127.0.0.3") as b,
        ):
            args = worker_args(
                redis_server,
                [a.url + "/", b.url + "/"],
                f"download_delay={delay}",
                f"max_pages={pages}",
            )
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(run_worker, root, args, results)
    assert_all_ok(results)
    assert sum(len(times) for times in arrivals.values()) == pages
    for host, times in arrivals.items():
        assert len(times) >= 2, (host, times)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= delay - tolerance, (host, gaps)


async def test_idle_connections_held_crosswise_are_closed_on_time_not_deadlocked(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Worker A holds host X's only connection idle and wants Y; worker B holds Y's and
    wants X. Neither sends anything else, so only the keep-alive timer frees them; without
    it both would wait for the pool timeout and fail."""
    root = project(tmp_path)
    both_in = trio.Event()
    urls: dict[str, str] = {}

    def crossing(host: str, other: str) -> Callable[[Seen], Awaitable[Reply]]:
        async def respond(seen: Seen) -> Reply:
            if seen.target == "/":
                urls.setdefault(host + " asked", "")
                if all(name + " asked" in urls for name in ("x", "y")):
                    both_in.set()
                await both_in.wait()  # each worker now holds one host's only connection
                body = f'<a href="{urls[other]}/leaf">x</a>'.encode()
                return Reply(200, [("Content-Type", "text/html")], body)
            return Reply(200, [("Content-Type", "text/html")], b"leaf")

        return respond

    results: list[subprocess.CompletedProcess[bytes]] = []
    settings = (
        "max_connections_per_host=1",
        "keepalive_expiry=0.5",
        "pool_timeout=20",
        "retry_times=0",
    )
    with trio.fail_after(GUARD):
        async with (
            serve_h11(crossing("x", "y"), "127.0.0.2") as x,
            serve_h11(crossing("y", "x"), "127.0.0.3") as y,
        ):
            urls.update(x=x.url, y=y.url)
            async with trio.open_nursery() as nursery:
                for start in (x, y):
                    args = worker_args(redis_server, [start.url + "/"], *settings)
                    nursery.start_soon(run_worker, root, args, results)
    assert_all_ok(results)
    for server in (x, y):
        assert sorted(seen.target for seen in server.requests) == ["/", "/leaf"]


async def test_a_bad_or_unreachable_frontier_url_is_one_clear_error(tmp_path: Path) -> None:
    root = project(tmp_path)
    start = "start=" + json.dumps(["http://127.0.0.1:1/"])
    with trio.fail_after(GUARD):
        bad = await crawl(root, "site", "-s", start, "-s", "frontier_url=http://cache:6379")
        gone = await crawl(
            root, "site", "-s", start, "-s", f"frontier_url=redis://127.0.0.1:{free_port()}/0"
        )
    assert bad.returncode != 0 and gone.returncode != 0
    assert bad.stderr.decode().strip().splitlines()[-1] == (
        "crawl: error: frontier_url: http://cache:6379: a Redis URL starts with redis:// or rediss://"
    )
    last = gone.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("crawl: error: redis://127.0.0.1:") and "cannot connect" in last
    assert "Traceback" not in bad.stderr.decode() + gone.stderr.decode()
