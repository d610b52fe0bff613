"""A resumable crawl commits its SQLite export in the job's commit thread, not on the loop.

A checkpoint pauses callbacks only while the exporters write; the commit that
waits for the disk runs in the thread that commits the job's store, just
before it. The SQLite connection is then used by two threads, one at a time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from crawler import Request, Response, Settings, Spider
from crawler.engine._engine import Engine
from crawler.pipelines import SqliteExporter
from tests.servers import Reply, Seen, serve_h11

PAGES = 12


def _pages(seen: Seen) -> Reply:
    if seen.target == "/robots.txt":
        return Reply(404, [], b"")
    return Reply(200, [("Content-Type", "text/html")], b"<html><body>page</body></html>")


class _Pages(Spider):
    name = "pages"

    def start_requests(self) -> Iterator[Request]:
        for n in range(PAGES):
            yield Request(f"{self.settings['base']}/{n}", callback=self.parse)

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {"page": response.url.path}


class _TracedExporter(SqliteExporter):
    """Records the thread of every COMMIT; its batches are too big to commit on their
    own, so the checkpoints are what commit it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, batch_size=1_000_000, batch_seconds=3600)
        self.commits: list[tuple[str, int]] = []

    def open(self, spider: Spider) -> None:
        super().open(spider)
        assert self._db is not None
        self._db.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if sql.startswith("COMMIT"):
            self.commits.append((sql, threading.get_ident()))


def _rows(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(json.loads(item)["page"] for (item,) in db.execute("SELECT item FROM items"))
    finally:
        db.close()


async def test_a_job_commits_the_sqlite_export_in_its_commit_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    exporter = _TracedExporter(tmp_path / "items.db")
    async with serve_h11(_pages) as server:
        s = Settings(
            job_dir=str(tmp_path / "job"),
            checkpoint_every_pages=3,
            concurrency=2,
            download_delay_jitter=0.0,
            options={"base": server.url},
        )
        async with Engine(s) as engine:
            crawler = engine.crawler(_Pages, s, pipelines=[exporter])
            with trio.fail_after(30):
                stats = await crawler.run()
    assert stats.pages == PAGES
    assert _rows(tmp_path / "items.db") == sorted(f"/{n}" for n in range(PAGES))
    assert exporter.commits, "the export was never committed"
    on_loop = [sql for sql, thread in exporter.commits if thread == loop_thread]
    assert on_loop == [], "the event loop waited for the export's commit"


async def test_rows_wait_in_memory_while_a_staged_commit_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    spider = _Pages()
    exporter = SqliteExporter(path, batch_size=1)
    exporter.open(spider)
    exporter.process_item({"page": "/0"}, spider)
    exporter.process_item({"page": "/1"}, spider)
    state, commit = exporter.stage_checkpoint()
    assert state["last_id"] == 2
    assert _rows(path) == ["/0", "/1"]  # committed batch by batch before the checkpoint
    exporter.process_item({"page": "/2"}, spider)  # batch full, but the commit is pending
    state, commit = exporter.stage_checkpoint()  # the first commit step never ran
    assert state["last_id"] == 3
    assert _rows(path) == ["/0", "/1"], "staged rows are not committed before the commit step"
    await trio.to_thread.run_sync(commit)
    assert _rows(path) == ["/0", "/1", "/2"]
    exporter.process_item({"page": "/3"}, spider)
    assert _rows(path) == ["/0", "/1", "/2", "/3"], "batches commit again once it has run"
    exporter.process_item({"page": "/4"}, spider)
    _, commit = exporter.stage_checkpoint()
    exporter.close(spider)  # its commit step never ran: closing commits it
    assert _rows(path) == ["/0", "/1", "/2", "/3", "/4"]
    commit()  # a late commit step finds nothing to do
