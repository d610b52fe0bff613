"""The tools of the edit-and-run loop, through the real ``crawl`` command.

Each test runs ``python -m crawler.cli`` as a subprocess against the demo
site served on loopback (by ``crawl demo`` itself, or in the test's nursery),
so what is checked is what a user at a terminal would see.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tomllib
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from crawler import Client
from crawler.demo import DemoApp
from crawler.demo._content import AUTHORS, PAGE_SIZE, QUOTES
from crawler.settings._docs import toml_template
from tests.cli.helpers import type_check
from tests.servers import serve_asgi, serve_h11

# Every test here runs the crawl command as a subprocess.
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRAWL = [sys.executable, "-m", "crawler.cli"]
TIME_LIMIT = 60  # seconds for one command: a safety net, never reached when things work


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def crawl(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIME_LIMIT):
        return await trio.run_process(
            [*CRAWL, *args], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """One line of a child's output; bounded by the bytes a line may hold."""
    data = b""
    while b"\n" not in data and len(data) < 4096:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


# -- crawl demo ---------------------------------------------------------------------


async def test_demo_serves_the_site_until_sigterm_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    [*CRAWL, "demo", "--port", str(port)],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )
            assert process.stdout is not None
            line = await read_line(process.stdout)
            url = f"http://127.0.0.1:{port}/"
            assert url.encode() in line, line
            async with Client() as client:
                page = await client.get(url + "page/2/")
            assert page.status_code == 200
            assert page.text.count('<div class="quote"') == 10
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0


