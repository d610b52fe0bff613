"""Item pipelines: the runner's chain and counters, name resolution, the exporters' guarantees."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pydantic
import pytest
import trio

from crawler.pipelines import (
    CsvExporter,
    JsonArrayExporter,
    JsonLinesExporter,
    SqliteExporter,
    ValidatePipeline,
)
from crawler.pipelines._encode import ItemEncodeError
from crawler.pipelines._runner import (
    DropItem,
    PipelineConfigError,
    PipelineRunner,
    feed_exporter_for,
    load_pipeline,
    load_pipelines,
)
from crawler.spider import Spider

ROOT = Path(__file__).resolve().parents[2]


class DemoSpider(Spider):
    name = "demo"


@dataclasses.dataclass
class Quote:
    text: str
    author: str
    tags: list[str]


class Product:
    def __init__(self, name: str, price: Decimal) -> None:
        self.name = name
        self.price = price

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "price": self.price}


# -- pipelines used by the runner tests (also loaded by dotted name) -------------------


class Tag:
    """Appends its label to the item's trail; records its lifecycle in a shared log."""

    def __init__(self, label: str = "tag", log: list[str] | None = None) -> None:
        self.label = label
        self.log = log if log is not None else []

    def open(self, spider: Spider) -> None:
        self.log.append(f"open {self.label}")

    def process_item(self, item: Any, spider: Spider) -> Any:
        item["trail"].append(self.label)
        return item

    def close(self, spider: Spider) -> None:
        self.log.append(f"close {self.label}")


class AsyncTag:
    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    async def open(self, spider: Spider) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append(f"open {self.label}")

    async def process_item(self, item: Any, spider: Spider) -> Any:
        await trio.lowlevel.checkpoint()
        item["trail"].append(self.label)
        return item

    async def close(self, spider: Spider) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append(f"close {self.label}")


class Quiet:
    """No lifecycle: open and close do nothing."""

    def open(self, spider: Spider) -> None:
        pass

    def close(self, spider: Spider) -> None:
        pass


class DropOdd(Quiet):
    def process_item(self, item: Any, spider: Spider) -> Any:
        if item["n"] % 2:
            raise DropItem("odd number")
        return item


class FailOn(Quiet):
    def __init__(self, n: int) -> None:
        self.n = n

    def process_item(self, item: Any, spider: Spider) -> Any:
        if item["n"] == self.n:
            raise KeyError("boom")
        return item


class FailingClose(Tag):
    def close(self, spider: Spider) -> None:
        self.log.append(f"close {self.label}")
        raise OSError("disk gone")


class FailingOpen(Tag):
    def open(self, spider: Spider) -> None:
        raise OSError("cannot open")


class Settings:
    def __init__(self, options: dict[str, dict[str, Any]]) -> None:
        self.options = options

    def pipeline_options(self, name: str) -> dict[str, Any]:
        return dict(self.options.get(name, {}))


def item(n: int) -> dict[str, Any]:
    return {"n": n, "trail": []}


# -- the runner ---------------------------------------------------------------------


async def test_runner_runs_sync_and_async_stages_in_order() -> None:
    log: list[str] = []
    spider = DemoSpider()
    runner = PipelineRunner([Tag("a", log), AsyncTag("b", log), Tag("c", log)])
    await runner.open(spider)
    results = [await runner.process(item(n), spider) for n in range(3)]
    await runner.close(spider)
    assert [r["trail"] if r is not None else None for r in results] == [["a", "b", "c"]] * 3
    assert log == ["open a", "open b", "open c", "close c", "close b", "close a"]
    assert runner.items_scraped == 3
    assert runner.items_dropped == {}
    assert runner.errors == 0


async def test_drop_item_is_counted_by_reason_and_stops_the_chain() -> None:
    spider = DemoSpider()
    after = Tag("after")
    runner = PipelineRunner([DropOdd(), after])
    results = [await runner.process(item(n), spider) for n in range(5)]
    assert [r is None for r in results] == [False, True, False, True, False]
    assert runner.items_dropped == {"odd number": 2}
    assert runner.items_scraped == 3
    assert [r["trail"] for r in results if r is not None] == [["after"]] * 3


