"""``crawl shell`` and ``crawl check`` through the real command, against the demo site.

The shell is driven through a pipe (its scripted use) and through a
pseudo-terminal (its interactive prompt); ``check`` runs the contracts of the
example project, of a spider whose contracts are wrong, and of what ``crawl
new`` and ``crawl startproject`` write.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler.demo import DemoApp
from crawler.demo._content import PAGE_SIZE, QUOTES
from crawler.distributed import RedisClient
from tests.cli.helpers import CRAWL, FAST, TIME_LIMIT, crawl, crawl_with_input, ok
from tests.redis_server import RedisServer, redis_server
from tests.servers import serve_asgi

__all__ = ["redis_server"]

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    ok(result)
    return result.stdout.decode()


# -- crawl shell, scripted ---------------------------------------------------------------


async def test_shell_evaluates_selectors_and_awaits_fetch_read_from_stdin(tmp_path: Path) -> None:
    script = """\
response.css("title::text").get()
page = await fetch("/page/2/")
page.status_code, response is page, request.url == page.url
response.css("div.quote small.author::text").get()
missing = fetch("/nowhere/")
missing.status_code
"""
    async with serve_asgi(DemoApp()) as url:
        lines = out(await crawl_with_input(tmp_path, script, "shell", url + "/")).splitlines()
    second_page_first_author = QUOTES[PAGE_SIZE].author.name
    assert lines == [
        "'Quotes, page 1 - Demo Quotes'",
        "(200, True, True)",
        repr(second_page_first_author),
        # A plain call waits too; an error status is a response to look at, not an error.
        "404",
    ]


async def test_shell_with_a_spider_uses_its_logged_in_session(tmp_path: Path) -> None:
    script = """\
