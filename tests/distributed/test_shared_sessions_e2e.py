"""Worker processes (the crawl command) of a login spider sharing one crawl through a
real redis-server: the site sees one login, every item is exported once, and Redis
holds the session's cookies but never the password."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crawler.distributed import RedisClient
from tests.cli.helpers import CRAWL, FAST, crawl, ok, read_jsonl
from tests.crawl.helpers import make_project
from tests.redis_server import RedisServer
from tests.servers import serve_asgi
from tests.sessions.helpers import ALICE_PASSWORD, Members

pytestmark = pytest.mark.e2e

SETTINGS = FAST + "obey_robots = false\nlease_ttl = 10.0\nconcurrency = 4\n"

SPIDER = """
from crawler import Request, Spider


class MemberSpider(Spider):
    name = "members"
    options = {"base": "", "user": "alice", "password": ""}
    login_url = "/login"

    async def login(self, session):
        page = await session.get(self.settings["base"] + self.login_url)
        await session.submit_form(
            page,
            "#login",
            {"username": self.settings["user"], "password": self.settings["password"]},
            expect=".account-name",
        )

    def start_requests(self):
        yield Request(self.settings["base"] + "/items/")

    def parse(self, response):
        yield from response.follow_all(css="a.item", callback=self.parse_item)

    def parse_item(self, response):
        return {
            "item": response.css_first("h1.item").text(),
            "owner": response.css_first(".account-name").text(),
        }
"""


async def run_worker(cwd: Path, base: str, url: str, agent: str) -> None:
    args = [
        *CRAWL,
        "members",
        "--frontier",
        url,
        "-s",
        f'base="{base}"',
        "-s",
        f'user_agent="{agent}"',
    ]
    args += ["-s", f'password="{ALICE_PASSWORD}"']
    with trio.fail_after(90):
        result = await trio.run_process(
            args, cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
    log = ok(result)
    assert ALICE_PASSWORD not in log


async def everything_in(url: str) -> bytes:
    """Every key and value of the Redis database, as one blob to search."""
    parts: list[bytes] = []
    async with RedisClient(url) as client:
        keys = await client.execute("KEYS", "*")
        assert isinstance(keys, list)
        for key in keys:
            kind = await client.execute("TYPE", key)
            assert isinstance(kind, bytes)
            command = {
                b"string": ["GET", key],
                b"hash": ["HGETALL", key],
                b"set": ["SMEMBERS", key],
                b"zset": ["ZRANGE", key, 0, -1],
                b"list": ["LRANGE", key, 0, -1],
                b"stream": ["XRANGE", key, "-", "+"],
            }[kind]
            parts.append(key)
            parts.append(repr(await client.execute(*command)).encode())
    return b"\n".join(parts)


async def test_worker_processes_log_in_once_and_export_every_item_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cwd = make_project(tmp_path / "project", SETTINGS, members=SPIDER)
    app = Members(items=30)
    async with serve_asgi(app) as base, trio.open_nursery() as nursery:
        for agent in ("w1", "w2", "w3"):
            nursery.start_soon(run_worker, cwd, base, redis_server.url, agent)
    posts = [row for row in app.log if row[:2] == ("POST", "/login")]
    assert len(posts) == 1 and app.logins == {"alice": 1}
    assert [row for row in app.log if row[1].startswith("/items/") and row[2] is None] == []
    out = cwd / "items.jsonl"
    ok(await crawl(cwd, "export", redis_server.url, "--spider", "members", "-O", str(out)))
    items = read_jsonl(out)
    assert sorted(int(item["item"]) for item in items) == list(range(30))
    assert {item["owner"] for item in items} == {"alice"}
    stored = await everything_in(redis_server.url)
    assert b"session:default:cookies" in stored and b"sid" in stored
    assert ALICE_PASSWORD.encode() not in stored