async def test_a_raising_stage_is_logged_counted_and_the_crawl_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spider = DemoSpider()
    runner = PipelineRunner([FailOn(1), Tag("after")])
    with caplog.at_level(logging.ERROR, logger="crawler.pipeline"):
        results = [await runner.process(item(n), spider) for n in range(3)]
    first, failed, last = results
    assert failed is None
    assert first is not None and last is not None
    assert first["trail"] == last["trail"] == ["after"]
    assert runner.errors == 1
    assert runner.items_scraped == 2
    (record,) = caplog.records
    assert "demo" in record.getMessage() and "FailOn" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError


async def test_a_stage_returning_none_is_an_error() -> None:
    class Forgetful(Quiet):
        def process_item(self, item: Any, spider: Spider) -> Any:
            item["seen"] = True
            return None

    runner = PipelineRunner([Forgetful()])
    assert await runner.process(item(0), DemoSpider()) is None
    assert runner.errors == 1 and runner.items_scraped == 0


async def test_close_closes_every_stage_then_reraises_the_first_failure() -> None:
    log: list[str] = []
    spider = DemoSpider()
    runner = PipelineRunner([Tag("a", log), FailingClose("b", log), Tag("c", log)])
    await runner.open(spider)
    with pytest.raises(OSError, match="disk gone"):
        await runner.close(spider)
    assert log[-3:] == ["close c", "close b", "close a"]


async def test_a_failed_open_closes_the_stages_already_open() -> None:
    log: list[str] = []
    spider = DemoSpider()
    runner = PipelineRunner([Tag("a", log), FailingOpen("b", log), Tag("c", log)])
    with pytest.raises(OSError, match="cannot open"):
        await runner.open(spider)
    assert log == ["open a", "close a"]


async def test_checkpoint_returns_one_state_per_stage(tmp_path: Path) -> None:
    spider = DemoSpider()
    exporter = JsonLinesExporter(tmp_path / "out.jsonl")
    runner = PipelineRunner([Tag("a"), exporter])
    await runner.open(spider)
    await runner.process(item(0), spider)
    states = await runner.checkpoint()
    await runner.close(spider)
    size = (tmp_path / "out.jsonl").stat().st_size
    assert states == [None, {"path": str(tmp_path / "out.jsonl"), "offset": size, "records": 1}]


async def test_staged_checkpoint_writes_now_and_is_durable_after_its_sync(
    tmp_path: Path,
) -> None:
    spider = DemoSpider()
    exporter = JsonLinesExporter(tmp_path / "out.jsonl")
    runner = PipelineRunner([Tag("a"), exporter])
    await runner.open(spider)
    await runner.process(item(0), spider)
    states, syncs = await runner.stage_checkpoint()
    size = (tmp_path / "out.jsonl").stat().st_size
    # Written already (it survives a killed process), not yet fsynced.
    assert size > 0
    assert states == [None, {"path": str(tmp_path / "out.jsonl"), "offset": size, "records": 1}]
    assert exporter.records_committed == 0
    assert len(syncs) == 1
    await runner.process(item(1), spider)  # after the cut: the sync still commits the cut
    syncs[0]()
    assert exporter.records_committed == 1
    await runner.close(spider)


async def test_staged_checkpoint_keeps_a_subclass_own_checkpoint(tmp_path: Path) -> None:
    spider = DemoSpider()
    exporter = JsonArrayExporter(tmp_path / "out.json")
    runner = PipelineRunner([exporter])
    await runner.open(spider)
    await runner.process(item(0), spider)
    states, syncs = await runner.stage_checkpoint()
    await runner.close(spider)
    assert states == [{"path": str(tmp_path / "out.json"), "records": 1, "resumable": False}]
    assert syncs == []


def test_a_pipeline_without_process_item_is_refused() -> None:
    with pytest.raises(TypeError, match="object has no process_item"):
        PipelineRunner([object()])  # type: ignore[list-item]


# -- names and options ----------------------------------------------------------------