spider.name
response.css('a[href="/logout"]::text').get()
len((await fetch("/private/")).css("div.quote"))
"""
    async with serve_asgi(DemoApp()) as url:
        result = await crawl_with_input(REPO, script, "shell", url + "/", "--spider", "myspider")
    lines = out(result).splitlines()
    assert lines[:2] == ["'myspider'", "'Logout'"]
    assert int(lines[2]) > 0


async def test_shell_on_a_saved_page_and_a_failing_statement_exits_1(tmp_path: Path) -> None:
    page = tmp_path / "saved.html"
    page.write_text(
        '<html><head><title>Saved</title></head><body><a href="next.html">n</a></body></html>',
        encoding="utf-8",
    )
    script = 'response.css("title::text").get()\n1 / 0\nresponse.css("a::attr(href)").getall()\n'
    result = await crawl_with_input(tmp_path, script, "shell", "saved.html")
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        "'Saved'",
        "['next.html']",
    ]
    assert "ZeroDivisionError: division by zero" in result.stderr.decode()


async def test_shell_refuses_a_target_that_is_neither_file_nor_url(tmp_path: Path) -> None:
    result = await crawl_with_input(tmp_path, "", "shell", "no-such-page.html")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "crawl: error: 'no-such-page.html' is neither an existing file nor an http:// or "
        "https:// URL"
    )


async def test_shell_refuses_a_malformed_url_in_one_line(tmp_path: Path) -> None:
    # urlsplit raises on an unclosed IPv6 bracket: a usage error, not a traceback.
    result = await crawl_with_input(tmp_path, "", "shell", "http://[::1")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "crawl: error: URL 'http://[::1' is not an absolute http:// or https:// URL"
    ]


async def test_shell_on_an_unreachable_url_exits_1_naming_it(tmp_path: Path) -> None:
    async with serve_asgi(DemoApp()) as url:
        pass  # closed: its port now refuses connections
    result = await crawl_with_input(tmp_path, "", "shell", url + "/")
    assert result.returncode == 1
    assert f"crawl: error: GET {url}/ failed: " in result.stderr.decode()


# -- crawl shell, at a terminal ------------------------------------------------------------


class Terminal:
    """The parent side of a pseudo-terminal, read with bounded waits."""

    def __init__(self, fd: int) -> None:
        self.stream = trio.lowlevel.FdStream(fd)
        self.seen = b""

    async def expect(self, text: bytes) -> bytes:
        """Read until ``text`` has come; everything read since the last call."""
        start = len(self.seen)
        with trio.fail_after(TIME_LIMIT):
            while text not in self.seen[start:]:
                try:
                    chunk = await self.stream.receive_some(4096)
                except trio.BrokenResourceError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed before {text!r}: {self.seen!r}")
                self.seen += chunk
        return self.seen[start:]

    async def send(self, line: bytes) -> None:
        await self.stream.send_all(line)


async def test_shell_prompt_at_a_terminal_awaits_at_top_level(tmp_path: Path) -> None:
    parent, child = pty.openpty()
    env = {**os.environ, "TERM": "dumb"}
    async with serve_asgi(DemoApp()) as url:
        process = await trio.lowlevel.open_process(
            [*CRAWL, "shell", "--plain", url + "/"],
            cwd=tmp_path,
            stdin=child,
            stdout=child,
            stderr=child,
            env=env,
        )
        os.close(child)
        terminal = Terminal(parent)
        try:
            banner = await terminal.expect(b">>> ")
            assert f"response is <Response [200] {url}/>".encode() in banner
            await terminal.send(b'response.css("title::text").get()\n')
            assert b"'Quotes, page 1 - Demo Quotes'" in await terminal.expect(b">>> ")
            await terminal.send(b'await fetch("/page/3/")\n')
            assert f"<Response [200] {url}/page/3/>".encode() in await terminal.expect(b">>> ")
            # Ctrl-C (SIGINT, as the terminal sends it) stops a statement that awaits.
            await terminal.send(b"import trio, trio.testing; cleaned = []\n")
            await terminal.expect(b">>> ")
            # The text printed is not in the echoed input, so seeing it means the
            # statement is running.
            await terminal.send(b'try:\n    print("wait" + "ing"); await trio.sleep(600)\n')
            await terminal.send(b"finally:\n    cleaned.append(True)\n\n")
            await terminal.expect(b"waiting")
            process.send_signal(signal.SIGINT)
            assert b"KeyboardInterrupt" in await terminal.expect(b">>> ")
            # ...and it is cancelled, not left running: its finally block has run.
            await terminal.send(b"await trio.testing.wait_all_tasks_blocked(); cleaned\n")
            assert b"[True]" in await terminal.expect(b">>> ")
            await terminal.send(b"response.status_code\n")
            assert b"200" in await terminal.expect(b">>> ")
            await terminal.send(b"\x04")  # Ctrl-D leaves
            with trio.fail_after(TIME_LIMIT):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await terminal.stream.aclose()


# -- crawl check -------------------------------------------------------------------------------


async def test_check_passes_on_the_example_spider() -> None:
    text = out(await crawl(REPO, "check", "myspider"))
    assert "  FAIL" not in text
    assert text.splitlines()[-1] == "3 callbacks, 8 contracts: 8 passed, 0 failed"
    listed = out(await crawl(REPO, "check", "--list")).splitlines()
    assert listed == [
        "myspider.parse  /",
        "myspider.parse_favourites  /private/",
        "myspider.parse_author  /author/Adela-Brightwater",
    ]


async def test_check_and_parse_stay_out_of_the_projects_shared_crawl(
    redis_server: RedisServer,
) -> None:
    # A project whose settings share its crawl through Redis: looking at pages must not
    # join that crawl (lease its pages, commit items to its stream) nor count towards
    # its hosts' caps under some other name.
    shared = ("-s", f"frontier_url={redis_server.url}")
    text = out(await crawl(REPO, "check", "myspider", *shared))
    assert text.splitlines()[-1] == "3 callbacks, 8 contracts: 8 passed, 0 failed"
    async with serve_asgi(DemoApp()) as url:
        parsed = out(await crawl(REPO, "parse", url + "/", "--spider", "myspider", *shared))
    assert "/page/2/" in parsed
    with trio.fail_after(30):
        async with RedisClient(redis_server.url) as client:
            assert await client.execute("DBSIZE") == 0


WRONG = '''\
from crawler import Spider


class Wrong(Spider):
    name = "wrong"
    options = {{"site_url": ""}}

    def parse(self, response):
        """@url {url}/
        @returns items 5 5
        @returns requests 1
        @scrapes text price
        """
        for quote in response.css("div.quote"):
            yield {{"text": quote.css("span.text::text").get()}}

    def parse_missing(self, response):
        """@url /missing/
        @returns items 1
        """
        yield {{}}

    def parse_broken(self, response):
        """@url /
        @returns items 1
        """
        raise ValueError("no such element")
'''


def project(root: Path, spider: str) -> Path:
    (root / "spiders").mkdir(parents=True)
    (root / "spiders" / "wrong.py").write_text(spider, encoding="utf-8")
    (root / "settings.toml").write_text(FAST, encoding="utf-8")
    return root


async def test_check_reports_each_broken_contract_and_exits_1(tmp_path: Path) -> None:
    async with serve_asgi(DemoApp()) as url:
        result = await crawl(project(tmp_path, WRONG.format(url=url)), "check")
    assert result.returncode == 1, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines == [
        f"wrong.parse  {url}/",
        "  FAIL  @returns items 5 5: wrong.parse: expected exactly 5 items, got 10",
        "  FAIL  @returns requests 1: wrong.parse: expected at least 1 requests, got 0",
        "  FAIL  @scrapes text price: wrong.parse: expected fields text, price in every "
        "item; item 1 of 10 lacks price (it has: text)",
        f"wrong.parse_missing  {url}/missing/",
        f"  FAIL  @returns items 1: wrong.parse_missing: GET {url}/missing/ answered 404 Not Found",
        f"wrong.parse_broken  {url}/",
        "  FAIL  @returns items 1: wrong.parse_broken: the callback raised an exception on "
        f"{url}/ (traceback above)",
        "3 callbacks, 5 contracts: 0 passed, 5 failed",
    ]
    assert "ValueError: no such element" in result.stderr.decode()


async def test_a_contract_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    spider = WRONG.format(url="http://127.0.0.1:1").replace("@returns items 5 5", "@returns 5")
    result = await crawl(project(tmp_path, spider), "check", "wrong")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "crawl: error: spider wrong, callback parse: '@returns 5' should read "
        "'@returns items|requests MIN [MAX]'"
    )


async def test_check_logs_to_the_projects_log_file_in_its_log_format(tmp_path: Path) -> None:
    log_format = 'log_format = "CHECKLOG %(levelname)s %(name)s: %(message)s"\n'
    async with serve_asgi(DemoApp()) as url:
        root = project(tmp_path, WRONG.format(url=url))
        with (root / "settings.toml").open("a", encoding="utf-8") as settings:
            settings.write(log_format)
        result = await crawl(root, "check", "wrong", "-s", "log_file=check.log")
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout.decode().splitlines()[-1] == "3 callbacks, 5 contracts: 0 passed, 5 failed"
    # The callback's traceback went where the project's crawls log, as they log it.
    log = (root / "check.log").read_text(encoding="utf-8")
    assert "ValueError: no such element" in log
    assert log.startswith("CHECKLOG ")
    assert "no such element" not in result.stderr.decode()


async def test_check_says_a_spider_named_has_no_contracts(tmp_path: Path) -> None:
    plain = "from crawler import Spider\n\n\nclass Plain(Spider):\n    name = 'plain'\n"
    result = await crawl(project(tmp_path, plain), "check", "plain")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "0 callbacks, 0 contracts: 0 passed, 0 failed\n"
    assert result.stderr.decode().splitlines() == [
        "spider plain has no contracts (no callback docstring has @url)"
    ]


class Flaky:
    """An ASGI site whose page answers 503 the first time: a crawl retries it."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.hits += 1
        status = 503 if self.hits == 1 else 200
        body = b"<html><body><p class='tag'>x</p></body></html>"
        headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


