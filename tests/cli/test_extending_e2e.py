"""The ``crawl`` command with a project's own middlewares, custom stats and log settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import FAST, crawl, ok, read_jsonl
from tests.crawl.helpers import make_project
from tests.servers import serve_asgi

pytestmark = pytest.mark.e2e


async def site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/`` links to /a and /b (the former twice); both are leaves. A page's title is its
    path, and what its request's ``X-Tag`` header said, if anything."""
    path = scope["path"]
    links = ("/a", "/b", "/a") if path == "/" else ()
    tag = dict(scope["headers"]).get(b"x-tag", b"").decode()
    title = f"{path} {tag}" if tag else path
    body = f"<title>{title}</title>" + "".join(f'<a href="{p}">{p}</a>' for p in links)
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(data))],
        }
    )
    await send({"type": "http.response.body", "body": data})


SPIDER = """\
from crawler import Request, Spider


class Counting(Spider):
    name = "counting"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        self.stats.inc("pages_seen")
        self.stats.max("longest_body", len(response.content))
        self.stats.set("last_title", response.css("title::text").get())
        yield {"url": str(response.url)}
        yield from response.follow_all(callback=self.parse)
"""


async def test_custom_stats_reach_stats_json_and_crawl_status(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FAST, counting=SPIDER)
    stats_file = tmp_path / "stats.json"
    async with serve_asgi(site) as base:
        ok(
            await crawl(
                project,
                "counting",
                "-s",
                f"start={base}/",
                "--job",
                str(tmp_path / "job"),
                "-o",
                str(tmp_path / "items.jsonl"),
                "--stats-json",
                str(stats_file),
            )
        )
    custom = json.loads(stats_file.read_text(encoding="utf-8"))["custom"]
    assert custom["pages_seen"] == 3
    assert custom["longest_body"] > 0
    assert custom["last_title"] in {"/", "/a", "/b"}
    result = await crawl(project, "status", str(tmp_path / "job"))
    ok(result)
    shown = result.stdout.decode()
    assert "custom stats:" in shown and "  pages_seen: 3" in shown, shown


async def test_debug_lines_per_response_and_item_go_to_log_file_in_log_format(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "p", FAST, counting=SPIDER)
    async with serve_asgi(site) as base:
        result = await crawl(
            project,
            "counting",
            "-s",
            f"start={base}/",
            "-s",
            "log_level=DEBUG",
            "-s",
            "log_file=logs.txt",
            "-s",
            "log_format=%(levelname)s|%(name)s|%(message)s",
        )
    stderr = ok(result)
    log = (project / "logs.txt").read_text(encoding="utf-8")
    lines = log.splitlines()
    assert f"DEBUG|crawler.engine|Crawled (200) <GET {base}/> (referer: None)" in lines, log
    assert f"DEBUG|crawler.engine|Crawled (200) <GET {base}/a> (referer: {base}/)" in lines
    assert f"DEBUG|crawler.items|Scraped from <200 {base}/b>" in lines
    assert f"{{'url': '{base}/b'}}" in lines
    assert "Crawled (200)" not in stderr and "INFO|" not in stderr


async def test_no_debug_lines_at_info(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FAST, counting=SPIDER)
    async with serve_asgi(site) as base:
        result = await crawl(project, "counting", "-s", f"start={base}/", "-s", "log_file=l.txt")
    ok(result)
    log = (project / "l.txt").read_text(encoding="utf-8")
    assert "Crawled (" not in log and "Scraped from" not in log
    assert "spider counting finished (finished)" in log


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("log_format=%(nope)s", "log_format '%(nope)s' is not a usable logging format"),
        ("log_file=no/such/dir/x.log", "log_file 'no/such/dir/x.log': cannot open"),
    ],
)
async def test_bad_log_settings_are_clear(tmp_path: Path, setting: str, message: str) -> None:
    project = make_project(tmp_path / "p", FAST, counting=SPIDER)
    result = await crawl(project, "counting", "-s", "start=http://127.0.0.1:9/", "-s", setting)
    assert result.returncode == 2
    assert message in result.stderr.decode()


MIDDLEWARES = """\
from crawler import DropRequest


class Tag:
    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings["tag"])

    def __init__(self, tag):
        self.tag = tag

    async def process_request(self, request, spider):
        if request.url.endswith("/b"):
            raise DropRequest("no_b")
        request.headers = {**(request.headers or {}), "X-Tag": self.tag}
"""

TITLES = """\
from crawler import Request, Spider


class Titles(Spider):
    name = "titles"
    options = {"start": "", "tag": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        yield {"title": response.css("title::text").get()}
        yield from response.follow_all(callback=self.parse)
"""


async def test_a_projects_middleware_from_settings_toml(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FAST + 'middlewares = ["mw:Tag"]\n', titles=TITLES)
    (project / "mw.py").write_text(MIDDLEWARES, encoding="utf-8")
    stats_file = tmp_path / "stats.json"
    async with serve_asgi(site) as base:
        ok(
            await crawl(
                project,
                "titles",
                "-s",
                f"start={base}/",
                "-s",
                "tag=blue",
                "-o",
                str(tmp_path / "items.jsonl"),
                "--stats-json",
                str(stats_file),
            )
        )
    items = read_jsonl(tmp_path / "items.jsonl")
    assert sorted(item["title"] for item in items) == ["/ blue", "/a blue"]
    assert json.loads(stats_file.read_text(encoding="utf-8"))["dropped"]["no_b"] == 1


async def test_a_middleware_that_cannot_load_stops_the_command_saying_why(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", FAST + 'middlewares = ["mw:Nope"]\n', titles=TITLES)
    (project / "mw.py").write_text(MIDDLEWARES, encoding="utf-8")
    result = await crawl(project, "titles", "-s", "start=http://127.0.0.1:9/")
    assert result.returncode == 2
    assert (
        "crawl: error: middleware 'mw:Nope': module 'mw' has no attribute 'Nope'"
        in result.stderr.decode()
    )
