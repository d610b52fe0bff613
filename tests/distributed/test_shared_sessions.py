"""Sessions shared by the workers of a crawl through a real redis-server: one login for
all of them, one re-login when the site logs them out, cookies that reach every worker.

Each worker runs in an engine of its own (its own pool, cookie jars and frontier), as
separate processes would; the site is a real loopback server with server-side sessions
that counts the logins it sees.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import trio

from crawler import Settings
from crawler.distributed import RedisClient
from crawler.distributed._admin import crawl_status
from crawler.distributed._frontier import CrawlKeys
from crawler.distributed._sessions import (
    SharedSessions,
    cookie_field,
    decode_cookie,
    encode_cookie,
)
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from crawler.http import Cookie, Cookies
from crawler.sessions import Session
from tests.redis_server import RedisServer
from tests.servers import serve_asgi
from tests.sessions.helpers import ALICE_PASSWORD, Members, MemberSpider

KEYS = CrawlKeys("members", "default")
ITEMS = 30


class HeldMembers(Members):
    """``Members`` that can hold its item pages: until ``release`` (``hold``), or until
    every one of ``barrier`` workers has an item page waiting, which are then all
    answered logged out (``logout_at_barrier``): a logout every worker sees at once."""

    def __init__(self, items: int = ITEMS) -> None:
        super().__init__(items)
        self.hold = False
        self.release = trio.Event()
        self.barrier = 0
        self._waiting: set[str] = set()
        self._all_waiting = trio.Event()
        self.agents: list[tuple[str, str, str | None]] = []  # (agent, path, user)
        self.changed = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        agent = headers.get(b"user-agent", b"").decode()
        path = scope["path"]
        if path.startswith("/items/") and path != "/items/":
            if self.hold:
                sid = headers.get(b"cookie", b"").decode().partition("sid=")[2][:32]
                self._note(agent, path, self.sessions.get(sid))  # who sent it, held
                await self.release.wait()
            elif self.barrier:
                self._waiting.add(agent)
                if len(self._waiting) >= self.barrier:
                    self.barrier = 0
                    self.sessions.clear()  # every worker's page comes back logged out
                    self._all_waiting.set()
                await self._all_waiting.wait()
        await super().__call__(scope, receive, send)
        user = self.log[-1][2]
        self._note(agent, path, user)

    def _note(self, agent: str, path: str, user: str | None = None) -> None:
        self.agents.append((agent, path, user))
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Any) -> None:
        with trio.fail_after(60):
            while not predicate():
                await self.changed.wait()


def worker_settings(base: str, url: str, agent: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "frontier_url": url,
        "lease_ttl": 10.0,  # no live worker is taken for dead on a loaded machine
        "concurrency": 4,
        "obey_robots": False,
        "retry_backoff": 0.01,
        "download_delay_jitter": 0.0,
        "user_agent": agent,
        "options": {"base": base, "user": "alice", "password": ALICE_PASSWORD},
    }
    values.update(overrides)
    return Settings(**values)


async def run_worker(s: Settings, results: list[Stats]) -> None:
    async with Engine(s) as engine:
        results.append(await engine.crawler(MemberSpider, s, pipelines=[]).run())


async def stream_items(url: str) -> Counter[str]:
    async with RedisClient(url) as client:
        entries = await client.execute("XRANGE", KEYS.items, "-", "+")
    assert isinstance(entries, list)
    items = [json.loads(fields[1]) for _, fields in entries]
    assert {item["owner"] for item in items} == {"alice"}
    return Counter(item["item"] for item in items)


def every_item_once() -> Counter[str]:
    return Counter({str(n): 1 for n in range(ITEMS)})


def login_posts(app: Members) -> int:
    return sum(1 for method, path, _ in app.log if (method, path) == ("POST", "/login"))


# -- end to end ---------------------------------------------------------------------------


async def test_three_workers_log_in_once_and_scrape_every_item_once(
    redis_server: RedisServer,
) -> None:
    app = HeldMembers()
    results: list[Stats] = []
    async with serve_asgi(app) as base:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2", "w3"):
                    s = worker_settings(base, redis_server.url, agent)
                    nursery.start_soon(run_worker, s, results)
    assert login_posts(app) == 1
    assert app.logins == {"alice": 1}
    # No item page ever reached the site logged out, whichever worker sent it.
    assert [row for row in app.log if row[1].startswith("/items/") and row[2] is None] == []
    assert await stream_items(redis_server.url) == every_item_once()
    assert all(stats.finish_reason == "finished" for stats in results)
    status = await trio.to_thread.run_sync(
        crawl_status, redis_server.url, KEYS.spider, KEYS.crawl_id
    )
    assert "session default:  1 login shared by the workers, cookies changed" in status


async def test_a_logout_seen_by_every_worker_at_once_makes_one_relogin(
    redis_server: RedisServer,
) -> None:
    app = HeldMembers()
    app.barrier = 3  # the first item pages wait until each worker has one in flight
    results: list[Stats] = []
    async with serve_asgi(app) as base:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2", "w3"):
                    s = worker_settings(base, redis_server.url, agent)
                    nursery.start_soon(run_worker, s, results)
    logged_out = {agent for agent, path, user in app.agents if user is None}
    assert logged_out == {"w1", "w2", "w3"}  # each worker saw the logout
    assert app.logins == {"alice": 2}  # the first login, and one re-login for all
    assert login_posts(app) == 2
    assert await stream_items(redis_server.url) == every_item_once()
    assert all(stats.finish_reason == "finished" for stats in results)


async def test_a_worker_joining_later_takes_the_login_instead_of_logging_in(
    redis_server: RedisServer,
) -> None:
    app = HeldMembers()
    app.hold = True  # the first worker's item pages wait: the crawl stays open
    results: list[Stats] = []
    async with serve_asgi(app) as base:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    run_worker, worker_settings(base, redis_server.url, "first"), results
                )
                await app.wait_for(lambda: any(a == "first" for a, _, _ in app.agents))
                nursery.start_soon(
                    run_worker, worker_settings(base, redis_server.url, "late"), results
                )
                await app.wait_for(lambda: any(a == "late" for a, _, _ in app.agents))
                app.hold = False
                app.release.set()
    assert app.logins == {"alice": 1}
    late = [user for agent, path, user in app.agents if agent == "late"]
    assert late and set(late) == {"alice"}  # its pages went out logged in, from the first
    assert not any(path == "/login" for agent, path, _ in app.agents if agent == "late")
    assert await stream_items(redis_server.url) == every_item_once()


async def test_a_login_that_fails_is_tried_once_not_once_per_worker(
    redis_server: RedisServer,
) -> None:
    app = HeldMembers()
    results: list[Stats] = []
    async with serve_asgi(app) as base:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2", "w3"):
                    s = worker_settings(
                        base,
                        redis_server.url,
                        agent,
                        options={"base": base, "user": "alice", "password": "wrong"},
                    )
                    nursery.start_soon(run_worker, s, results)
    assert login_posts(app) == 1  # a wrong password, tried once: no account lockout
    assert [stats.finish_reason for stats in results] == ["login_failed"] * 3
    assert app.logins == {}


async def test_with_shared_sessions_off_each_worker_logs_in_itself(
    redis_server: RedisServer,
) -> None:
    app = HeldMembers()
    results: list[Stats] = []
    async with serve_asgi(app) as base:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2"):
                    s = worker_settings(base, redis_server.url, agent, shared_sessions=False)
                    nursery.start_soon(run_worker, s, results)
    assert app.logins == {"alice": 2}
    assert await stream_items(redis_server.url) == every_item_once()
    async with RedisClient(redis_server.url) as client:
        assert await client.execute("KEYS", KEYS.prefix + "session*") == []


# -- cookies between workers ------------------------------------------------------------


def _session(name: str = "default") -> Session:
    return Session(name, transport=None)  # type: ignore[arg-type]  # sends nothing


async def _round(share: SharedSessions) -> None:
    replies = await share.client.pipeline(share.commands())
    await share.replies(replies)


async def test_a_cookie_a_page_set_reaches_the_other_workers_at_their_next_round(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as one, RedisClient(redis_server.url) as two:
        mine, theirs = {"default": _session()}, {"default": _session()}
        a = SharedSessions(one, KEYS.prefix, mine, lock_ttl=10, wait=10)
        b = SharedSessions(two, KEYS.prefix, theirs, lock_ttl=10, wait=10)
        with trio.fail_after(30):
            await _round(a)
            await _round(b)
            mine["default"].cookies.set_cookie(
                Cookie("pref", "dark", "example.com", "/shop", secure=True, expires=4e9)
            )
            await _round(a)  # sends the change
            assert len(theirs["default"].cookies) == 0
            await _round(b)  # sees the version moved, loads
            got = theirs["default"].cookies.get("pref", domain="example.com", path="/shop")
            assert got == "dark"
            theirs["default"].cookies.delete("pref")
            await _round(b)
            await _round(a)
            assert len(mine["default"].cookies) == 0
            # Both change the jar between rounds: each ends up with both changes.
            mine["default"].cookies.set("a", "1", "example.com")
            theirs["default"].cookies.set("b", "2", "example.com")
            await _round(a)
            await _round(b)  # its change is stored, and a's loaded
            await _round(a)
            for jar in (mine["default"].cookies, theirs["default"].cookies):
                assert sorted(c.name for c in jar.jar) == ["a", "b"]


async def test_a_session_changing_every_round_does_not_hide_the_others_changes(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as one, RedisClient(redis_server.url) as two:
        mine = {"alice": _session("alice"), "bob": _session("bob")}
        theirs = {"bob": _session("bob")}
        a = SharedSessions(one, KEYS.prefix, mine, lock_ttl=10, wait=10)
        b = SharedSessions(two, KEYS.prefix, theirs, lock_ttl=10, wait=10)
        with trio.fail_after(30):
            theirs["bob"].cookies.set("token", "t1", "example.com")
            await _round(b)
            mine["alice"].cookies.set("seen", "1", "example.com")  # a page of alice's
            await _round(a)
            assert mine["bob"].cookies.get("token", domain="example.com") == "t1"


async def test_changes_made_under_an_older_login_are_refused(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as one, RedisClient(redis_server.url) as two:
        mine, theirs = {"default": _session()}, {"default": _session()}
        a = SharedSessions(one, KEYS.prefix, mine, lock_ttl=10, wait=10)
        b = SharedSessions(two, KEYS.prefix, theirs, lock_ttl=10, wait=10)
        with trio.fail_after(30):
            assert await a.claim(mine["default"], 0) is None  # a may log in
            mine["default"].cookies.set("sid", "new", "example.com")
            assert await a.publish(mine["default"]) == 1
            # b, still under no login, lost its sid on a logged-out page: not for a.
            theirs["default"].cookies.set("sid", "old", "example.com")
            theirs["default"].cookies.delete("sid")
            theirs["default"].cookies.set("other", "x", "example.com")
            await _round(b)
            assert theirs["default"].generation == 1
            assert theirs["default"].cookies.get("sid", domain="example.com") == "new"
            assert "other" not in theirs["default"].cookies
            await _round(a)
            assert mine["default"].cookies.get("sid", domain="example.com") == "new"


async def test_a_worker_waits_for_the_login_another_holds_then_loads_it(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as one, RedisClient(redis_server.url) as two:
        mine, theirs = {"default": _session()}, {"default": _session()}
        a = SharedSessions(one, KEYS.prefix, mine, lock_ttl=10, wait=30)
        b = SharedSessions(two, KEYS.prefix, theirs, lock_ttl=10, wait=30)
        loaded: list[int | None] = []

        async def claim_b() -> None:
            loaded.append(await b.claim(theirs["default"], 0))

        with trio.fail_after(30):
            assert await a.claim(mine["default"], 0) is None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim_b)
                async with a.holding(mine["default"]):
                    mine["default"].cookies.set("sid", "s1", "example.com")
                    await a.publish(mine["default"])
        assert loaded == [1]
        assert theirs["default"].cookies.get("sid", domain="example.com") == "s1"
        assert theirs["default"].logged_in and theirs["default"].generation == 1


async def test_waiting_for_a_login_that_never_ends_names_the_session(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as one, RedisClient(redis_server.url) as two:
        mine, theirs = {"alice": _session("alice")}, {"alice": _session("alice")}
        a = SharedSessions(one, KEYS.prefix, mine, lock_ttl=30, wait=30)
        b = SharedSessions(two, KEYS.prefix, theirs, lock_ttl=30, wait=0.2)
        with trio.fail_after(30):
            assert await a.claim(mine["alice"], 0) is None  # and never publishes
            try:
                await b.claim(theirs["alice"], 0)
            except Exception as exc:
                message = str(exc)
            else:
                raise AssertionError("the wait was not bounded")
    assert message.startswith("session 'alice': another worker's login did not end within 0.2 s")


# -- cookies as Redis stores them ---------------------------------------------------------


def test_a_cookie_survives_the_round_trip_through_redis_with_every_attribute() -> None:
    jar = Cookies()
    jar.set_cookie(
        Cookie(
            "sid",
            'v=1,x"y',
            "shop.example.com",
            "/account",
            secure=True,
            http_only=True,
            same_site="Strict",
            expires=4_000_000_000.5,
            host_only=True,
        )
    )
    jar.set_cookie(Cookie("lang", "fr", "example.com", "/"))
    stored = {cookie_field(c): encode_cookie(c) for c in jar.to_list()}
    back = Cookies()
    for blob in stored.values():
        back.set_cookie(decode_cookie(blob.encode(), "default"))
    assert [c.to_dict() for c in back.jar] == [c.to_dict() for c in jar.jar]
    sid = next(c for c in back.jar if c.name == "sid")
    assert (sid.domain, sid.path, sid.expires) == ("shop.example.com", "/account", 4e9 + 0.5)
    assert sid.secure and sid.http_only and sid.host_only and sid.same_site == "Strict"
    lang = next(c for c in back.jar if c.name == "lang")
    assert lang.expires is None and not lang.secure and not lang.host_only


def test_a_stored_cookie_that_is_not_one_names_the_session_not_its_value() -> None:
    for blob in (b"{not json", b'{"name": "a", "value": "secret", "colour": 1}', b"[1]"):
        try:
            decode_cookie(blob, "alice")
        except Exception as exc:
            assert str(exc).startswith("session 'alice': a cookie stored in Redis is unreadable")
            assert "secret" not in str(exc)
        else:
            raise AssertionError(f"{blob!r} was taken")
