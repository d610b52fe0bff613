"""The HTTP cache through the real ``crawl`` command: ``-s http_cache=true``, the
stats file, ``crawl status``, ``crawl cache clear``, and a crawl killed with SIGKILL
while it writes to the cache."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler.demo import DemoApp
from tests.cli.helpers import CRAWL, FAST, TIME_LIMIT, crawl, ok, read_jsonl
from tests.crawl import helpers
from tests.servers import Reply, Seen, serve_asgi, serve_h11

pytestmark = pytest.mark.e2e

SPIDER = """\
from crawler import Request, Spider


class Pages(Spider):
    name = "pages"
    options = {"base": ""}

    def start_requests(self):
        yield Request(self.settings["base"] + "/")

    def parse(self, response):
        yield {"url": str(response.url), "size": len(response.content)}
        yield from response.follow_all(css="a")
"""

HTML = [("Content-Type", "text/html")]


def links(*paths: str) -> bytes:
    return "".join(f'<a href="{path}">{path}</a>' for path in paths).encode()


def small_site(seen: Seen) -> Reply:
    if seen.target == "/robots.txt":
        return Reply(200, [], b"User-agent: *\nAllow: /\n")
    if seen.target == "/":
        return Reply(200, HTML, links("/a", "/moved"))
    if seen.target == "/moved":
        return Reply(302, [("Location", "/b")])
    return Reply(200, HTML, b"<p>" + seen.target.encode() + b"</p>")


def project(root: Path) -> Path:
    return helpers.make_project(root, FAST, pages=SPIDER)


def stats_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


async def test_a_rerun_with_s_http_cache_true_sends_nothing(tmp_path: Path) -> None:
    root = project(tmp_path)
    async with serve_h11(small_site) as server:
        args = ["pages", "-s", f'base="{server.url}"', "-s", "http_cache=true"]
        ok(await crawl(root, *args, "-O", "first.jsonl", "--stats-json", "first.json"))
        sent = len(server.requests)
        assert sent == 5  # robots.txt, /, /a, /moved, /b
        stderr = ok(await crawl(root, *args, "-O", "second.jsonl", "--stats-json", "second.json"))
        assert len(server.requests) == sent
        # A durable job from the cache, for crawl status.
        ok(await crawl(root, *args, "--job", "job"))
        assert len(server.requests) == sent

    def urls(name: str) -> list[str]:
        return sorted(item["url"] for item in read_jsonl(root / name))

    assert urls("second.jsonl") == urls("first.jsonl")
    assert len(urls("first.jsonl")) == 3
    first, second = stats_of(root / "first.json"), stats_of(root / "second.json")
    assert (first["httpcache/store"], first["httpcache/hit"]) == (5, 0)
    assert (second["httpcache/hit"], second["httpcache/miss"], second["requests"]) == (5, 0, 0)
    assert "http cache hit 5, miss 0, store 0, revalidate 0, uncacheable 0" in stderr
    cache = root / ".crawl" / "httpcache" / "pages"
    assert (cache / "cache.db").is_file()

    status = await trio.run_process(
        [*CRAWL, "status", "job"], cwd=root, capture_stdout=True, capture_stderr=True
    )
    assert f"http cache:       {cache} (5 responses" in status.stdout.decode()

    cleared = await trio.run_process(
        [*CRAWL, "cache", "clear", "pages"], cwd=root, capture_stdout=True, capture_stderr=True
    )
    assert "deleted the HTTP cache" in cleared.stdout.decode()
    assert not (cache / "cache.db").exists()


async def test_without_the_cache_setting_nothing_is_stored(tmp_path: Path) -> None:
    root = project(tmp_path)
    async with serve_h11(small_site) as server:
        args = ["pages", "-s", f'base="{server.url}"', "--stats-json", "s.json"]
        ok(await crawl(root, *args))
        ok(await crawl(root, *args))
        assert len(server.requests) == 10
    assert not (root / ".crawl").exists()
    assert not any(key.startswith("httpcache/") for key in stats_of(root / "s.json"))


CHAIN = 10  # /p/1 -> /p/2 -> ... ; /p/CHAIN is held until the crawl is killed
WIDE = 30  # pages of 200 kB linked from the index, being written when the kill comes


class KilledSite:
    """Answers a chain of pages one after the other and many big pages at once; holds
    /p/CHAIN until ``release``. By the time /p/CHAIN is asked for, every page before
    it went through the cache (each is stored before its callback runs)."""

    def __init__(self) -> None:
        self.held = trio.Event()
        self.release = trio.Event()

    async def __call__(self, seen: Seen) -> Reply:
        path = seen.target
        if path == "/robots.txt":
            return Reply(200, [], b"User-agent: *\nAllow: /\n")
        if path == "/":
            return Reply(200, HTML, links("/p/1", *(f"/w/{n}" for n in range(WIDE))))
        if path.startswith("/w/"):
            return Reply(200, HTML, os.urandom(100_000).hex().encode())
        n = int(path.removeprefix("/p/"))
        if n == CHAIN:
            self.held.set()
            await self.release.wait()
        return Reply(200, HTML, links(f"/p/{n + 1}") if n < CHAIN else b"end")


async def test_a_crawl_killed_mid_write_leaves_a_cache_the_next_run_uses(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    site = KilledSite()
    async with serve_h11(site) as server:
        args = [*CRAWL, "pages", "-s", f'base="{server.url}"', "-s", "http_cache=true"]
        with trio.fail_after(TIME_LIMIT):
            async with trio.open_nursery() as nursery:
                run = partial(
                    trio.run_process,
                    [*args, "-O", "killed.jsonl"],
                    cwd=root,
                    check=False,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                proc = await nursery.start(run)
                await site.held.wait()
                proc.send_signal(signal.SIGKILL)
        assert proc.returncode == -signal.SIGKILL
        site.release.set()
        before = len(server.requests)

        db = root / ".crawl" / "httpcache" / "pages" / "cache.db"
        check = sqlite3.connect(db)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            check.close()

        result = await crawl(
            root,
            "pages",
            "-s",
            f'base="{server.url}"',
            "-s",
            "http_cache=true",
            "-O",
            "items.jsonl",
            "--stats-json",
            "stats.json",
        )
        ok(result)
        again = [seen.target for seen in server.requests[before:]]

    # The pages before the held one were stored: not one of them was asked for again.
    stored = {"/robots.txt", "/", *(f"/p/{n}" for n in range(1, CHAIN))}
    assert stored.isdisjoint(again)
    assert f"/p/{CHAIN}" in again
    items = read_jsonl(root / "items.jsonl")
    assert len(items) == 1 + CHAIN + WIDE
    stats = stats_of(root / "stats.json")
    assert stats["httpcache/hit"] >= len(stored)
    assert stats["httpcache/hit"] + stats["httpcache/miss"] == 2 + CHAIN + WIDE


REPO = Path(__file__).resolve().parents[2]


async def test_myspider_reruns_from_the_cache_on_the_demo_site(tmp_path: Path) -> None:
    """The demo site the command starts has the same address from run to run when the
    cache is on, so the second run takes every page from the cache, its login (which
    a spider's session sends itself) included."""
    args = ["myspider", "-s", "http_cache=true", "-s", f'http_cache_dir="{tmp_path}/cache"']
    ok(
        await crawl(
            REPO, *args, "-O", str(tmp_path / "1.jsonl"), "--stats-json", str(tmp_path / "1.json")
        )
    )
    ok(
        await crawl(
            REPO, *args, "-O", str(tmp_path / "2.jsonl"), "--stats-json", str(tmp_path / "2.json")
        )
    )
    first, second = stats_of(tmp_path / "1.json"), stats_of(tmp_path / "2.json")
    assert first["httpcache/store"] > 10
    assert second["httpcache/hit"] == first["httpcache/store"]
    assert second["httpcache/miss"] == 0

    def items(name: str) -> list[str]:
        return sorted(json.dumps(item, sort_keys=True) for item in read_jsonl(tmp_path / name))

    assert items("2.jsonl") == items("1.jsonl")


class CountingDemo:
    """The demo site, counting the requests it is sent (method and path) since ``reset``."""

    def __init__(self) -> None:
        self.app = DemoApp()
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


async def run_myspider_twice(tmp_path: Path, policy: str) -> tuple[list[tuple[str, str]], Path]:
    """Crawl the demo site with myspider twice with the cache on; what the second run
    sent to the site, counted by the site."""
    site = CountingDemo()
    async with serve_asgi(site) as url:
        args = [
            "myspider",
            *("-s", f'site_url="{url}"', "-s", "serve_demo_site=false"),
            *("-s", "http_cache=true", "-s", f'http_cache_policy="{policy}"'),
            *("-s", f'http_cache_dir="{tmp_path}/cache"'),
        ]
        ok(await crawl(REPO, *args, "-O", str(tmp_path / "1.jsonl")))
        assert ("POST", "/login") in site.seen  # the first run logged in for real
        site.seen.clear()
        ok(await crawl(REPO, *args, "-O", str(tmp_path / "2.jsonl")))
    return site.seen, tmp_path


def same_items(tmp_path: Path) -> bool:
    def items(name: str) -> list[str]:
        return sorted(json.dumps(item, sort_keys=True) for item in read_jsonl(tmp_path / name))

    first = items("1.jsonl")
    return len(first) > 10 and items("2.jsonl") == first


async def test_a_rerun_of_a_logging_in_spider_sends_nothing_in_dev_mode(tmp_path: Path) -> None:
    """The login a session sends itself (the form, the POST of the credentials, the
    redirect after it) is replayed with the pages: the site sees no request at all,
    and the replayed Set-Cookie logs the session in, so the logged-in pages' items
    come back the same."""
    seen, root = await run_myspider_twice(tmp_path, "dev")
    assert seen == []
    assert same_items(root)
    with sqlite3.connect(root / "cache" / "cache.db") as db:
        rows = db.execute("SELECT url, headers, body FROM responses").fetchall()
    stored = "\n".join(f"{url} {headers}" for url, headers, _ in rows).encode()
    stored += b"".join(bytes(body) for _, _, body in rows)
    assert b"password=demo" not in stored  # the login form's body is not kept, only its hash


async def test_with_rfc9111_a_rerun_still_logs_in_over_the_network(tmp_path: Path) -> None:
    """RFC 9111 keeps no answer to a POST: the login goes to the site again."""
    seen, root = await run_myspider_twice(tmp_path, "rfc9111")
    assert ("POST", "/login") in seen
    assert same_items(root)
