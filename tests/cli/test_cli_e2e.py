"""End to end through the real ``crawl`` command, against real loopback servers.

Each test runs ``python -m crawler.cli`` as a subprocess, in a project written
to a temporary directory (its own settings.toml and spiders/) or in the
repository for ``myspider``. The servers run in the test's nursery while the
subprocess runs, so what they observe (connections, request targets) is the
ground truth the assertions rest on, not the crawler's own account.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trustme

from crawler.demo._content import AUTHORS, PAGE_SIZE, QUOTES
from tests.cli.helpers import CRAWL, FAST, TIME_LIMIT, crawl, ok, read_jsonl
from tests.crawl import helpers
from tests.servers import H11Server, Reply, Seen, serve_h11

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

# A spider for the purpose-built sites: starts from the URLs in its ``start``
# option, exports one item per page and follows every link; the page whose
# path is the ``boom`` option makes the callback raise before yielding anything,
# the one whose path is ``stop`` raises CloseSpider after its item.
SITE_SPIDER = """\
from crawler import CloseSpider, Request, Spider


class Site(Spider):
    name = "site"
    options = {"start": [""], "boom": "", "stop": ""}

    def start_requests(self):
        for url in self.settings["start"]:
            yield Request(url, callback=self.parse)

    async def parse(self, response):
        url = str(response.url)
        if self.settings["boom"] and response.url.path == self.settings["boom"]:
            raise RuntimeError(f"boom on purpose at {url}")
        title = response.css_first("h1")
        yield {"url": url, "title": title.text() if title is not None else ""}
        if self.settings["stop"] and response.url.path == self.settings["stop"]:
            raise CloseSpider(f"stopped at {response.url.path}")
        for link in response.links():
            yield response.follow(link, callback=self.parse)
"""


# -- helpers ----------------------------------------------------------------------


def make_project(root: Path, settings: str = "") -> Path:
    """A project whose one spider is ``site``, with FAST settings before ``settings``."""
    return helpers.make_project(root, FAST + textwrap.dedent(settings), site=SITE_SPIDER)


def start_option(*urls: str) -> str:
    return "start=" + json.dumps(list(urls))


def paths_of(items: list[dict[str, Any]]) -> list[str]:
    return [urlsplit(item["url"]).path for item in items]


def html(title: str, *links: str) -> bytes:
    anchors = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
    return f"<html><body><h1>{title}</h1>\n{anchors}</body></html>".encode()


def page(body: bytes, status: int = 200) -> Reply:
    return Reply(status, [("Content-Type", "text/html; charset=utf-8")], body)


def site(pages: Mapping[str, bytes], robots: str | None = None) -> Callable[[Seen], Reply]:
    """A static site: ``pages`` by request target, 404 for anything else."""

    def respond(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            if robots is None:
                return Reply(404, [], b"")
            return Reply(200, [("Content-Type", "text/plain")], robots.encode())
        body = pages.get(seen.target)
        return page(body) if body is not None else Reply(404, [], b"not found")

    return respond


def targets(server: H11Server) -> Counter[str]:
    return Counter(seen.target for seen in server.requests if seen.target != "/robots.txt")


# -- myspider on the demo site -----------------------------------------------------


def _page_path(index: int) -> str:
    number = index // PAGE_SIZE + 1
    return "/" if number == 1 else f"/page/{number}/"


async def test_myspider_exports_every_quote_and_author_once(tmp_path: Path) -> None:
    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
    ok(await crawl(REPO, "myspider", "-o", str(out), "--stats-json", str(stats_file)))
    items = read_jsonl(out)
    for item in items:
        assert urlsplit(item["url"]).hostname == "127.0.0.1"
    quotes = [
        (i["text"], i["author"], tuple(i["tags"]), urlsplit(i["url"]).path)
        for i in items
        if i.get("type") == "quote"
    ]
    authors = [
        (i["name"], i["born_date"], i["born_location"], i["description"], urlsplit(i["url"]).path)
        for i in items
        if i.get("type") == "author"
    ]
    expected_quotes = [(q.text, q.author.name, q.tags, _page_path(n)) for n, q in enumerate(QUOTES)]
    expected_authors = [
        (a.name, a.born_date, a.born_location, a.description, f"/author/{a.slug}") for a in AUTHORS
    ]
    assert sorted(quotes) == sorted(expected_quotes)
    assert sorted(authors) == sorted(expected_authors)
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert (stats["spider"], stats["finish_reason"], stats["failed"]) == (
        "myspider",
        "finished",
        0,
    )
    assert stats["items"] == len(items)


# -- connection caps ----------------------------------------------------------------


class Barrier:
    """Holds requests until ``size`` are held at once, then lets them all go.

    A server behind it can only make progress if the client really keeps
    ``size`` connections busy in parallel, so its peak is exactly the cap.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.waiting = 0
        self.go = trio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        go = self.go
        if self.waiting == self.size:
            self.waiting = 0
            self.go = trio.Event()
            go.set()
        await go.wait()