async def test_demo_refuses_a_host_that_is_not_loopback(tmp_path: Path) -> None:
    result = await crawl(tmp_path, "demo", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert b"crawl: error: --host '0.0.0.0' is not a loopback address" in result.stderr


async def test_demo_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await crawl(tmp_path, "demo", "--port", str(port))
    assert result.returncode == 2
    assert f"cannot serve the demo site on 127.0.0.1:{port}".encode() in result.stderr


# -- crawl fetch --------------------------------------------------------------------


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_fetch_prints_the_body_and_with_headers_the_status_and_headers() -> None:
    async with serve_asgi(DemoApp()) as url:
        body = ok(await crawl(REPO, "fetch", f"{url}/page/2/"))
        head = ok(await crawl(REPO, "fetch", "--headers", f"{url}/page/2/"))
    assert body.count('<div class="quote"') == 10
    assert "<title>Quotes, page 2" in body
    lines = head.splitlines()
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "content-type: text/html; charset=utf-8" in [line.lower() for line in lines]
    assert "<div" not in head


async def test_fetch_sends_the_projects_user_agent(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text('user_agent = "probe-agent/1"\n', encoding="utf-8")
    async with serve_h11() as server:
        out = ok(await crawl(tmp_path, "fetch", f"{server.url}/here"))
    assert out == "ok /here"
    assert [seen.headers.get("user-agent") for seen in server.requests] == ["probe-agent/1"]


async def test_fetch_with_a_spider_logs_in_first() -> None:
    async with serve_asgi(DemoApp()) as url:
        anonymous = ok(await crawl(REPO, "fetch", f"{url}/private/"))
        logged_in = ok(await crawl(REPO, "fetch", "--spider", "myspider", f"{url}/private/"))
        wrong = await crawl(
            REPO, "fetch", "--spider", "myspider", "-s", "password=nope", f"{url}/private/"
        )
    assert '<div class="quote"' not in anonymous  # redirected to the login form
    assert "<form" in anonymous
    assert logged_in.count('<div class="quote"') > 0
    assert wrong.returncode == 1
    assert wrong.stdout == b""
    assert b"crawl: error: spider myspider: session 'default' could not log in" in wrong.stderr


async def test_fetch_fails_clearly_on_an_error_status_or_a_network_error() -> None:
    async with serve_asgi(DemoApp()) as url:
        missing = await crawl(REPO, "fetch", f"{url}/missing/")
    refused = await crawl(REPO, "fetch", "http://127.0.0.1:1/")
    assert missing.returncode == 1
    assert missing.stderr.decode().splitlines()[-1] == (
        f"crawl: error: GET {url}/missing/ answered 404 Not Found"
    )
    assert refused.returncode == 1
    assert "crawl: error: GET http://127.0.0.1:1/ failed:" in refused.stderr.decode()
    assert "ECONNREFUSED" in refused.stderr.decode()


async def test_fetch_of_an_unknown_spider_is_a_usage_error() -> None:
    result = await crawl(REPO, "fetch", "--spider", "myspidr", "http://127.0.0.1:1/")
    assert result.returncode == 2
    assert b"Unknown spider 'myspidr' (did you mean 'myspider'?)" in result.stderr


# -- crawl startproject and crawl new ---------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


async def test_startproject_writes_a_project_whose_example_spider_crawls_the_demo_site(
    tmp_path: Path,
) -> None:
    root = tmp_path / "myproject"
    ok(await crawl(tmp_path, "startproject", "myproject"))
    for relative in ("spiders/__init__.py", "pipelines/__init__.py", "pyproject.toml"):
        assert (root / relative).is_file(), relative
    assert (root / "settings.toml").read_text(encoding="utf-8") == toml_template()
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "myproject"
    assert pyproject["project"]["dependencies"] == ["crawler"]
    assert ok(await crawl(root, "list")).split() == ["quotes", "spiders.quotes"]
    ok(await crawl(root, "quotes", "-o", "out.jsonl"))
    items = read_jsonl(root / "out.jsonl")
    quotes = sorted((i["text"], i["author"]) for i in items if i["type"] == "quote")
    authors = sorted(i["name"] for i in items if i["type"] == "author")
    assert quotes == sorted((q.text, q.author.name) for q in QUOTES)
    assert authors == sorted(a.name for a in AUTHORS)
    again = await crawl(tmp_path, "startproject", "myproject")
    assert again.returncode == 2
    assert b"myproject exists and is not an empty directory" in again.stderr


async def test_new_spiders_import_list_type_check_and_crawl_the_demo_site(
    tmp_path: Path,
) -> None:
    ok(await crawl(tmp_path, "startproject", "proj"))
    root = tmp_path / "proj"
    async with serve_asgi(DemoApp()) as url:
        host = urlsplit(url).netloc
        ok(await crawl(root, "new", "pages", host))
        ok(await crawl(root, "new", "members", host, "--template", "login"))
        assert ok(await crawl(root, "list")).split()[::2] == ["members", "pages", "quotes"]
        ok(await crawl(root, "pages", "-o", "pages.jsonl", "-s", "max_pages=15"))
        logged_in = await crawl(
            root,
            "members",
            "-o",
            "members.jsonl",
            "-s",
            "max_pages=15",
            "-s",
            "username=demo",
            "-s",
            "password=demo",
        )
        refused = await crawl(root, "members", "-s", "password=wrong", "-s", "username=demo")
    pages = read_jsonl(root / "pages.jsonl")
    assert len(pages) >= 10
    assert all(urlsplit(item["url"]).netloc == host for item in pages)
    assert {"Quotes, page 1 - Demo Quotes"} <= {item["title"] for item in pages}
    ok(logged_in)
    assert "logging in" in logged_in.stderr.decode()
    assert len(read_jsonl(root / "members.jsonl")) >= 10
    assert refused.returncode == 1  # the login really ran: a wrong password fails it
    await type_check(root, "spiders", tmp_path / "mypy-cache", TIME_LIMIT)


async def test_the_rules_template_crawls_the_demo_site_to_every_book(tmp_path: Path) -> None:
    from crawler.demo._books import BOOKS

    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "__init__.py").write_text("", encoding="utf-8")
    paths: Counter[str] = Counter()
    app = DemoApp(slow_delay=0)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths[scope["path"]] += 1
        await app(scope, receive, send)

    async with serve_asgi(recording) as url:
        ok(await crawl(tmp_path, "new", "shelf", urlsplit(url).netloc, "--template", "rules"))
        ok(await crawl(tmp_path, "shelf", "-o", "shelf.jsonl", "-s", "retry_backoff=0"))
    items = read_jsonl(tmp_path / "shelf.jsonl")
    assert sorted(i["title"] for i in items) == sorted(b.title for b in BOOKS)
    assert sorted(urlsplit(i["url"]).path for i in items) == sorted(
        f"/books/{b.path}" for b in BOOKS
    )
    assert "/books/" in paths and not any(p.endswith(".jpg") for p in paths)
    await type_check(tmp_path, "spiders", tmp_path / "mypy-cache", TIME_LIMIT)


async def test_new_refuses_to_overwrite_or_to_take_a_bad_or_taken_name(tmp_path: Path) -> None:
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "__init__.py").write_text("", encoding="utf-8")
    (spiders / "other.py").write_text(
        "from crawler import Spider\n\n\nclass Other(Spider):\n    name = 'taken'\n",
        encoding="utf-8",
    )
    cases = {
        ("other", "example.com"): "spiders/other.py exists already; not overwriting it",
        ("taken", "example.com"): "A spider named 'taken' exists already (spiders.other.Other)",
        ("my-spider", "example.com"): "Spider name 'my-spider' is not a Python identifier",
        ("class", "example.com"): "Spider name 'class' is not a Python identifier",
        ("list", "example.com"): "Spider name 'list' is a crawl command",
        ("fine", "example.com/some/path"): "DOMAIN 'example.com/some/path' is not a host name",
    }
    for (name, domain), message in cases.items():
        result = await crawl(tmp_path, "new", name, domain)
        assert result.returncode == 2, (name, result.stderr)
        assert f"crawl: error: {message}".encode() in result.stderr, (name, result.stderr)
    assert sorted(p.name for p in spiders.iterdir()) == ["__init__.py", "other.py"]


