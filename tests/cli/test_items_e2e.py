"""Items of every kind, and items lost to errors, through the real ``crawl`` command.

A spider yields dicts, a Mapping of its own, dataclasses, attrs classes and
pydantic models (and returns one model from a plain callback); the export
file, written by the real exporters in the subprocess, is the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import FAST, crawl, ok, read_jsonl
from tests.crawl import helpers
from tests.servers import Reply, Seen, serve_h11

pytestmark = pytest.mark.e2e

KINDS_SPIDER = """\
import dataclasses
from collections import UserDict

import attrs
import pydantic

from crawler import Request, Spider


@dataclasses.dataclass
class Tag:
    name: str


@attrs.define
class AttrsQuote:
    text: str
    tag: Tag


class Author(pydantic.BaseModel):
    name: str
    born: int


class Kinds(Spider):
    name = "kinds"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)
        yield Request(self.settings["start"] + "?one", callback=self.parse_one)

    def parse(self, response):
        yield {"kind": "dict", "url": str(response.url)}
        yield UserDict({"kind": "mapping"})
        yield AttrsQuote("attrs", Tag("nested dataclass"))
        yield Author(name="pydantic", born=1879)

    def parse_one(self, response):
        return Author(name="returned", born=1)
"""

BROKEN_SPIDER = """\
import attrs

from crawler import Request, Spider


@attrs.define
class Item:
    n: int
    handle: object


class Broken(Spider):
    name = "broken"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        yield Item(1, None)
        yield Item(2, object())
"""


def respond(seen: Seen) -> Reply:
    if seen.target == "/robots.txt":
        return Reply(404, [], b"")
    return Reply(200, [("Content-Type", "text/html")], b"<html><body>ok</body></html>")


async def test_every_kind_of_item_is_exported_by_its_fields(tmp_path: Path) -> None:
    helpers.make_project(tmp_path, FAST, kinds=KINDS_SPIDER)
    out = tmp_path / "items.jsonl"
    async with serve_h11(respond) as server:
        start = "start=" + json.dumps(server.url + "/")
        ok(await crawl(tmp_path, "kinds", "-s", start, "-O", str(out)))
    items = sorted(read_jsonl(out), key=json.dumps)
    assert items == sorted(
        [
            {"kind": "dict", "url": server.url + "/"},
            {"kind": "mapping"},
            {"text": "attrs", "tag": {"name": "nested dataclass"}},
            {"name": "pydantic", "born": 1879},
            {"name": "returned", "born": 1},
        ],
        key=json.dumps,
    )


async def test_items_lost_to_errors_name_the_field_and_fail_the_crawl(tmp_path: Path) -> None:
    helpers.make_project(tmp_path, FAST, broken=BROKEN_SPIDER)
    out = tmp_path / "items.jsonl"
    stats = tmp_path / "stats.json"
    async with serve_h11(respond) as server:
        start = "start=" + json.dumps(server.url + "/")
        failed = await crawl(
            tmp_path, "broken", "-s", start, "-O", str(out), "--stats-json", str(stats)
        )
        accepted = await crawl(
            tmp_path, "broken", "-s", start, "-s", "fail_on_item_errors=false", "-O", str(out)
        )
    stderr = failed.stderr.decode()
    assert failed.returncode == 1, stderr
    assert "field 'handle' of a Item item" in stderr and "type object" in stderr
    assert "1 item lost to pipeline errors" in stderr
    assert json.loads(stats.read_text())["errors"]["pipeline"] == 1
    ok(accepted)
    assert read_jsonl(out) == [{"n": 1, "handle": None}]


FEEDS_SPIDER = """\
from crawler import Request, Spider


class Feeds(Spider):
    name = "feeds"
    label = "books"
    options = {"start": ""}

    def start_requests(self):
        yield Request(self.settings["start"], callback=self.parse)

    def parse(self, response):
        yield {"n": 1}
        yield {"n": 2}
"""


async def test_scrapy_feed_options_stdout_formats_and_path_params(tmp_path: Path) -> None:
    helpers.make_project(tmp_path, FAST, feeds=FEEDS_SPIDER)
    async with serve_h11(respond) as server:
        start = "start=" + json.dumps(server.url + "/")
        result = await crawl(
            tmp_path,
            "feeds",
            "-s",
            start,
            "-o",
            "-:jsonl",
            "-O",
            "out/%(name)s-%(time)s.jl",
            "-o",
            "items.data:csv",
            "-O",
            "%(label)s.json",
        )
    ok(result)
    lines = result.stdout.decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 1}, {"n": 2}]
    (timed,) = (tmp_path / "out").iterdir()
    assert timed.name.startswith("feeds-20") and timed.suffix == ".jl"
    assert ":" not in timed.name
    assert read_jsonl(timed) == [{"n": 1}, {"n": 2}]
    assert (tmp_path / "items.data").read_text().splitlines() == ["n", "1", "2"]
    assert json.loads((tmp_path / "books.json").read_text()) == [{"n": 1}, {"n": 2}]


async def test_feed_options_that_cannot_work_are_refused_before_crawling(tmp_path: Path) -> None:
    helpers.make_project(tmp_path, FAST, feeds=FEEDS_SPIDER)
    start = "start=" + json.dumps("http://127.0.0.1:1/")
    no_format = await crawl(tmp_path, "feeds", "-s", start, "-o", "-")
    unknown = await crawl(tmp_path, "feeds", "-s", start, "-o", "items.data")
    bad_param = await crawl(tmp_path, "feeds", "-s", start, "-o", "%(nope)s.jsonl")
    assert no_format.returncode == 2 and b"as in -o -:jsonl" in no_format.stderr
    assert unknown.returncode == 2 and b"items.data:jsonl" in unknown.stderr
    assert bad_param.returncode == 2, bad_param.stderr
    assert b"%(nope)s is not name, time, an attribute of spider feeds" in bad_param.stderr