async def test_connections_per_host_hold_with_a_domain_override(tmp_path: Path) -> None:
    """127.0.0.3 runs at the configured 3 connections while 127.0.0.2, capped at 1 by
    ``-s``, is stuck on a slow first page: the capped host neither exceeds its cap
    nor holds the other back."""
    make_project(tmp_path, "max_connections_per_host = 3\n")
    b_pages, a_pages = 30, 10
    barrier = Barrier(3)
    b_done = trio.Event()
    a_seen_when_b_done: list[int] = []
    servers: dict[str, H11Server] = {}

    def robots_404(seen: Seen) -> Reply | None:
        return Reply(404, [], b"") if seen.target == "/robots.txt" else None

    async def slow_host(seen: Seen) -> Reply:
        reply = robots_404(seen)
        if reply is None:
            await b_done.wait()
            reply = page(html(seen.target))
        return reply

    async def busy_host(seen: Seen) -> Reply:
        reply = robots_404(seen)
        if reply is None:
            await barrier.wait()
            reply = page(html(seen.target))
            if sum(targets(servers["b"]).values()) == b_pages and not b_done.is_set():
                a_seen_when_b_done.append(sum(targets(servers["a"]).values()))
                b_done.set()
        return reply

    async with (
        serve_h11(slow_host, "127.0.0.2") as servers["a"],
        serve_h11(busy_host, "127.0.0.3") as servers["b"],
    ):
        a, b = servers["a"], servers["b"]
        starts = [f"{a.url}/a/{n}" for n in range(a_pages)]
        starts += [f"{b.url}/b/{n}" for n in range(b_pages)]
        out = tmp_path / "out.jsonl"
        result = await crawl(
            tmp_path,
            "site",
            "-s",
            start_option(*starts),
            "-s",
            'domains."127.0.0.2".max_connections=1',
            "-o",
            str(out),
        )
    ok(result)
    assert a_seen_when_b_done == [1]  # all of b was served while a's first page hung
    assert a.peak_open == 1
    assert b.peak_open == 3
    assert sorted(item["url"] for item in read_jsonl(out)) == sorted(starts)


# -- politeness and failures -----------------------------------------------------------