# -- crawl parse --------------------------------------------------------------------


def parse_output(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    lines = stdout.splitlines()
    items = [json.loads(line) for line in lines if line.startswith("{")]
    requests = [line for line in lines if not line.startswith("{")]
    return items, requests


async def test_parse_prints_the_items_and_requests_of_a_callback() -> None:
    async with serve_asgi(DemoApp()) as url:
        result = await crawl(REPO, "parse", f"{url}/page/2/", "--spider", "myspider")
        author = await crawl(
            REPO,
            "parse",
            f"{url}/author/{AUTHORS[0].slug}",
            "--spider",
            "myspider",
            "--callback",
            "parse_author",
        )
    items, requests = parse_output(ok(result))
    assert [(i["text"], i["author"]) for i in items] == [
        (q.text, q.author.name) for q in QUOTES[PAGE_SIZE : 2 * PAGE_SIZE]
    ]
    authors = {q.author.slug for q in QUOTES[PAGE_SIZE : 2 * PAGE_SIZE]}
    assert sorted(requests) == sorted(
        [f"GET {url}/author/{slug} -> parse_author" for slug in authors]
        + [f"GET {url}/page/3/ -> parse", f"GET {url}/private/ -> parse_favourites"]
    )  # the favourites link shows: myspider logged in first
    [found] = parse_output(ok(author))[0]
    assert (found["type"], found["name"]) == ("author", AUTHORS[0].name)


async def test_parse_follows_requests_to_the_depth_asked_with_their_callbacks() -> None:
    last = f"/page/{len(QUOTES) // PAGE_SIZE}/"
    async with serve_asgi(DemoApp()) as url:
        result = await crawl(REPO, "parse", url + last, "--spider", "myspider", "--depth", "2")
    items, _ = parse_output(ok(result))
    kinds = Counter(item["type"] for item in items)
    page_authors = {q.author.name for q in QUOTES[-PAGE_SIZE:]}
    assert kinds["quote"] == PAGE_SIZE
    assert {i["name"] for i in items if i["type"] == "author"} == page_authors
    assert kinds["favourite"] > 0
    assert f"# depth 2: GET {url}/private/ -> parse_favourites" in result.stderr.decode()


META_SPIDER = """\
from crawler import Spider


class Echo(Spider):
    name = "echo"

    def parse(self, response):
        yield {"meta": response.meta, "url": str(response.url)}

    def broken(self, response):
        raise RuntimeError("broken on purpose")
"""


async def test_parse_passes_meta_and_fails_clearly(tmp_path: Path) -> None:
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "echo.py").write_text(META_SPIDER, encoding="utf-8")
    async with serve_asgi(DemoApp()) as url:
        meta = await crawl(tmp_path, "parse", url + "/", "--spider", "echo", "--meta", '{"k": 1}')
        broken = await crawl(
            tmp_path, "parse", url + "/", "--spider", "echo", "--callback", "broken"
        )
        missing = await crawl(
            tmp_path, "parse", url + "/", "--spider", "echo", "--callback", "nope"
        )
        bad_meta = await crawl(tmp_path, "parse", url + "/", "--spider", "echo", "--meta", "[1]")
        not_found = await crawl(tmp_path, "parse", url + "/missing/", "--spider", "echo")
    [item] = parse_output(ok(meta))[0]
    assert item["meta"]["k"] == 1
    assert broken.returncode == 1
    assert f"crawl: error: callback broken failed on {url}/".encode() in broken.stderr
    assert b"RuntimeError: broken on purpose" in broken.stderr
    assert missing.returncode == 2
    assert b"crawl: error: Spider 'echo' has no callback method 'nope'" in missing.stderr
    assert bad_meta.returncode == 2
    assert b"crawl: error: --meta must be a JSON object, got list" in bad_meta.stderr
    assert not_found.returncode == 1
    assert f"GET {url}/missing/ answered 404 Not Found".encode() in not_found.stderr


