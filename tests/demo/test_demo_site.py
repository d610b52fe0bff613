"""The bundled demo site: real pages over real HTTP, and the example spider on them."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import h11
import pytest
import trio
from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler import Request, Settings, Spider
from crawler.demo import DEMO_PASSWORD, DEMO_USERNAME, DemoApp, demo_app, serve_demo_site
from crawler.demo._content import AUTHORS, FAVOURITE_IDS, QUOTES, QUOTES_BY_TAG
from crawler.http import Client
from tests.servers import serve_asgi


@dataclass
class Got:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def html(self) -> LexborHTMLParser:
        return LexborHTMLParser(self.body)

    def session(self) -> str | None:
        """The session cookie's ``name=value`` as set by this response, if any."""
        for cookie in self.cookies:
            pair = cookie.split(";", 1)[0]
            if pair.startswith("session="):
                return pair
        return None


async def fetch(
    base: str,
    path: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> Got:
    """One request on a fresh connection, parsed with h11: no client library needed."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("Host", f"{host}:{port}"), ("Connection", "close"), *headers]
    if body:
        all_headers.append(("Content-Length", str(len(body))))
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            data = conn.send(h11.Request(method=method, target=path, headers=all_headers))
            data += conn.send(h11.Data(data=body)) if body else b""
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            response: h11.Response | None = None
            content = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
    assert response is not None
    pairs = [(k.decode(), v.decode("latin-1")) for k, v in response.headers]
    return Got(
        response.status_code,
        {k: v for k, v in pairs if k != "set-cookie"},
        content,
        [v for k, v in pairs if k == "set-cookie"],
    )


def first(tree: LexborHTMLParser | LexborNode, selector: str) -> LexborNode:
    node = tree.css_first(selector)
    assert node is not None, f"nothing matches {selector!r}"
    return node


def attr(node: LexborNode, name: str) -> str:
    value = node.attributes.get(name)
    assert value is not None, f"no {name} on {node.html}"
    return str(value)


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with serve_asgi(demo_app) as url:
        yield url


# -- content ---------------------------------------------------------------------


def test_content_is_the_advertised_size() -> None:
    assert len(QUOTES) == 100
    assert len(AUTHORS) == 20
    assert len({q.text for q in QUOTES}) == 100
    assert len({a.slug for a in AUTHORS}) == 20
    assert [q.id for q in QUOTES] == list(range(100))


# -- quote pages -----------------------------------------------------------------


async def test_first_page_has_ten_quotes_and_a_next_link(site: str) -> None:
    got = await fetch(site, "/")
    assert got.status == 200
    assert got.headers["content-type"] == "text/html; charset=utf-8"
    assert int(got.headers["content-length"]) == len(got.body)
    tree = got.html
    quotes = tree.css("div.quote")
    assert len(quotes) == 10
    for quote in quotes:
        assert first(quote, "span.text").text().startswith("\u201c")
        assert first(quote, "small.author").text()
        about = attr(first(quote, "a"), "href")
        assert about.startswith("/author/")
        tags = quote.css("div.tags a.tag")
        assert tags
        for tag in tags:
            assert tag.attributes["href"] == f"/tag/{tag.text()}/page/1/"
    assert attr(first(tree, "li.next a"), "href") == "/page/2/"
    assert tree.css_first("li.previous") is None
    assert tree.css_first('a[href="/login"]') is not None


async def test_following_next_reaches_every_quote_and_stops(site: str) -> None:
    path: str | None = "/"
    texts: list[str] = []
    visited: list[str] = []
    while path is not None and len(visited) < 20:
        got = await fetch(site, path)
        assert got.status == 200, path
        visited.append(path)
        tree = got.html
        texts += [node.text() for node in tree.css("div.quote span.text")]
        link = tree.css_first("li.next a")
        path = attr(link, "href") if link is not None else None
    assert visited[-1] == "/page/10/"
    assert len(visited) == 10
    assert len(texts) == len(set(texts)) == 100
    last = (await fetch(site, "/page/10/")).html
    assert attr(first(last, "li.previous a"), "href") == "/page/9/"
    assert (await fetch(site, "/page/11/")).status == 404
    assert (await fetch(site, "/page/0/")).status == 404


async def test_special_characters_are_escaped_and_utf8(site: str) -> None:
    [kettle] = [q for q in QUOTES if "&" in q.text]
    page = f"/page/{kettle.id // 10 + 1}/"
    got = await fetch(site, page)
    assert b"windowsill &amp; a kettle" in got.body
    assert kettle.text in [n.text() for n in got.html.css("span.text")]
    authors = [n.text() for n in (await fetch(site, "/")).html.css("small.author")]
    assert "Zoë Haldane" in authors


# -- authors and tags -------------------------------------------------------------


async def test_author_pages_have_all_fields(site: str) -> None:
    slugs: set[str] = set()
    for path in ("/", "/page/2/"):
        for link in (await fetch(site, path)).html.css("div.quote a[href^='/author/']"):
            slugs.add(attr(link, "href"))
    assert len(slugs) == 20
    for slug in sorted(slugs):
        got = await fetch(site, slug)
        assert got.status == 200, slug
        tree = got.html
        for selector in (
            "h3.author-title",
            "span.author-born-date",
            "span.author-born-location",
            "div.author-description",
        ):
            node = tree.css_first(selector)
            assert node is not None and node.text(strip=True), (slug, selector)
    zoe = (await fetch(site, "/author/Zoe-Haldane/")).html
    assert first(zoe, "h3.author-title").text() == "Zoë Haldane"
    assert first(zoe, "span.author-born-date").text() == "February 27, 1938"
    assert first(zoe, "span.author-born-location").text() == "in Dunmore Head, Ireland"
    assert (await fetch(site, "/author/Nobody-At-All/")).status == 404


async def test_tag_pages_paginate(site: str) -> None:
    expected = len(QUOTES_BY_TAG["humor"])
    assert expected > 20
    seen = 0
    for page in (1, 2, 3):
        tree = (await fetch(site, f"/tag/humor/page/{page}/")).html
        quotes = tree.css("div.quote")
        seen += len(quotes)
        for quote in quotes:
            assert "humor" in [a.text() for a in quote.css("a.tag")]
        nxt = tree.css_first("li.next a")
        if page < 3:
            assert nxt is not None and attr(nxt, "href") == f"/tag/humor/page/{page + 1}/"
        else:
            assert nxt is None
    assert seen == expected
    first = await fetch(site, "/tag/humor/")
    assert first.body == (await fetch(site, "/tag/humor/page/1/")).body
    assert (await fetch(site, "/tag/no-such-tag/")).status == 404
    assert (await fetch(site, "/tag/humor/page/4/")).status == 404


# -- robots, errors, HTTP details -----------------------------------------------


async def test_robots_txt_disallows_the_linked_archive(site: str) -> None:
    got = await fetch(site, "/robots.txt")
    assert got.status == 200
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.body == (
        f"User-agent: *\nDisallow: /private-archive/\nSitemap: {site}/sitemap.xml\n".encode()
    )
    home = (await fetch(site, "/")).html
    assert home.css_first('a[href="/private-archive/"]') is not None
    assert (await fetch(site, "/private-archive/")).status == 200


async def test_error_pages_are_linked_from_the_home_page(site: str) -> None:
    home = (await fetch(site, "/")).html
    hrefs = {attr(a, "href") for a in home.css("footer a")}
    assert {"/flaky/", "/slow/", "/missing/"} <= hrefs
    missing = await fetch(site, "/missing/")
    assert missing.status == 404
    assert missing.headers["content-type"] == "text/html; charset=utf-8"
    assert (await fetch(site, "/slow/")).status == 200


async def test_flaky_fails_once_per_app_then_recovers() -> None:
    async with serve_asgi(DemoApp()) as url:
        assert (await fetch(url, "/flaky/")).status == 500
        assert (await fetch(url, "/flaky/")).status == 200
        assert (await fetch(url, "/flaky/")).status == 200


async def test_gzip_only_when_asked(site: str) -> None:
    plain = await fetch(site, "/")
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    packed = await fetch(site, "/", headers=[("Accept-Encoding", "br, gzip;q=0.8")])
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(packed.body) < len(plain.body)
    assert gzip.decompress(packed.body) == plain.body
    refused = await fetch(site, "/", headers=[("Accept-Encoding", "gzip;q=0, identity")])
    assert "content-encoding" not in refused.headers


async def test_head_and_wrong_methods(site: str) -> None:
    head = await fetch(site, "/page/2/", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    full = await fetch(site, "/page/2/")
    assert head.headers["content-length"] == str(len(full.body))
    post = await fetch(site, "/", method="POST", body=b"x=1")
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"


# -- login ------------------------------------------------------------------------


async def _login_form(site: str) -> tuple[str, str]:
    got = await fetch(site, "/login")
    assert got.status == 200
    form = got.html.css_first('form[action="/login"][method="post"]')
    assert form is not None
    assert form.css_first('input[name="username"]') is not None
    assert form.css_first('input[type="password"][name="password"]') is not None
    token = attr(first(form, 'input[type="hidden"][name="csrf_token"]'), "value")
    cookie = got.session()
    assert token and cookie
    return token, cookie


async def _post_login(site: str, cookie: str | None, **fields: str) -> Got:
    headers = [("Content-Type", "application/x-www-form-urlencoded")]
    if cookie:
        headers.append(("Cookie", cookie))
    body = urlencode(fields).encode()
    return await fetch(site, "/login", method="POST", headers=headers, body=body)


async def test_login_with_csrf_then_private_pages(site: str) -> None:
    token, cookie = await _login_form(site)
    got = await _post_login(
        site, cookie, csrf_token=token, username=DEMO_USERNAME, password=DEMO_PASSWORD
    )
    assert got.status == 302
    assert got.headers["location"] == "/"
    session = got.session()
    assert session is not None and session != cookie
    home = (await fetch(site, "/", headers=[("Cookie", session)])).html
    assert first(home, "span.account-name").text() == "demo"
    assert home.css_first('a[href="/logout"]') is not None
    assert home.css_first('a[href="/login"]') is None
    assert home.css_first('a[href="/private/"]') is not None
    private = await fetch(site, "/private/", headers=[("Cookie", session)])
    assert private.status == 200
    assert len(private.html.css("div.quote")) == len(FAVOURITE_IDS)
    logout = await fetch(site, "/logout", headers=[("Cookie", session)])
    assert logout.status == 302
    assert "Max-Age=0" in logout.cookies[0]


async def test_private_page_redirects_when_logged_out(site: str) -> None:
    got = await fetch(site, "/private/")
    assert got.status == 302
    assert got.headers["location"] == "/login"
    home = (await fetch(site, "/")).html
    assert home.css_first("span.account-name") is None
    assert home.css_first("span.favourite") is None


async def test_login_rejects_a_wrong_or_missing_csrf_token(site: str) -> None:
    token, cookie = await _login_form(site)
    creds = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD}
    wrong = await _post_login(site, cookie, csrf_token=token + "x", **creds)
    assert wrong.status == 400
    assert wrong.session() is None
    no_cookie = await _post_login(site, None, csrf_token=token, **creds)
    assert no_cookie.status == 400
    _, other_cookie = await _login_form(site)
    swapped = await _post_login(site, other_cookie, csrf_token=token, **creds)
    assert swapped.status == 400
    forged = await _post_login(site, cookie[:-2] + "xx", csrf_token=token, **creds)
    assert forged.status == 400


async def test_login_with_a_wrong_password_shows_the_error(site: str) -> None:
    token, cookie = await _login_form(site)
    got = await _post_login(site, cookie, csrf_token=token, username="demo", password="nope")
    assert got.status == 200
    tree = got.html
    assert first(tree, "p.error").text() == "Invalid username or password."
    assert attr(first(tree, 'input[name="csrf_token"]'), "value") == token
    assert got.session() is None
    odd = await _post_login(site, cookie, csrf_token=token, username="dém\u00f6", password="x")
    assert odd.status == 200


# -- serving ----------------------------------------------------------------------


async def test_serve_demo_site_reports_a_working_base_url() -> None:
    async with trio.open_nursery() as nursery:
        base = await nursery.start(serve_demo_site)
        assert base.startswith("http://127.0.0.1:")
        assert not base.endswith("/")
        got = await fetch(base, "/robots.txt")
        assert got.status == 200
        nursery.cancel_scope.cancel()


async def test_lifespan_is_answered() -> None:
    to_app, app_inbox = trio.open_memory_channel[MutableMapping[str, Any]](2)
    app_outbox, from_app = trio.open_memory_channel[MutableMapping[str, Any]](2)
    await to_app.send({"type": "lifespan.startup"})
    await to_app.send({"type": "lifespan.shutdown"})
    with trio.fail_after(5):
        await DemoApp()({"type": "lifespan"}, app_inbox.receive, app_outbox.send)
    assert [from_app.receive_nowait()["type"] for _ in range(2)] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# -- the example spider -------------------------------------------------------------


async def _response(base: str, path: str, callback: str) -> Any:
    from crawler.http import Response as HTTPResponse
    from crawler.request import Request
    from crawler.response import Response

    got = await fetch(base, path)
    plain = HTTPResponse(got.status, headers=list(got.headers.items()), content=got.body)
    plain.request = _http_request(base + path)
    return Response.from_http(plain, Request(base + path, callback=callback))


def _http_request(url: str) -> Any:
    from crawler.http import Request as HTTPRequest

    return HTTPRequest("GET", url)


async def test_myspider_scrapes_quotes_authors_and_follows_next(site: str) -> None:
    from crawler.settings import Settings
    from spiders.myspider import MySpider

    spider = MySpider()
    spider.settings = Settings(options={"site_url": site})
    [start] = list(spider.start_requests())
    assert start.url == site + "/"
    assert start.callback == "parse"

    out = [x async for x in spider.parse(await _response(site, "/", "parse"))]
    quotes = [x for x in out if isinstance(x, dict)]
    follows = [x for x in out if not isinstance(x, dict)]
    assert len(quotes) == 10
    first = quotes[0]
    assert first["type"] == "quote"
    assert first["author"] == QUOTES[0].author.name
    assert first["text"] == QUOTES[0].text
    assert first["tags"] == list(QUOTES[0].tags)
    assert first["url"] == site + "/"
    author_urls = [r.url for r in follows if r.callback == "parse_author"]
    assert len(author_urls) == 10
    assert author_urls[0] == f"{site}/author/{QUOTES[0].author.slug}"
    assert [r.url for r in follows if r.callback == "parse"] == [site + "/page/2/"]

    last = [x async for x in spider.parse(await _response(site, "/page/10/", "parse"))]
    assert not [x for x in last if not isinstance(x, dict) and x.callback == "parse"]

    author_response = await _response(site, "/author/Zoe-Haldane", "parse_author")
    [author] = [x async for x in spider.parse_author(author_response)]
    assert author["type"] == "author"
    assert author["name"] == "Zoë Haldane"
    assert author["born_date"] == "February 27, 1938"
    assert author["born_location"] == "in Dunmore Head, Ireland"
    assert author["description"].startswith("A marine biologist")
    assert author["url"] == site + "/author/Zoe-Haldane"


# -- whole crawls through the engine ----------------------------------------------


async def test_crawl_myspider_on_the_demo_site(tmp_path: Path) -> None:
    """What a newcomer's first ``crawl myspider`` does, minus the command line."""
    from crawler import Settings, crawl
    from spiders.myspider import MySpider

    feed = tmp_path / "items.jsonl"
    # As docs/demo-site.md shows: from Python, the caller serves the site.
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_demo_site)
        options = {"site_url": url, "username": DEMO_USERNAME, "password": DEMO_PASSWORD}
        settings = Settings(options=options, project_dir=tmp_path)
        with trio.fail_after(30):
            stats = await crawl(MySpider, settings, feeds=[feed])
        nursery.cancel_scope.cancel()
    items = [json.loads(line) for line in feed.read_text("utf-8").splitlines()]
    quotes = [item for item in items if item["type"] == "quote"]
    authors = [item for item in items if item["type"] == "author"]
    favourites = [item for item in items if item["type"] == "favourite"]
    assert sorted(q["text"] for q in quotes) == sorted(q.text for q in QUOTES)
    assert sorted(a["name"] for a in authors) == sorted(a.name for a in AUTHORS)
    assert all(a["born_date"] and a["born_location"] and a["description"] for a in authors)
    # Logged in, it also scrapes the favourites page.
    assert sorted(f["text"] for f in favourites) == sorted(
        q.text for q in QUOTES if q.id in FAVOURITE_IDS
    )
    assert stats.pages == 31