def test_load_pipelines_builds_builtins_and_user_classes_with_options(tmp_path: Path) -> None:
    settings = Settings(
        {
            "validate": {"required": ["text"]},
            "jsonl": {"path": str(tmp_path / "q.jsonl"), "batch_size": 10},
            "tests.pipelines.test_pipelines:Tag": {"label": "colon"},
            "tests.pipelines.test_pipelines.Tag": {"label": "dotted"},
        }
    )
    chain = load_pipelines(list(settings.options), settings)
    assert [type(p).__name__ for p in chain] == [
        "ValidatePipeline",
        "JsonLinesExporter",
        "Tag",
        "Tag",
    ]
    validate, jsonl, colon, dotted = chain
    assert isinstance(validate, ValidatePipeline) and validate.required == ("text",)
    assert isinstance(jsonl, JsonLinesExporter) and jsonl.batch_size == 10
    assert isinstance(colon, Tag) and colon.label == "colon"
    assert isinstance(dotted, Tag) and dotted.label == "dotted"


def test_unknown_pipeline_name_lists_the_known_ones() -> None:
    with pytest.raises(PipelineConfigError) as info:
        load_pipelines(["jsonlines"])
    message = str(info.value)
    assert "'jsonlines'" in message
    assert "csv, json, jsonl, sqlite, validate" in message


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("no_such_module:Thing", {}, "cannot import module 'no_such_module'"),
        ("tests.pipelines.test_pipelines:Nope", {}, "has no attribute 'Nope'"),
        (
            "jsonl",
            {"path": "x.jsonl", "colour": "red"},
            r"argument 'colour' \(its options are: path, batch_size",
        ),
        ("jsonl", {}, "missing a required argument: 'path'"),
        ("validate", {"types": {"price": "money"}}, "unknown type 'money'"),
    ],
)
def test_bad_pipeline_configuration_says_what_is_wrong(
    name: str, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(PipelineConfigError, match=expected) as info:
        load_pipeline(name, options)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("items.jsonl", JsonLinesExporter),
        ("items.JL", JsonLinesExporter),
        ("items.csv", CsvExporter),
        ("items.json", JsonArrayExporter),
    ],
)
def test_feed_exporter_is_chosen_by_extension(filename: str, kind: type) -> None:
    exporter = feed_exporter_for(Path("out") / filename)
    assert type(exporter) is kind
    assert exporter.path_template == Path("out") / filename  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("filename", "shown"), [("items.xml", "extension '.xml'"), ("items", "no extension")]
)
def test_feed_exporter_refuses_unknown_extensions(filename: str, shown: str) -> None:
    with pytest.raises(PipelineConfigError) as info:
        feed_exporter_for(filename)
    message = str(info.value)
    assert filename in message and shown in message
    assert ".csv, .jl, .json, .jsonl" in message


# -- validate -------------------------------------------------------------------------


async def test_validate_drops_by_reason() -> None:
    spider = DemoSpider()
    runner = PipelineRunner(
        [ValidatePipeline(required=["text", "author"], types={"price": "float"})]
    )
    items: list[Any] = [
        {"text": "t", "author": "a", "price": 3},
        {"text": "t", "author": "", "price": 1.5},
        {"text": "t"},
        {"text": "t", "author": "a", "price": "3.50"},
        {"text": "t", "author": "a", "price": True},
        Quote("t", "a", []),
        Quote("", "a", []),
    ]
    kept = [await runner.process(i, spider) for i in items]
    assert [k is not None for k in kept] == [True, False, False, False, False, True, False]
    assert runner.items_dropped == {
        "missing field 'author'": 2,
        "field 'price' is str, not float": 1,
        "field 'price' is bool, not float": 1,
        "missing field 'text'": 1,
    }


# -- JSON Lines -------------------------------------------------------------------------


async def export(exporter: Any, items: list[Any]) -> None:
    spider = DemoSpider()
    runner = PipelineRunner([exporter])
    await runner.open(spider)
    for i in items:
        assert await runner.process(i, spider) is not None
    await runner.close(spider)
    assert runner.errors == 0, "an exporter refused an item"