ARGUMENTS = '''\
from crawler import Spider


class Wrong(Spider):
    name = "wrong"
    start_urls = ["{url}/"]

    def parse(self, response, tag):
        """@url /flaky
        @meta {{"page": 2}}
        @cb_kwargs {{"tag": "x"}}
        @returns items 1 1
        @scrapes page tag
        """
        yield {{"page": response.meta["page"], "tag": tag}}
'''


async def test_check_fetches_as_a_crawl_does_with_meta_and_cb_kwargs(tmp_path: Path) -> None:
    site = Flaky()
    async with serve_asgi(site) as url:
        text = out(await crawl(project(tmp_path, ARGUMENTS.format(url=url)), "check"))
    # Retried after the 503, as the crawl's fetching does, and @url resolved against
    # start_urls; the callback got @meta and @cb_kwargs.
    assert site.hits == 2
    assert text.splitlines() == [
        f"wrong.parse  {url}/flaky",
        "  ok    @returns items 1 1",
        "  ok    @scrapes page tag",
        "1 callbacks, 2 contracts: 2 passed, 0 failed",
    ]


async def test_new_and_startproject_write_spiders_whose_contracts_pass(tmp_path: Path) -> None:
    async with serve_asgi(DemoApp()) as url:
        site = url.removeprefix("http://")
        root = tmp_path / "site"
        root.mkdir()
        (root / "settings.toml").write_text(FAST, encoding="utf-8")
        ok(await crawl(root, "new", "pages", site))
        ok(await crawl(root, "new", "members", site, "--template", "login"))
        text = out(await crawl(root, "check", "-s", "username=demo", "-s", "password=demo"))
    assert text.splitlines()[-1] == "2 callbacks, 4 contracts: 4 passed, 0 failed"
    ok(await crawl(tmp_path, "startproject", "fresh"))
    text = out(await crawl(tmp_path / "fresh", "check"))
    assert "  FAIL" not in text
    assert text.splitlines()[-1] == "2 callbacks, 5 contracts: 5 passed, 0 failed"
