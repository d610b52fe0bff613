"""The crawl command: listing, error exits (as a subprocess) and the crawl call (a fake engine)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crawler.engine
from crawler.cli import main
from crawler.pipelines import Feed
from crawler.settings import Settings
from crawler.spider import Spider
from tests.cli.helpers import BOOKS
from tests.cli.helpers import crawl_sync as crawl
from tests.crawl.helpers import make_project

QUOTES = """\
from crawler import Spider


class Quotes(Spider):
    name = "quotes"
    custom_settings = {"concurrency": 3}
"""


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crawl: error: ")
    return lines[0].removeprefix("crawl: error: ")


# -- as a subprocess -------------------------------------------------------------


@pytest.mark.e2e
def test_list(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS, quotes=QUOTES)
    result = crawl(tmp_path, "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["books   spiders.books", "quotes  spiders.quotes"]


@pytest.mark.e2e
def test_list_from_a_subdirectory_finds_the_project(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS)
    sub = tmp_path / "spiders" / "deeper"
    sub.mkdir()
    result = crawl(sub, "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["books", "spiders.books"]


@pytest.mark.e2e
def test_settings_flag_points_at_another_project(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", books=BOOKS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = crawl(elsewhere, "--settings", str(project / "settings.toml"), "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["books", "spiders.books"]


@pytest.mark.e2e
def test_unknown_spider(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS, quotes=QUOTES)
    result = crawl(tmp_path, "boks")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "Unknown spider 'boks' (did you mean 'books'?); known spiders: books, quotes"
    )


@pytest.mark.e2e
def test_unknown_setting_in_file(tmp_path: Path) -> None:
    make_project(tmp_path, "concurency = 3\n", books=BOOKS)
    result = crawl(tmp_path, "list")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "Unknown setting 'concurency' in settings.toml (did you mean 'concurrency'?)"
    )


@pytest.mark.e2e
def test_bad_s_value(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS)
    result = crawl(tmp_path, "books", "-s", "concurrency=abc")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "Setting 'concurrency' from -s must be an integer, got 'abc' (a string)"
    )


@pytest.mark.e2e
def test_option_of_another_spider_is_unknown(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS, quotes=QUOTES)
    result = crawl(tmp_path, "quotes", "-s", "site_url=http://x/")
    assert result.returncode == 2
    # (a near-miss setting name may be suggested after it)
    assert one_error_line(result).startswith("Unknown setting 'site_url' from -s")


@pytest.mark.e2e
def test_bad_log_level(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS)
    result = crawl(tmp_path, "list", "--log-level", "LOUD")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "Setting 'log_level' from --log-level must be one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL, got 'LOUD'"
    )


@pytest.mark.e2e
def test_spider_import_error(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS, broken="import os\nraise RuntimeError('no luck')\n")
    result = crawl(tmp_path, "list")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "Cannot import spider module 'spiders.broken' (spiders/broken.py, line 2): "
        "RuntimeError: no luck"
    )


@pytest.mark.e2e
def test_unknown_export_format(tmp_path: Path) -> None:
    make_project(tmp_path, books=BOOKS)
    result = crawl(tmp_path, "books", "-o", "items.xml")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "cannot export items to 'items.xml': extension '.xml' is not supported; use one of "
        ".csv, .jl, .json, .jsonl, or name the format as in items.xml:jsonl "
        "(formats: jsonl, jl, jsonlines, csv, json)"
    )


@pytest.mark.e2e
def test_no_arguments_is_a_usage_error(tmp_path: Path) -> None:
    result = crawl(tmp_path)
    assert result.returncode == 2
    assert "crawl: error: the following arguments are required: NAME" in result.stderr


@pytest.mark.e2e
def test_settings_command_shows_sources(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        '[spiders.books]\ndownload_delay = 2\n[domains."a.com"]\nmax_connections = 1\n',
        books=BOOKS,
    )
    result = crawl(tmp_path, "settings", "books", "-s", "site_url=http://x/")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "concurrency = 64  # default" in lines
    assert "download_delay = 2.0  # settings.toml [spiders.books]" in lines
    assert 'site_url = "http://x/"  # -s' in lines
    assert 'domains."a.com".max_connections = 1  # settings.toml' in lines


# -- in-process, with a fake engine -----------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project as the current directory; imports, sys.path and logging restored after."""
    make_project(tmp_path, "[spiders.books]\nretry_times = 7\n", books=BOOKS, quotes=QUOTES)
    monkeypatch.chdir(tmp_path)
    saved_path, saved_modules = sys.path[:], set(sys.modules)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield tmp_path
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]