MIXED = [
    {"text": "“Unicode” — ok ✓", "n": 1, "nested": {"a": [1, 2]}},
    Quote("to be", "Shakespeare", ["life", "thé"]),
    Product("lamp", Decimal("19.99")),
    {"when": datetime.date(2024, 5, 1), "tags": {"only"}},
]
MIXED_AS_JSON = [
    {"text": "“Unicode” — ok ✓", "n": 1, "nested": {"a": [1, 2]}},
    {"text": "to be", "author": "Shakespeare", "tags": ["life", "thé"]},
    {"name": "lamp", "price": "19.99"},
    {"when": "2024-05-01", "tags": ["only"]},
]


async def test_jsonl_round_trips_dicts_dataclasses_and_objects(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "{spider}.jsonl"
    await export(JsonLinesExporter(path), MIXED)
    raw = (tmp_path / "deep" / "demo.jsonl").read_bytes()
    assert "✓".encode() in raw, "non-ASCII is written as UTF-8, not escaped"
    assert [json.loads(line) for line in raw.splitlines()] == MIXED_AS_JSON


async def test_jsonl_appends_by_default_and_overwrites_on_request(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await export(JsonLinesExporter(path), [{"n": 1}])
    await export(JsonLinesExporter(path), [{"n": 2}])
    assert path.read_text() == '{"n":1}\n{"n":2}\n'
    await export(JsonLinesExporter(path, overwrite=True), [{"n": 3}])
    assert path.read_text() == '{"n":3}\n'


async def test_jsonl_writes_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    exporter = JsonLinesExporter(path, batch_size=3, batch_seconds=3600)
    spider = DemoSpider()
    exporter.open(spider)
    for n in range(5):
        exporter.process_item({"n": n}, spider)
    assert path.read_text().count("\n") == 3, "one full batch written, two records pending"
    exporter.flush()
    assert path.read_text().count("\n") == 5
    await exporter.close(spider)


async def test_jsonl_escapes_lone_surrogates_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await export(JsonLinesExporter(path), [{"text": "bad \udc80 byte", "ok": "é"}])
    assert json.loads(path.read_bytes()) == {"text": "bad \udc80 byte", "ok": "é"}


async def test_unserialisable_value_error_names_item_type_and_field(tmp_path: Path) -> None:
    exporter = JsonLinesExporter(tmp_path / "out.jsonl")
    spider = DemoSpider()
    exporter.open(spider)
    with pytest.raises(ItemEncodeError, match=r"field 'handle' of a dict item: .*type object"):
        exporter.process_item({"ok": 1, "handle": object()}, spider)
    await exporter.close(spider)
    assert (tmp_path / "out.jsonl").read_bytes() == b""


async def test_jsonl_open_cuts_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3,"te')
    await export(JsonLinesExporter(path), [{"n": 4}])
    assert path.read_text() == '{"n":1}\n{"n":2}\n{"n":4}\n'


async def test_jsonl_open_cuts_a_file_without_any_newline(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n":1, "long": "' + b"x" * 200_000)
    await export(JsonLinesExporter(path), [{"n": 2}])
    assert path.read_text() == '{"n":2}\n'


async def test_jsonl_resume_cuts_back_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    spider = DemoSpider()
    exporter = JsonLinesExporter(path)
    exporter.open(spider)
    exporter.process_item({"n": 1}, spider)
    state = await exporter.checkpoint()
    exporter.process_item({"n": 2}, spider)  # after the checkpoint: must not survive a resume
    await exporter.close(spider)
    assert state == {"path": str(path), "offset": 8, "records": 1}
    await export(JsonLinesExporter(path, resume_offset=state["offset"]), [{"n": 3}])
    assert path.read_text() == '{"n":1}\n{"n":3}\n'
    with pytest.raises(ValueError, match="fewer than the 999 recorded"):
        JsonLinesExporter(path, resume_offset=999).open(spider)


WRITER = """
import sys
from crawler.spider import Spider
from crawler.pipelines._jsonl import JsonLinesExporter

class S(Spider):
    name = "killed"

spider = S()
exporter = JsonLinesExporter(sys.argv[1], batch_size=200, batch_seconds=3600)
exporter.open(spider)
for n in range(400_000):
    exporter.process_item({"n": n, "text": "lorem ipsum é " * 20}, spider)
exporter.flush()
sys.stdin.read()  # wait to be killed; never reached in a passing test
"""


async def test_jsonl_killed_mid_stream_leaves_only_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdin=subprocess.PIPE
    )
    try:
        for _ in range(1000):  # bounded: at most ~10 s of polling
            if path.exists() and path.stat().st_size > 1_000_000:
                break
            assert process.poll() is None, "the writer exited early"
            await trio.sleep(0.01)
        else:
            pytest.fail("the writer never wrote 1 MB")
        os.kill(process.pid, signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        assert process.stdin is not None
        await process.stdin.aclose()
    raw = path.read_bytes()
    *whole, tail = raw.split(b"\n")
    # A write cut short by the kill may leave a partial record after the last newline;
    # every record before it is whole. Reopening cuts the tail off.
    numbers = [json.loads(line)["n"] for line in whole]
    assert numbers == list(range(len(numbers)))
    assert len(numbers) < 400_000, "the writer finished before it was killed"
    await export(JsonLinesExporter(path), [{"n": "after"}])
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [*numbers, "after"]
    assert len(path.read_bytes()) == len(raw) - len(tail) + len(b'{"n":"after"}\n')


# -- CSV ----------------------------------------------------------------------------


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


async def test_csv_header_from_first_item_and_values_encoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.csv"
    items: list[Any] = [
        {"text": "line one\nline “two”, with comma", "n": 1, "tags": ["a", "é"]},
        Quote("q", "Ann", ["x"]),
        {"text": "t", "n": None, "extra": 1},
        {"text": "t", "extra": 2, "more": 3},
    ]
    with caplog.at_level(logging.WARNING, logger="crawler.pipeline"):
        await export(CsvExporter(path), items)
    assert read_csv(path) == [
        ["text", "n", "tags"],
        ["line one\nline “two”, with comma", "1", '["a","é"]'],
        ["q", "", '["x"]'],
        ["t", "", ""],
        ["t", "", ""],
    ]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings  # author, then extra, then more: each key once
    assert "'author'" in warnings[0] and "'extra'" in warnings[1] and "'more'" in warnings[2]


async def test_csv_fields_option_and_appending_under_the_existing_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await export(CsvExporter(path, fields=["b", "a"]), [{"a": 1, "b": 2}])
    await export(CsvExporter(path), [{"a": 3, "b": 4, "c": 5}])
    assert read_csv(path) == [["b", "a"], ["2", "1"], ["4", "3"]]
    with pytest.raises(ValueError, match=r"has the columns \['b', 'a'\] but the fields option"):
        CsvExporter(path, fields=["a"]).open(DemoSpider())


async def test_csv_with_fields_and_no_items_still_has_its_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await export(CsvExporter(path, fields=["a", "b"]), [])
    assert read_csv(path) == [["a", "b"]]


async def test_csv_open_cuts_a_partial_record_even_inside_quotes(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b'text,n\r\n"ok\nstill ok",1\r\n"cut\nhere')
    await export(CsvExporter(path), [{"text": "new", "n": 2}])
    assert read_csv(path) == [["text", "n"], ["ok\nstill ok", "1"], ["new", "2"]]


# -- JSON array ------------------------------------------------------------------------


async def test_json_array_round_trips_and_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text('["previous"]')
    spider = DemoSpider()
    exporter = JsonArrayExporter(path, batch_size=1)
    exporter.open(spider)
    for i in MIXED:
        exporter.process_item(i, spider)
    assert json.loads(path.read_text()) == ["previous"], "the target is untouched until close"
    await exporter.close(spider)
    assert json.loads(path.read_text(encoding="utf-8")) == MIXED_AS_JSON
    assert os.listdir(tmp_path) == ["out.json"], "no partial file is left"


async def test_json_array_without_items_is_an_empty_array(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    await export(JsonArrayExporter(path), [])
    assert json.loads(path.read_text()) == []


# -- SQLite ------------------------------------------------------------------------------


async def test_sqlite_stores_items_as_json_with_declared_columns(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    exporter = SqliteExporter(path, table="quotes", columns={"author": "TEXT", "tags": ""})
    await export(exporter, [Quote("a", "Ann", ["x"]), {"text": "é", "author": None, "n": 2}])
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, item, author, tags FROM quotes ORDER BY id").fetchall()
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    db.close()
    assert mode == "wal"
    assert [(r[0], json.loads(r[1]), r[2], r[3]) for r in rows] == [
        (1, {"text": "a", "author": "Ann", "tags": ["x"]}, "Ann", '["x"]'),
        (2, {"text": "é", "author": None, "n": 2}, None, None),
    ]


async def test_sqlite_commits_per_batch_and_resumes_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    spider = DemoSpider()
    exporter = SqliteExporter(path, batch_size=2, batch_seconds=3600)
    exporter.open(spider)
    for n in range(3):
        exporter.process_item({"n": n}, spider)
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM items").fetchone() == (2,)
    reader.close()
    state = await exporter.checkpoint()
    exporter.process_item({"n": 3}, spider)
    exporter.close(spider)
    assert state == {"path": str(path), "table": "items", "last_id": 3}
    await export(SqliteExporter(path, resume_last_id=state["last_id"]), [{"n": "new"}])
    with sqlite3.connect(path) as db:
        items = [json.loads(r[0])["n"] for r in db.execute("SELECT item FROM items ORDER BY id")]
    db.close()
    assert items == [0, 1, 2, "new"]


def test_sqlite_refuses_unsafe_names() -> None:
    with pytest.raises(ValueError, match="table name 'x; DROP'"):
        SqliteExporter("x.db", table="x; DROP")
    with pytest.raises(ValueError, match="column 'price': unknown type 'money'"):
        SqliteExporter("x.db", columns={"price": "money"})


PROJECT_PIPELINE = """
class Mine:
    def process_item(self, item, spider):
        return item
"""


def test_builtins_load_even_when_the_project_has_its_own_pipelines_package(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pipelines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(PROJECT_PIPELINE)
    code = (
        "from crawler.pipelines import load_pipeline\n"
        "for name, options in [('jsonl', {'path': 'x.jsonl'}), ('pipelines.mine:Mine', {})]:\n"
        "    p = load_pipeline(name, options)\n"
        "    print(type(p).__module__, type(p).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "crawler.pipelines._jsonl JsonLinesExporter",
        "pipelines.mine Mine",
    ]


@attrs.define
class AttrsBook:
    title: str
    price: float
    released: datetime.date


class PydanticBook(pydantic.BaseModel):
    title: str
    price: float
    released: datetime.date


BOOKS: list[Any] = [
    AttrsBook("attrs", 1.5, datetime.date(2020, 1, 2)),
    PydanticBook(title="pydantic", price=2.5, released=datetime.date(2021, 3, 4)),
]


async def test_csv_sqlite_and_validate_read_attrs_and_pydantic_fields(tmp_path: Path) -> None:
    validate = ValidatePipeline(required=["title"], types={"price": "float"})
    csv_path, db_path = tmp_path / "books.csv", tmp_path / "books.sqlite"
    await export(CsvExporter(csv_path), BOOKS)
    await export(SqliteExporter(db_path, columns=["title", "released"]), BOOKS)
    spider = DemoSpider()
    assert [validate.process_item(book, spider) for book in BOOKS] == BOOKS
    assert read_csv(csv_path) == [
        ["title", "price", "released"],
        ["attrs", "1.5", "2020-01-02"],
        ["pydantic", "2.5", "2021-03-04"],
    ]
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT title, released, item FROM items ORDER BY id").fetchall()
    assert [(t, r, json.loads(i)["price"]) for t, r, i in rows] == [
        ("attrs", "2020-01-02", 1.5),
        ("pydantic", "2021-03-04", 2.5),
    ]


async def test_an_object_without_fields_is_refused_naming_the_kinds_of_item(
    tmp_path: Path,
) -> None:
    exporter = CsvExporter(tmp_path / "out.csv")
    exporter.open(DemoSpider())
    with pytest.raises(ItemEncodeError, match=r"a Seen item has no named fields: .*attrs"):
        exporter.process_item(Seen(), DemoSpider())
    await exporter.close(DemoSpider())


class Seen:
    """No fields of any kind the exporters know."""
