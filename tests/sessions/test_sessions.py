"""Sessions and logins, end to end against real loopback sites.

``Members`` is a purpose-built site with server-side sessions, so a test can
expire them mid-crawl and know for each request which account (if any) the
server saw; the bundled demo site covers the CSRF form login as shipped.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import parse_qs

import pytest
import trio

from crawler import Engine, LoginFailed, Request, Response, Session, Settings, Spider, run_crawl
from crawler._redact import REDACTED, is_secret_key, redact_url
from crawler.cli._demo import start_demo_site
from crawler.demo import DemoApp
from crawler.demo._content import FAVOURITE_IDS
from crawler.engine._engine import Crawler
from crawler.engine._stats import write_stats_json
from crawler.http import ConnectionPool
from tests.servers import Reply, Seen, serve_asgi, serve_h11
from tests.sessions.helpers import ALICE_PASSWORD, BOB_PASSWORD, Members, MemberSpider

ROOT = Path(__file__).resolve().parents[2]


class Collector:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        self.items.append(item)
        return item


def settings(base: str, **overrides: Any) -> Settings:
    options = {"base": base, "user": "alice", "password": ALICE_PASSWORD}
    options.update(overrides.pop("options", {}))
    values: dict[str, Any] = {
        "concurrency": 8,
        "obey_robots": False,
        "retry_backoff": 0.01,
        "download_delay_jitter": 0.0,
        "options": options,
    }
    values.update(overrides)
    return Settings(**values)


async def run(
    spider: type[Spider], s: Settings, *, feeds: tuple[Path, ...] = ()
) -> tuple[Crawler, list[dict[str, Any]]]:
    collector = Collector()
    async with Engine(s) as engine:
        crawler = engine.crawler(spider, s, pipelines=[collector], feeds=feeds)
        with trio.fail_after(30):
            await crawler.run()
    return crawler, collector.items


@pytest.fixture
async def members() -> AsyncIterator[tuple[Members, str]]:
    app = Members()
    async with serve_asgi(app) as base:
        yield app, base


# -- Session on its own --------------------------------------------------------------


async def test_submit_form_logs_in_with_the_csrf_token_and_follows_the_redirect() -> None:
    seen: list[tuple[str, str]] = []
    posted: list[bytes] = []
    app = DemoApp()

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append((scope["method"], scope["path"]))

        async def tap() -> Any:
            message = await receive()
            if message.get("body"):
                posted.append(message["body"])
            return message

        await app(scope, tap, send)

    async with serve_asgi(recording) as base, ConnectionPool() as pool:
        session = Session("default", pool)
        page = await session.get(base + "/login")
        token = page.css_first('input[name="csrf_token"]').attributes["value"]
        result = await session.submit_form(
            page, "form", {"username": "demo", "password": "demo"}, expect=".account-name"
        )
        assert str(result.url) == base + "/"
        assert result.css_first(".account-name").text() == "demo"
        private = await session.get(base + "/private/")
        assert private.status_code == 200
        assert len(private.css("div.quote")) == len(FAVOURITE_IDS)
        assert "session" in session.cookies
        assert session.cookies["session"] not in repr(session)
        await session.aclose()
    [body] = posted
    form = parse_qs(body.decode())
    assert form["csrf_token"] == [token]
    assert form["username"] == ["demo"]
    assert seen == [
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/"),
        ("GET", "/private/"),
    ]


async def test_a_wrong_password_raises_login_failed_naming_url_status_and_selector(
    members: tuple[Members, str],
) -> None:
    _, base = members
    async with ConnectionPool() as pool:
        session = Session("default", pool)
        page = await session.get(base + "/login")
        with pytest.raises(LoginFailed) as info:
            await session.submit_form(
                page,
                "#login",
                {"username": "alice", "password": "nope-" + ALICE_PASSWORD},
                expect=".account-name",
            )
        with pytest.raises(LoginFailed, match="No element matches '#nothing'"):
            await session.submit_form(page, "#nothing", {"username": "alice"})
        await session.aclose()
    message = str(info.value)
    assert message == (
        f"Login failed at {base}/login (HTTP 200): nothing matches '.account-name' "
        "on the page after submitting the form"
    )
    assert info.value.status == 200
    assert ALICE_PASSWORD not in message and "alice" not in message


# -- logging in during a crawl ------------------------------------------------------


async def test_the_crawl_logs_in_first_and_scrapes_every_page_behind_the_login(
    members: tuple[Members, str],
) -> None:
    app, base = members
    crawler, items = await run(MemberSpider, settings(base))
    assert sorted(int(i["item"]) for i in items) == list(range(30))
    assert {i["owner"] for i in items} == {"alice"}
    assert app.logins == {"alice": 1}
    # Nothing but the login itself ever reached the site logged out.
    assert [(m, p) for m, p, user in app.log if user is None] == [
        ("GET", "/login"),
        ("POST", "/login"),
    ]
    assert crawler.stats.requests == 34  # 3 for the login (GET, POST, redirect), 31 pages
    assert crawler.stats.finish_reason == "finished"
    assert not crawler.failed
    assert crawler.sessions["default"].logged_in


async def test_demo_site_private_pages_are_only_ever_requested_logged_in(tmp_path: Path) -> None:
    app = DemoApp(slow_delay=0)
    seen: list[tuple[str, str, bool, int]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        cookie = b"; ".join(v for k, v in scope["headers"] if k == b"cookie")

        async def tap(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.append(
                    (scope["method"], scope["path"], b"session=" in cookie, message["status"])
                )
            await send(message)

        await app(scope, receive, tap)

    from spiders.myspider import MySpider

    async with serve_asgi(recording) as base:
        s = Settings(
            options={"site_url": base, "username": "demo", "password": "demo"},
            project_dir=tmp_path,
            download_delay_jitter=0.0,
        )
        crawler, items = await run(MySpider, s)
    favourites = [i for i in items if i["type"] == "favourite"]
    assert len(favourites) == len(FAVOURITE_IDS)
    assert len([i for i in items if i["type"] == "quote"]) == 100
    private = [row for row in seen if row[1] == "/private/"]
    assert private == [("GET", "/private/", True, 200)]
    login_post = next(n for n, row in enumerate(seen) if row[:2] == ("POST", "/login"))
    after = seen[login_post + 1 :]
    assert after and all(has_cookie for _, _, has_cookie, _ in after)
    assert crawler.stats.finish_reason == "finished"


async def test_an_expired_session_is_recovered_by_one_relogin_and_no_page_is_lost() -> None:
    app = Members(items=30, expire_after=10)
    async with serve_asgi(app) as base:
        crawler, items = await run(MemberSpider, settings(base))
    assert app.expired
    assert app.logins == {"alice": 2}
    got = [int(i["item"]) for i in items]
    assert sorted(got) == list(range(30))  # every page once: none lost, none doubled
    assert {i["owner"] for i in items} == {"alice"}
    logged_out = [p for m, p, user in app.log if user is None and p.startswith("/items/")]
    assert logged_out  # the site really did turn requests away ...
    assert "logged_out" not in crawler.stats.dropped  # ... and each was sent again
    assert crawler.stats.finish_reason == "finished"
    assert crawler.sessions["default"].relogins == 0


async def test_restored_cookies_skip_the_first_login_but_not_a_relogin(
    members: tuple[Members, str],
) -> None:
    """What a resumed crawl does: cookies from a checkpoint, marked as logged in."""
    app, base = members
    app.sessions["restored-sid"] = "alice"
    s = settings(base)
    collector = Collector()
    async with Engine(s) as engine:
        crawler = engine.crawler(MemberSpider, s, pipelines=[collector])
        session = crawler.session("default")
        session.cookies.set("sid", "restored-sid", domain="127.0.0.1")
        session.mark_logged_in()
        with trio.fail_after(30):
            await crawler.run()
    assert app.logins == {}
    assert len(collector.items) == 30

    app.sessions.clear()  # now the restored cookie is stale: one login recovers
    collector = Collector()
    async with Engine(s) as engine:
        crawler = engine.crawler(MemberSpider, s, pipelines=[collector])
        session = crawler.session("default")
        session.cookies.set("sid", "restored-sid", domain="127.0.0.1")
        session.mark_logged_in()
        with trio.fail_after(30):
            await crawler.run()
    assert app.logins == {"alice": 1}
    assert len(collector.items) == 30


class _ParallelLogin(MemberSpider):
    """Its login sends from tasks of its own: they must not wait for the login itself."""

    name = "parallel"

    async def login(self, session: Session) -> None:
        pages: list[Response] = []

        async def get(path: str) -> None:
            pages.append(await session.get(self.settings["base"] + path))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, "/login")
            nursery.start_soon(get, "/login")
        fields = {"username": "alice", "password": self.settings["password"]}
        await session.submit_form(pages[-1], "#login", fields, expect=".account-name")


async def test_a_login_may_send_from_tasks_it_starts(members: tuple[Members, str]) -> None:
    app, base = members
    crawler, items = await run(_ParallelLogin, settings(base))
    assert len(items) == 30
    assert crawler.stats.finish_reason == "finished"
    assert app.logins == {"alice": 1}


class _NeverLoggedIn(MemberSpider):
    """Its login 'works', yet the site turns every page away."""

    name = "never"

    async def login(self, session: Session) -> None:
        self.logins = getattr(self, "logins", 0) + 1


async def test_relogins_are_bounded_then_the_crawl_fails_exporting_nothing(
    members: tuple[Members, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = members
    crawler, items = await run(_NeverLoggedIn, settings(base, max_relogins=2))
    assert items == []
    assert crawler.failed
    assert crawler.stats.finish_reason == "login_failed"
    assert crawler.stats.pages == 0
    assert cast(_NeverLoggedIn, crawler.spider).logins == 3  # the first login and 2 re-logins
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error == (
        "spider never: session 'default' is still logged out after 2 re-login(s) "
        f"(max_relogins = 2): HTTP 302 from {base}/items/; stopping the crawl"
    )


# -- several accounts, several spiders --------------------------------------------


class TwoAccounts(Spider):
    name = "two"
    login_sessions: ClassVar[tuple[str, ...]] = ("alice", "bob")

    async def login(self, session: Session) -> None:
        base = self.settings["base"]
        self.login_url = base + "/login"
        page = await session.get(self.login_url)
        password = self.settings[f"{session.name}_password"]
        await session.submit_form(
            page, None, {"username": session.name, "password": password}, expect=".account-name"
        )

    def start_requests(self) -> Iterator[Request]:
        for _ in range(3):
            for who in ("alice", "bob"):
                # The same URL as two accounts (and again): not a duplicate.
                yield Request(self.settings["base"] + "/orders", session=who, dont_filter=True)

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all(css="a.order", callback=self.parse_order)

    def parse_order(self, response: Response) -> dict[str, Any]:
        return {
            "session": response.crawl_request.session,
            "account": response.css_first(".account-name").text(),
            "order": response.css_first(".order").text(),
        }


class LazyTwoAccounts(TwoAccounts):
    """No session logs in up front: each logs in before its first request goes out."""

    login_sessions = ()


@pytest.mark.parametrize("spider", [TwoAccounts, LazyTwoAccounts])
async def test_two_accounts_in_one_spider_each_see_their_own_data(
    members: tuple[Members, str], spider: type[Spider]
) -> None:
    app, base = members
    s = settings(base, options={"alice_password": ALICE_PASSWORD, "bob_password": BOB_PASSWORD})
    crawler, items = await run(spider, s)
    by_session: dict[str, set[tuple[str, str]]] = {"alice": set(), "bob": set()}
    for item in items:
        by_session[item["session"]].add((item["account"], item["order"]))
    assert by_session == {
        "alice": {("alice", "A1"), ("alice", "A2"), ("alice", "A3")},
        "bob": {("bob", "B1"), ("bob", "B2")},
    }
    assert app.logins == {"alice": 1, "bob": 1}
    assert set(crawler.sessions) == {"alice", "bob"}  # no request used "default"
    alice, bob = crawler.sessions["alice"].cookies["sid"], crawler.sessions["bob"].cookies["sid"]
    assert alice != bob
    assert {user for _, path, user in app.log if path == "/orders"} == {"alice", "bob"}


async def test_two_spiders_on_one_shared_connection_never_share_cookies() -> None:
    def responder(seen: Seen) -> Reply:
        who = seen.target.split("/")[1]
        if seen.target.endswith("/login"):
            return Reply(200, [("Set-Cookie", f"sid={who}-cookie; Path=/")], b"in")
        return Reply(200, [("Content-Type", "text/plain")], seen.headers.get("cookie", "").encode())

    def spider_for(who: str) -> type[Spider]:
        class Tagged(Spider):
            name = who

            async def login(self, session: Session) -> None:
                await session.get(f"{self.settings['base']}/{who}/login")

            def start_requests(self) -> Iterator[Request]:
                for n in range(40):
                    yield Request(f"{self.settings['base']}/{who}/{n}")

            def parse(self, response: Response) -> dict[str, str]:
                return {"cookie": response.text}

        return Tagged

    async with serve_h11(responder) as server:
        # One connection for both: every request of both spiders goes over it.
        s = settings(server.url, concurrency=16, max_connections_per_host=1)
        a, b = Collector(), Collector()
        async with Engine(s) as engine:
            crawlers = [
                engine.crawler(spider_for("a"), s, pipelines=[a]),
                engine.crawler(spider_for("b"), s, pipelines=[b]),
            ]
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for crawler in crawlers:
                        nursery.start_soon(crawler.run)
    assert [i["cookie"] for i in a.items] == ["sid=a-cookie"] * 40
    assert [i["cookie"] for i in b.items] == ["sid=b-cookie"] * 40
    for seen in server.requests:
        who = seen.target.split("/")[1]
        assert seen.headers.get("cookie") in (None, f"sid={who}-cookie"), seen
    assert server.connections_total == 1


# -- security -------------------------------------------------------------------------


async def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    async with serve_h11() as other:

        def responder(seen: Seen) -> Reply:
            if seen.target == "/away":
                return Reply(302, [("Location", other.url + "/landed")])
            if seen.target == "/here":
                return Reply(302, [("Location", "/stay")])
            return Reply(200, [("Content-Type", "text/plain")], b"ok")

        async with serve_h11(responder) as home:

            class Redirected(Spider):
                name = "redirected"

                def start_requests(self) -> Iterator[Request]:
                    self.session().auth = ("user", "session-pw")
                    for path in ("/away", "/here"):
                        yield Request(
                            home.url + path,
                            headers={
                                "Authorization": "Bearer tok",
                                "Proxy-Authorization": "Basic cHg=",
                                "Cookie": "given=1",
                            },
                        )

                def parse(self, response: Response) -> None:
                    return None

            await run(Redirected, settings(home.url))
    [landed] = other.requests
    assert landed.target == "/landed"
    assert "authorization" not in landed.headers
    assert "proxy-authorization" not in landed.headers
    assert "cookie" not in landed.headers
    [stay] = [r for r in home.requests if r.target == "/stay"]
    assert stay.headers["authorization"].startswith("Basic ")  # the session's auth wins
    assert stay.headers["cookie"] == "given=1"
    assert stay.headers["proxy-authorization"] == "Basic cHg="


def test_secret_keys_and_urls_are_redacted() -> None:
    for key in (
        "password",
        "db_password",
        "api_key",
        "apiKey",
        "access_token",
        "auth",
        "client_secret",
        "session_cookie",
        "pass",
    ):
        assert is_secret_key(key), key
    for key in ("author", "keepalive_expiry", "site_url", "username", "max_pages", "passage"):
        assert not is_secret_key(key), key
    assert redact_url("https://u:pw@h:8443/login?user=a&password=b#x") == (
        f"https://h:8443/login?{REDACTED}"
    )
    s = Settings(options={"password": "hunter22", "site_url": "http://x"})
    assert "hunter22" not in repr(s) and "http://x" in repr(s)


async def test_secrets_never_reach_logs_stats_or_exports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = Members(items=5, expire_after=3)
    feed = tmp_path / "items.jsonl"
    async with serve_asgi(app) as base:
        crawler, items = await run(MemberSpider, settings(base), feeds=(feed,))
        wrong = settings(base, options={"password": "wrong-" + ALICE_PASSWORD})
        failed, nothing = await run(MemberSpider, wrong)
    assert len(items) == 5 and nothing == []
    assert failed.failed and failed.stats.errors["login_failed"] == 1
    stats_file = tmp_path / "stats.json"
    write_stats_json(stats_file, [crawler.stats, failed.stats])
    sids = [c.value for s in (crawler, failed) for c in s.sessions["default"].cookies.jar]
    secrets_ = [ALICE_PASSWORD, *sids]
    texts = {
        "log": "\n".join(caplog.text.splitlines()),
        "messages": "\n".join(r.getMessage() for r in caplog.records),
        "feed": feed.read_text("utf-8"),
        "stats": stats_file.read_text("utf-8"),
        "reprs": repr(crawler.sessions) + repr(crawler.settings) + repr(failed.settings),
    }
    assert "could not log in" in texts["messages"]
    for where, text in texts.items():
        for secret in secrets_:
            assert secret not in text, (where, secret)
    assert json.loads(stats_file.read_text("utf-8"))["spiders"][1]["finish_reason"] == (
        "login_failed"
    )


# -- the example spider and the command line -----------------------------------------


def test_run_crawl_with_a_wrong_password_exits_non_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from spiders.myspider import MySpider

    password = "not-the-demo-" + secrets.token_hex(4)
    s = Settings(
        serve_demo_site=True,
        options={"site_url": "", "username": "demo", "password": password},
        project_dir=tmp_path,
    )
    feed = tmp_path / "items.jsonl"
    stats = tmp_path / "stats.json"
    status = run_crawl(
        [MySpider], lambda cls: s, feeds=[feed], stats_json=stats, prepare=start_demo_site
    )
    assert status == 1
    assert feed.read_text("utf-8") == ""
    assert json.loads(stats.read_text("utf-8"))["finish_reason"] == "login_failed"
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not log in" in m and "'a[href=\"/logout\"]'" in m for m in messages)
    assert not any(password in m for m in messages)


@pytest.mark.e2e
def test_the_command_line_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    secret = "env-secret-" + secrets.token_hex(6)
    env = {**os.environ, "CRAWL_TEST_PASSWORD": secret}
    out = tmp_path / "items.jsonl"
    stats = tmp_path / "stats.json"

    def crawl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crawler.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    override = 'password="${CRAWL_TEST_PASSWORD}"'
    shown = crawl("settings", "myspider", "-s", override)
    assert shown.returncode == 0, shown.stderr
    assert f"password = {REDACTED}  # -s" in shown.stdout.splitlines()
    result = crawl("myspider", "-s", override, "-o", str(out), "--stats-json", str(stats))
    assert result.returncode == 1
    assert "could not log in" in result.stderr
    assert "crawl: error: the crawl ended with exit status 1" in result.stderr
    for text in (
        shown.stdout,
        shown.stderr,
        result.stdout,
        result.stderr,
        out.read_text("utf-8"),
        stats.read_text("utf-8"),
    ):
        assert secret not in text