class FakeEngine:
    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def run_crawl(
        self,
        spider_classes: list[type[Spider]],
        settings_for: Callable[[type[Spider]], Settings],
        *,
        feeds: list[Path],
        stats_json: Path | None,
        prepare: Any = None,
    ) -> int:
        self.calls.append(
            {
                "spiders": [cls.name for cls in spider_classes],
                "settings": {cls.name: settings_for(cls) for cls in spider_classes},
                "feeds": feeds,
                "stats_json": stats_json,
                "prepare": prepare,
            }
        )
        return self.status


def use_fake_engine(monkeypatch: pytest.MonkeyPatch, status: int) -> FakeEngine:
    fake = FakeEngine(status)
    monkeypatch.setattr(crawler.engine, "run_crawl", fake.run_crawl)
    return fake


def test_crawl_passes_spiders_settings_and_feeds(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = use_fake_engine(monkeypatch, 0)
    status = main(
        [
            "books",
            "quotes",
            "books",
            "-s",
            "site_url=http://127.0.0.1:1/",
            "-s",
            "max_pages=5",
            "-o",
            "out/{spider}.jsonl",
            "-O",
            "items-{spider}.CSV",
            "--stats-json",
            "stats.json",
            "--log-level",
            "warning",
        ]
    )
    assert status == 0
    (call,) = fake.calls
    assert call["spiders"] == ["books", "quotes"]
    # In command-line order: -o appends, -O replaces.
    assert call["feeds"] == [
        Feed(Path("out/{spider}.jsonl"), append=True),
        Feed(Path("items-{spider}.CSV"), append=False),
    ]
    assert call["stats_json"] == Path("stats.json")
    from crawler.cli._demo import start_demo_site

    assert call["prepare"] is start_demo_site  # the command serves the demo site if asked
    books, quotes = call["settings"]["books"], call["settings"]["quotes"]
    assert (books["site_url"], books.retry_times, books.max_pages) == ("http://127.0.0.1:1/", 7, 5)
    assert (quotes.concurrency, quotes.retry_times, quotes.max_pages) == (3, 2, 5)
    assert "site_url" not in quotes
    assert books.log_level == "WARNING"
    assert logging.getLogger().level == logging.WARNING


def test_failed_crawl_exits_with_its_status(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, 1)
    assert main(["books"]) == 1
    assert capsys.readouterr().err == "crawl: error: the crawl ended with exit status 1\n"


def test_spider_table_typo_stops_the_crawl(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = use_fake_engine(monkeypatch, 0)
    (project / "settings.toml").write_text("[spiders.bokks]\nretry_times = 1\n", encoding="utf-8")
    assert main(["books"]) == 2
    assert fake.calls == []
    assert capsys.readouterr().err == (
        "crawl: error: settings.toml has a [spiders.bokks] table but no spider is named "
        "'bokks' (did you mean 'books'?)\n"
    )


def test_several_spiders_need_spider_in_feed_paths(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = use_fake_engine(monkeypatch, 0)
    assert main(["books", "quotes", "-o", "items.jsonl"]) == 2
    assert fake.calls == []
    assert "put {spider} in the path" in capsys.readouterr().err
    assert main(["books", "quotes", "-o", "items-{spider}.jsonl"]) == 0
    assert fake.calls[0]["feeds"] == [Feed(Path("items-{spider}.jsonl"), append=True)]


def test_pipeline_config_error_from_the_engine_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from crawler.pipelines._runner import PipelineConfigError

    def broken(*args: Any, **kwargs: Any) -> int:
        raise ExceptionGroup("nursery", [PipelineConfigError("unknown pipeline 'jsnl'")])

    monkeypatch.setattr(crawler.engine, "run_crawl", broken)
    assert main(["books"]) == 2
    assert capsys.readouterr().err == "crawl: error: unknown pipeline 'jsnl'\n"


def test_other_engine_errors_propagate(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(crawler.engine, "run_crawl", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["books"])


def test_interrupted_crawl(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, 130)
    assert main(["books"]) == 130
    assert capsys.readouterr().err == "crawl: error: the crawl was stopped by a signal\n"