class _EverythingSpider(Spider):
    """Follows every link: the kind of crawl the site's robots and error pages are for."""

    name = "everything"
    options = {"site_url": ""}

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["site_url"] + "/", callback=self.parse)

    async def parse(self, response: Any) -> AsyncIterator[Any]:
        yield {"url": str(response.url), "status": response.status_code}
        for request in response.follow_all(callback=self.parse):
            yield request


async def test_follow_all_crawl_obeys_robots_and_retries_flaky(tmp_path: Path) -> None:
    from crawler import Settings, crawl

    app = DemoApp(slow_delay=0)
    paths: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await app(scope, receive, send)

    async with serve_asgi(recording) as url:
        settings = Settings(
            options={"site_url": url},
            retry_backoff=0,
            max_pages=500,
            project_dir=tmp_path,
        )
        with trio.fail_after(30):
            stats = await crawl(_EverythingSpider, settings)
    assert "/robots.txt" in paths
    assert "/private-archive/" not in paths
    assert paths.count("/flaky/") == 2
    assert stats.retries == 1
    assert "/missing/" in paths
    assert {"/author/Zoe-Haldane", "/tag/humor/page/3/", "/page/10/"} <= set(paths)


# -- who starts the site -----------------------------------------------------------------


class _Declares(Spider):
    name = "declares"
    options: ClassVar[dict[str, Any]] = {"site_url": ""}