KWARGS_SPIDER = """\
from crawler import Spider


class Pages(Spider):
    name = "pages"

    def parse(self, response):
        yield response.follow("/page/2/", self.numbered, cb_kwargs={"number": 2})

    def numbered(self, response, number):
        yield {"number": number, "url": str(response.url)}
"""


async def test_parse_hands_followed_requests_their_cb_kwargs(tmp_path: Path) -> None:
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "pages.py").write_text(KWARGS_SPIDER, encoding="utf-8")
    async with serve_asgi(DemoApp()) as url:
        result = await crawl(tmp_path, "parse", url + "/", "--spider", "pages", "--depth", "2")
    assert parse_output(ok(result))[0] == [{"number": 2, "url": f"{url}/page/2/"}]


# -- a crawl that exports nothing ----------------------------------------------------------

EMPTY_SPIDER = """\
from crawler import Request, Spider


class Empty(Spider):
    name = "empty"
    options = {"start": "", "quote": "div.no-such-class"}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        for quote in response.css(self.settings["quote"]):
            yield {"text": quote.css_first("span.text").text()}
        for author in response.css('a[href*="/author/"]')[:2]:
            yield response.follow(author, callback=self.parse_author)

    def parse_author(self, response):
        for name in response.css("h3.no-such-title"):
            yield {"name": name.text()}
"""


async def test_a_crawl_that_exports_no_item_says_which_callbacks_yielded_none(
    tmp_path: Path,
) -> None:
    spiders = tmp_path / "spiders"
    spiders.mkdir()
    (spiders / "empty.py").write_text(EMPTY_SPIDER, encoding="utf-8")
    async with serve_asgi(DemoApp()) as url:
        start = f"start={url}/"
        empty = await crawl(tmp_path, "empty", "-s", start, "-o", "out.jsonl")
        full = await crawl(tmp_path, "empty", "-s", start, "-s", "quote=div.quote")
    assert empty.returncode == 0
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == ""
    [warning] = [line for line in empty.stderr.decode().splitlines() if "yielded no items" in line]
    assert "WARNING" in warning
    assert (
        "spider empty: 3 pages reached callbacks parse, parse_author, which yielded no items"
        in (warning)
    )
    ok(full)
    assert "yielded no items" not in full.stderr.decode()


async def test_fetch_and_parse_refuse_a_url_that_is_not_http() -> None:
    for args in (
        ("fetch", "notaurl"),
        ("fetch", "ftp://example.com/"),
        ("parse", "http://[bad", "--spider", "myspider"),
    ):
        result = await crawl(REPO, *args)
        assert result.returncode == 2, args
        assert result.stderr.decode().splitlines() == [
            f"crawl: error: URL {args[1]!r} is not an absolute http:// or https:// URL"
        ]