async def test_robots_txt_disallows_are_honoured(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {
        "/": html("home", "/public/1", "/private/secret", "/public/2"),
        "/public/1": html("one", "/private/other", "/"),
        "/public/2": html("two"),
    }
    robots = "User-agent: *\nDisallow: /private/\n"
    stats_file = tmp_path / "stats.json"
    async with serve_h11(site(pages, robots)) as server:
        result = await crawl(
            tmp_path, "site", "-s", start_option(server.url + "/"), "--stats-json", str(stats_file)
        )
    ok(result)
    assert targets(server) == Counter({"/": 1, "/public/1": 1, "/public/2": 1})
    assert [s.target for s in server.requests].count("/robots.txt") == 1
    assert json.loads(stats_file.read_text(encoding="utf-8"))["dropped"]["robots"] == 2


async def test_an_unreachable_robots_txt_fails_loudly_not_silently(tmp_path: Path) -> None:
    make_project(tmp_path)

    def respond(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            return Reply(500, [], b"down")
        return page(html("home"))

    stats_file = tmp_path / "stats.json"
    async with serve_h11(respond) as server:
        result = await crawl(
            tmp_path, "site", "-s", start_option(server.url + "/"), "--stats-json", str(stats_file)
        )
    # Its only start URL could not be crawled: nothing was, and the exit status says so.
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert targets(server) == Counter()  # never crawled while robots.txt is unknown
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert stats["failed"] == 1
    assert stats["errors"] == {"RobotsUnavailable": 1}
    assert "robots" not in stats["dropped"]
    assert f"{server.url}/robots.txt could not be fetched (HTTP 500)" in stderr
    assert f"{server.url}/ (its robots.txt answered HTTP 500)" in stderr


def refused_port() -> socket.socket:
    """A bound socket that never listens: connecting to its port is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line or "crawl: error" in line]


async def test_a_crawl_whose_start_urls_are_all_unreachable_exits_1_naming_them(
    tmp_path: Path,
) -> None:
    make_project(tmp_path)
    with refused_port() as sock:
        port = sock.getsockname()[1]
        first, second = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/other"
        result = await crawl(tmp_path, "site", "-s", start_option(first, second))
    assert result.returncode == 1
    errors = "\n".join(error_lines(result.stderr.decode()))
    assert f"{first} (connection refused to 127.0.0.1:{port} (ECONNREFUSED))" in errors
    assert f"{second} (connection refused to 127.0.0.1:{port} (ECONNREFUSED))" in errors
    assert "crawl: error:" in errors


async def test_start_urls_that_all_fail_after_retries_exit_1_with_the_status(
    tmp_path: Path,
) -> None:
    make_project(tmp_path)

    def respond(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            return Reply(404, [], b"")
        return Reply(503, [], b"busy")

    async with serve_h11(respond) as server:
        result = await crawl(tmp_path, "site", "-s", start_option(server.url + "/"))
    assert result.returncode == 1
    assert targets(server) == Counter({"/": 3})  # the first try and retry_times = 2 retries
    errors = "\n".join(error_lines(result.stderr.decode()))
    assert f"{server.url}/ (HTTP 503 Service Unavailable)" in errors


async def test_a_crawl_where_some_start_urls_worked_exits_0(tmp_path: Path) -> None:
    make_project(tmp_path)
    out = tmp_path / "out.jsonl"
    with refused_port() as sock:
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        async with serve_h11(site({"/": html("home")})) as server:
            result = await crawl(
                tmp_path, "site", "-s", start_option(dead, server.url + "/"), "-o", str(out)
            )
    stderr = ok(result)
    assert paths_of(read_jsonl(out)) == ["/"]
    assert f"giving up on GET {dead}" in stderr
    assert error_lines(stderr) == []


async def test_running_a_crawl_again_with_big_o_replaces_its_export(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {"/": html("home", "/a"), "/a": html("a")}
    out = tmp_path / "items.jsonl"
    async with serve_h11(site(pages)) as server:
        for _ in range(2):
            ok(await crawl(tmp_path, "site", "-s", start_option(server.url + "/"), "-O", str(out)))
    assert sorted(paths_of(read_jsonl(out))) == ["/", "/a"]


async def test_small_o_appends_as_in_scrapy_and_takes_jl_and_csv(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {"/": html("home", "/a"), "/a": html("a")}
    jl, csv_out = tmp_path / "items.jl", tmp_path / "items.csv"
    async with serve_h11(site(pages)) as server:
        start = start_option(server.url + "/")
        for _ in range(2):
            ok(await crawl(tmp_path, "site", "-s", start, "-o", str(jl), "-o", str(csv_out)))
    assert sorted(paths_of(read_jsonl(jl))) == ["/", "/", "/a", "/a"]
    lines = csv_out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "url,title" and len(lines) == 5  # one header, four rows


async def test_small_o_refuses_to_append_to_a_json_array(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {"/": html("home")}
    out = tmp_path / "items.json"
    template = tmp_path / "items-{spider}.json"  # one spider: filled in when it is checked
    async with serve_h11(site(pages)) as server:
        start = start_option(server.url + "/")
        ok(await crawl(tmp_path, "site", "-s", start, "-o", str(out)))  # a new file: fine
        for path, shown in ((out, out), (template, tmp_path / "items-site.json")):
            again = await crawl(tmp_path, "site", "-s", start, "-o", str(path))
            assert again.returncode == 2
            assert again.stderr.decode().splitlines()[-1] == (
                f"crawl: error: cannot append items to {str(shown)!r}: a JSON array cannot "
                f"grow; use -O {shown} to replace it, or export to .jsonl, which appends"
            )
            (tmp_path / "items-site.json").write_text("[]", encoding="utf-8")
        ok(await crawl(tmp_path, "site", "-s", start, "-O", str(out)))
    assert paths_of(json.loads(out.read_text(encoding="utf-8"))) == ["/"]


async def test_tls_ca_file_setting_trusts_a_private_authority(tmp_path: Path) -> None:
    make_project(tmp_path)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    stats_file = tmp_path / "stats.json"
    pages = {"/": html("home", "/a"), "/a": html("a")}
    async with serve_h11(site(pages), ssl_context=context) as server:
        start = start_option(server.url + "/")
        untrusted = await crawl(tmp_path, "site", "-s", start, "--stats-json", str(stats_file))
        assert json.loads(stats_file.read_text(encoding="utf-8"))["pages"] == 0
        assert "certificate" in untrusted.stderr.decode()
        out = tmp_path / "items.jsonl"
        trusted = ["-s", 'tls_ca_file="ca.pem"', "-o", str(out)]
        ok(await crawl(tmp_path, "site", "-s", start, *trusted))
    assert sorted(paths_of(read_jsonl(out))) == ["/", "/a"]


async def test_injected_503s_are_retried_until_they_succeed(tmp_path: Path) -> None:
    """Each host answers its first request for "/" with 503; hosts are throttled
    separately, so the two recover side by side."""
    make_project(tmp_path)
    static = site({"/": html("home", "/next"), "/next": html("next")})

    def flaky_home() -> Callable[[Seen], Reply]:
        failed = False

        def respond(seen: Seen) -> Reply:
            nonlocal failed
            if seen.target == "/" and not failed:
                failed = True
                return Reply(503, [("Retry-After", "0")], b"busy")
            return static(seen)

        return respond

    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
    async with (
        serve_h11(flaky_home(), "127.0.0.2") as a,
        serve_h11(flaky_home(), "127.0.0.3") as b,
    ):
        result = await crawl(
            tmp_path,
            "site",
            "-s",
            start_option(a.url + "/", b.url + "/"),
            "-o",
            str(out),
            "--stats-json",
            str(stats_file),
        )
    ok(result)
    expected = [f"{server.url}{path}" for server in (a, b) for path in ("/", "/next")]
    assert sorted(item["url"] for item in read_jsonl(out)) == expected
    for server in (a, b):
        assert targets(server) == Counter({"/": 2, "/next": 1})
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert stats["status"] == {"200": 4, "503": 2}
    assert (stats["retries"], stats["failed"], stats["pages"]) == (2, 0, 4)


async def test_a_callback_that_raises_is_counted_and_the_crawl_goes_on(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {
        "/": html("home", "/boom", "/ok/1"),
        "/boom": html("boom", "/after-boom"),
        "/ok/1": html("one", "/ok/2"),
        "/ok/2": html("two"),
        "/after-boom": html("never"),
    }
    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
    async with serve_h11(site(pages)) as server:
        result = await crawl(
            tmp_path,
            "site",
            "-s",
            start_option(server.url + "/"),
            "-s",
            "boom=/boom",
            "-o",
            str(out),
            "--stats-json",
            str(stats_file),
        )
    stderr = ok(result)
    assert sorted(paths_of(read_jsonl(out))) == ["/", "/ok/1", "/ok/2"]
    assert "/after-boom" not in targets(server)
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert (stats["callback_errors"], stats["finish_reason"]) == (1, "finished")
    assert f"boom on purpose at {server.url}/boom" in stderr
    assert "Traceback" in stderr
    assert "site" in stderr


async def test_close_spider_ends_the_crawl_with_its_reason_and_exit_0(tmp_path: Path) -> None:
    make_project(tmp_path)
    pages = {
        "/": html("home", "/a"),
        "/a": html("a", "/stop"),
        "/stop": html("stop", "/after"),
        "/after": html("never"),
    }
    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
    async with serve_h11(site(pages)) as server:
        result = await crawl(
            tmp_path,
            "site",
            "-s",
            start_option(server.url + "/"),
            "-s",
            "stop=/stop",
            "-o",
            str(out),
            "--stats-json",
            str(stats_file),
        )
    ok(result)
    # The export was closed whole, with the item the callback yielded before it raised.
    assert paths_of(read_jsonl(out)) == ["/", "/a", "/stop"]
    assert "/after" not in targets(server)
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert (stats["callback_errors"], stats["finish_reason"]) == (0, "stopped at /stop")


# Follows /p/0 ... /p/5 one at a time, handing each callback where it came from in
# cb_kwargs; the first run stops itself after queueing /p/3, and a resumed one goes on.
KWARGS_SPIDER = """\
from pathlib import Path

from crawler import CloseSpider, Request, Spider


class Kwargs(Spider):
    name = "kw"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"] + "/p/0", self.parse, cb_kwargs={"trail": []})

    def parse(self, response, trail):
        n = len(trail)
        yield {"path": response.url.path, "trail": trail}
        if n < 5:
            yield response.follow(f"/p/{n + 1}", self.parse, cb_kwargs={"trail": [*trail, n]})
        if n == 2 and not Path("stopped-once").exists():
            Path("stopped-once").write_text("")
            raise CloseSpider("stop after queueing /p/3")
"""


async def test_cb_kwargs_survive_a_job_stop_and_resume(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "spiders" / "kw.py").write_text(KWARGS_SPIDER, encoding="utf-8")
    hits: Counter[str] = Counter()

    def respond(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/p/4":  # a redirect on the way carries them too
            return Reply(302, [("Location", "/q/4")], b"")
        if seen.target == "/p/5" and hits[seen.target] == 1:  # and a retry
            return Reply(503, [], b"busy")
        return page(html(seen.target))

    out, stats_file = tmp_path / "items.jsonl", tmp_path / "stats.json"
    async with serve_h11(respond) as server:
        args: tuple[str, ...] = ("kw", "-s", f"start={json.dumps(server.url)}")
        args += ("-s", "obey_robots=false", "--job", "job", "-o", str(out))
        args += ("--stats-json", str(stats_file))
        ok(await crawl(tmp_path, *args))
        first = json.loads(stats_file.read_text(encoding="utf-8"))
        assert first["finish_reason"] == "stop after queueing /p/3"
        assert "/p/3" not in hits  # queued in the job's store, with its cb_kwargs
        ok(await crawl(tmp_path, *args))
    assert read_jsonl(out) == [
        {"path": "/p/0", "trail": []},
        {"path": "/p/1", "trail": [0]},
        {"path": "/p/2", "trail": [0, 1]},
        {"path": "/p/3", "trail": [0, 1, 2]},
        {"path": "/q/4", "trail": [0, 1, 2, 3]},
        {"path": "/p/5", "trail": [0, 1, 2, 3, 4]},
    ]
    assert hits["/p/5"] == 2 and hits["/p/3"] == 1


async def test_duplicates_are_fetched_once_and_depth_limit_holds(tmp_path: Path) -> None:
    make_project(tmp_path, "depth_limit = 3\n")
    pages = {
        "/": html("home", "/d/1", "/d/1#top", "/", "/q?b=2&a=1", "/q?a=1&b=2", "/d/1"),
        "/d/1": html("d1", "/d/2", "/", "/d/1"),
        "/d/2": html("d2", "/d/3", "/d/1#again"),
        "/d/3": html("d3", "/d/4"),
        "/d/4": html("d4 is too deep", "/d/5"),
        "/q?b=2&a=1": html("q"),
        "/q?a=1&b=2": html("q"),
    }
    stats_file, out = tmp_path / "stats.json", tmp_path / "out.jsonl"
    async with serve_h11(site(pages)) as server:
        home = server.url + "/"
        result = await crawl(
            tmp_path,
            "site",
            "-s",
            start_option(home, home),
            "-o",
            str(out),
            "--stats-json",
            str(stats_file),
        )
    ok(result)
    seen = targets(server)
    assert set(seen.values()) == {1}
    assert set(seen) - {"/q?b=2&a=1", "/q?a=1&b=2"} == {"/", "/d/1", "/d/2", "/d/3"}
    assert len(seen) == 5  # one spelling of the query, whichever came first
    assert len(read_jsonl(out)) == 5
    dropped = json.loads(stats_file.read_text(encoding="utf-8"))["dropped"]
    assert dropped["depth"] == 1
    assert dropped["duplicate"] >= 6


# -- settings errors ------------------------------------------------------------------

SETTINGS_ERRORS = [
    (
        "max_conections_per_host = 2\n",
        (),
        "Unknown setting 'max_conections_per_host' in settings.toml "
        "(did you mean 'max_connections_per_host'?)",
    ),
    (
        'concurrency = "many"\n',
        (),
        "Setting 'concurrency' in settings.toml must be an integer, got 'many' (a string)",
    ),
    (
        "[spiders.site]\nobey_robots = 1\n",
        (),
        "Setting 'obey_robots' in settings.toml [spiders.site] must be a boolean "
        "(true or false), got 1 (an integer)",
    ),
    (
        '[domains."127.0.0.2"]\nmax_conections = 1\n',
        (),
        "Unknown setting 'domains.\"127.0.0.2\".max_conections' in settings.toml "
        "(did you mean 'domains.\"127.0.0.2\".max_connections'?)",
    ),
    (
        "",
        ("-s", "download_dely=1"),
        "Unknown setting 'download_dely' from -s (did you mean 'download_delay'?)",
    ),
    (
        "",
        ("-s", 'domains."127.0.0.2".max_connections="two"'),
        "Setting 'domains.\"127.0.0.2\".max_connections' from -s must be an integer, "
        "got 'two' (a string)",
    ),
    (
        "DEPTH_LIMIT = 2\n",
        (),
        "Unknown setting 'DEPTH_LIMIT' in settings.toml: DEPTH_LIMIT is Scrapy's name: "
        "use depth_limit",
    ),
    (
        "",
        ("-s", "AUTOTHROTTLE_ENABLED=True"),
        "Unknown setting 'AUTOTHROTTLE_ENABLED' from -s: AUTOTHROTTLE_ENABLED is Scrapy's "
        "name and has no equivalent here: there is no latency-based throttling: a host "
        "answering 429 or 503 is slowed down already (honouring Retry-After); to be gentler "
        "still, set download_delay and max_connections_per_host",
    ),
]


async def test_settings_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """All cases in one test, run side by side: each is a process start-up and no more."""
    results: list[subprocess.CompletedProcess[bytes] | None] = [None] * len(SETTINGS_ERRORS)

    async def run(n: int, settings: str, args: tuple[str, ...]) -> None:
        project = tmp_path / f"p{n}"
        project.mkdir()
        make_project(project, settings)
        results[n] = await crawl(project, "site", *args)

    async with trio.open_nursery() as nursery:
        for n, (settings, args, _) in enumerate(SETTINGS_ERRORS):
            nursery.start_soon(run, n, settings, args)
    for result, (_, _, message) in zip(results, SETTINGS_ERRORS, strict=True):
        assert result is not None
        stderr = result.stderr.decode()
        assert result.returncode == 2, stderr
        assert stderr.splitlines() == [f"crawl: error: {message}"]


# -- SIGINT ---------------------------------------------------------------------------


async def _poll(condition: Callable[[], bool], what: str, tries: int = 500) -> None:
    """Check ``condition()`` every 20 ms, at most ``tries`` times: the other side is a
    process writing files, which no trio event can observe."""
    for _ in range(tries):
        if condition():
            return
        await trio.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_sigint_leaves_a_valid_export(tmp_path: Path) -> None:
    """The server answers the first few pages, then holds every response back. SIGINT
    arrives with requests in flight; once the crawler has said it is stopping, the
    held responses are let go: they finish, nothing new is sent, the export is whole."""
    make_project(
        tmp_path,
        """\
        pipelines = ["jsonl"]
        [pipeline.jsonl]
        path = "progress.jsonl"
        batch_size = 1
        """,
    )
    answered_at_once, total = 5, 40
    release = trio.Event()

    async def respond(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            return Reply(404, [], b"")
        if sum(targets(server).values()) > answered_at_once:
            await release.wait()
        return page(html(seen.target))

    progress, out, log = tmp_path / "progress.jsonl", tmp_path / "out.jsonl", tmp_path / "log"
    async with serve_h11(respond) as server, trio.open_nursery() as nursery:
        starts = [f"{server.url}/p/{n}" for n in range(total)]
        args = [*CRAWL, "site", "-s", start_option(*starts), "-o", str(out)]
        with log.open("wb") as log_file:
            run = partial(trio.run_process, args, cwd=tmp_path, check=False, stderr=log_file)
            process: trio.Process = await nursery.start(run)
            with trio.fail_after(TIME_LIMIT):
                await _poll(lambda: _lines(progress) >= answered_at_once, "first items")
                process.send_signal(signal.SIGINT)
                await _poll(lambda: b"SIGINT received" in log.read_bytes(), "stop message")
                release.set()
                await process.wait()
    stderr = log.read_text(encoding="utf-8")
    assert process.returncode == 130, stderr
    assert "crawl: error: the crawl was stopped by a signal" in stderr
    for path in (out, progress):
        urls = [item["url"] for item in read_jsonl(path)]
        assert len(urls) == len(set(urls)), f"{path} has duplicates"
        assert answered_at_once <= len(urls) < total
        assert set(urls) <= set(starts)
    assert sorted(read_jsonl(out), key=str) == sorted(read_jsonl(progress), key=str)
    # The held requests were the last ones sent: none was started after the signal.
    assert sum(targets(server).values()) == len(read_jsonl(out))


MINE = """\
class Mine:
    def process_item(self, item, spider):
        return {**item, "seen_by": "pipelines.mine"}
"""


async def test_a_project_with_its_own_pipelines_package_uses_it_and_the_shipped_exporters(
    tmp_path: Path,
) -> None:
    """The project's ``pipelines`` package and the shipped exporters live side by side:
    the shipped ones are inside ``crawler``, so no name is shadowed."""
    make_project(tmp_path, 'pipelines = ["pipelines.mine:Mine"]\n')
    package = tmp_path / "pipelines"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "mine.py").write_text(MINE, encoding="utf-8")
    out = tmp_path / "items.jsonl"
    pages = {"/": html("home", "/a"), "/a": html("a")}
    async with serve_h11(site(pages)) as server:
        ok(await crawl(tmp_path, "site", "-s", start_option(server.url + "/"), "-o", str(out)))
    items = read_jsonl(out)
    assert sorted(item["title"] for item in items) == ["a", "home"]
    assert {item["seen_by"] for item in items} == {"pipelines.mine"}