class _Silent(Spider):
    name = "silent"


async def test_the_crawl_command_hands_the_site_url_to_spiders_that_declare_it() -> None:
    from crawler.cli._demo import start_demo_site

    asked = Settings(serve_demo_site=True, options={"site_url": ""})
    elsewhere = Settings(serve_demo_site=True, options={"site_url": "http://other.test"})
    not_asked = Settings(options={"site_url": ""})
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            given = await start_demo_site(
                nursery,
                [
                    (_Declares, asked),
                    (_Declares, elsewhere),
                    (_Declares, not_asked),
                    (_Silent, Settings(serve_demo_site=True)),
                ],
            )
            url = given[0]["site_url"]
            assert url.startswith("http://127.0.0.1:")
            # The site is up at that URL while the nursery runs.
            async with Client() as client:
                home = await client.get(url + "/")
            assert home.status_code == 200 and "quote" in home.text
        nursery.cancel_scope.cancel()
    assert given[1:] == [elsewhere, not_asked, Settings(serve_demo_site=True)]


async def test_nothing_is_started_when_no_spider_asks() -> None:
    from crawler.cli._demo import start_demo_site

    settings = Settings(options={"site_url": ""})
    async with trio.open_nursery() as nursery:
        assert await start_demo_site(nursery, [(_Declares, settings)]) == [settings]
        assert not nursery.child_tasks


async def test_the_engine_itself_never_starts_the_site(tmp_path: Path) -> None:
    """serve_demo_site concerns the crawl command: a crawl from Python gets no site,
    and the spider keeps the site_url it was given (here none: the crawl has nothing)."""
    from crawler import crawl

    class Probe(Spider):
        name = "probe"
        options: ClassVar[dict[str, Any]] = {"site_url": ""}
        seen: ClassVar[list[str]] = []

        def start_requests(self) -> Iterator[Request]:
            Probe.seen.append(self.settings["site_url"])
            return iter(())

    assert not hasattr(Spider, "demo_url")
    with trio.fail_after(10):
        await crawl(Probe, Settings(serve_demo_site=True, options={"site_url": ""}))
    assert Probe.seen == [""]
