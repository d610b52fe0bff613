"""Durable crawls (``--job``): kills and resumes, graceful stops, cookies, refusals.

The crawls run as ``crawl`` subprocesses against a loopback site served by
hypercorn in a thread of the test process, so the site counts requests on the
server side whatever happens to the crawler.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from crawler.jobs._status import job_status
from tests.crawl import helpers
from tests.servers import serve_asgi

PAGES = 2000
KILL_PAGES = 1200

# -- the site ------------------------------------------------------------------------


class Site:
    """``/p/N`` for N < pages, each linking to a handful of others (duplicates and
    fragments included); ``/login`` sets a session cookie that ``/s/N`` require."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.hits: Counter[str] = Counter()
        self.logins = 0
        self.lock = threading.Lock()

    def links(self, n: int) -> list[str]:
        size = self.pages
        out = [f"/p/{(n * 7 + 1) % size}", f"/p/{(n * 13 + 5) % size}#x", "/p/0"]
        if n + 1 < size:
            out.append(f"/p/{n + 1}")
        if 2 * n + 1 < size:
            out.append(f"/p/{2 * n + 1}")
        return out

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        with self.lock:
            self.hits[scope["path"]] += 1
        await self.answer(scope, send)

    async def answer(self, scope: dict[str, Any], send: Any) -> None:
        path = scope["path"]
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/html")]
        status, body = 404, b"not found"
        cookies = dict(scope.get("headers", []))
        if path == "/login":
            with self.lock:
                self.logins += 1
            status, body = 200, b"<html>welcome</html>"
            headers.append((b"set-cookie", b"sid=s3cret; Path=/"))
        elif path.startswith("/s/"):
            if b"sid=s3cret" not in cookies.get(b"cookie", b""):
                status, body = 302, b""
                headers.append((b"location", b"/login"))
            else:
                n = int(path[3:])
                nxt = f'<a href="/s/{n + 1}">next</a>' if n < 40 else ""
                status, body = 200, f"<html><h1>secret {n}</h1>{nxt}</html>".encode()
        elif path.startswith("/p/"):
            n = int(path[3:])
            if 0 <= n < self.pages:
                anchors = "".join(f'<a href="{link}">l</a>' for link in self.links(n))
                status, body = 200, f"<html><h1>page {n}</h1>{anchors}</html>".encode()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class SiteThread:
    """The site under hypercorn in a thread with its own trio loop."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.url = ""
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with serve_asgi(self.site) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SiteThread:
        self._thread.start()
        assert self._ready.wait(10), "the test site did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None and self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture
def site() -> Iterator[SiteThread]:
    with SiteThread(Site(PAGES)) as thread:
        yield thread


# -- the project and the crawl command ------------------------------------------------

RESUME_SETTINGS = 'obey_robots = false\nmax_connections_per_host = 16\nlog_level = "WARNING"\n'

SPIDER = """
from crawler import Request, Spider


class Pages(Spider):
    name = "pages"
    options = {"site_url": ""}

    def start_requests(self):
        yield Request(self.settings["site_url"] + "/p/0", callback=self.parse)

    def parse(self, response):
        yield {"page": str(response.url).rsplit("/", 1)[1], "depth": response.meta.get("x", 0)}
        yield from response.follow_all(callback=self.parse)


class Secure(Spider):
    name = "secure"
    options = {"site_url": ""}
    custom_settings = {"concurrency": 1}

    async def login(self, session):
        self.login_url = self.settings["site_url"] + "/login"
        await session.get(self.login_url)

    def start_requests(self):
        yield Request(self.settings["site_url"] + "/s/0", callback=self.parse_secret)

    def parse_secret(self, response):
        yield {"secret": response.css_first("h1").text()}
        yield from response.follow_all(callback=self.parse_secret)
"""


def make_project(root: Path, spider: str = SPIDER) -> Path:
    """A project whose spiders live in ``spiders/site.py``."""
    return helpers.make_project(root, RESUME_SETTINGS, site=spider)


def command(root: Path, site_url: str, *extra: str, spider: str = "pages") -> list[str]:
    return [
        sys.executable,
        "-m",
        "crawler.cli",
        spider,
        "-s",
        f'site_url="{site_url}"',
        "--job",
        str(root / "job"),
        "-o",
        str(root / "items.jsonl"),
        *extra,
    ]


def run(root: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=180, check=False)


def read_items(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the export ends with a truncated record"
    return [json.loads(line) for line in text.splitlines()]


def pages_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["page"] for item in items]


def expected_pages(pages: int) -> list[str]:
    return sorted(str(n) for n in range(pages))


# -- kill -9 and resume ---------------------------------------------------------------


@pytest.mark.e2e
def test_sigkill_and_resume_exports_every_item_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(5)
    with SiteThread(Site(KILL_PAGES)) as site:
        root = make_project(tmp_path)
        args = command(root, site.url, "-s", "checkpoint_every_pages=40")
        out = root / "items.jsonl"
        record = 40  # bytes per exported line, about
        kills = 0
        for _ in range(5):
            start = out.stat().st_size if out.exists() else 0
            target = start + rng.randint(20, KILL_PAGES // 8) * record
            proc = subprocess.Popen(
                args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            kills += kill_when(proc, lambda t=target: out.exists() and out.stat().st_size >= t)
        assert kills >= 3, "the crawl ended before it could be killed"
        result = run(root, args)
        assert result.returncode == 0, result.stderr
        fetched = sum(n for path, n in site.site.hits.items() if path.startswith("/p/"))
    pages = pages_of(read_items(out))
    assert len(pages) == len(set(pages)), Counter(pages).most_common(3)
    assert sorted(pages) == expected_pages(KILL_PAGES)
    # Pages handled after a checkpoint are fetched again after a kill, but never all.
    assert KILL_PAGES <= fetched < KILL_PAGES * 2
    status = job_status(root / "job")
    assert "state:            finished" in status
    assert "pending:          0" in status
    assert f"pages done:       {KILL_PAGES}" in status


# -- graceful stops ----------------------------------------------------------------------


@pytest.mark.e2e
def test_sigterm_then_resume_fetches_every_page_once(tmp_path: Path, site: SiteThread) -> None:
    root = make_project(tmp_path)
    args = command(root, site.url)
    out = root / "items.jsonl"
    proc = subprocess.Popen(args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.stat().st_size >= 200 * 40:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the crawl ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    status = job_status(root / "job")
    assert "stopped (shutdown)" in status
    first = sum(n for path, n in site.site.hits.items() if path.startswith("/p/"))
    assert 0 < first < PAGES

    result = run(root, args)
    assert result.returncode == 0, result.stderr
    page_hits = {path: n for path, n in site.site.hits.items() if path.startswith("/p/")}
    # Server-side proof that the resume redid nothing: every page was fetched once in all.
    assert len(page_hits) == PAGES
    assert set(page_hits.values()) == {1}
    pages = pages_of(read_items(out))
    assert sorted(pages) == expected_pages(PAGES)
    assert "state:            finished" in job_status(root / "job")


@pytest.mark.e2e
def test_cookies_survive_a_resume_without_logging_in_again(
    tmp_path: Path, site: SiteThread
) -> None:
    root = make_project(tmp_path)
    args = command(root, site.url, spider="secure")
    first = run(root, [*args, "-s", "max_pages=10"])
    assert first.returncode == 0, first.stderr
    assert site.site.logins == 1
    assert len(read_items(root / "items.jsonl")) == 10

    second = run(root, args)
    assert second.returncode == 0, second.stderr
    assert site.site.logins == 1  # the restored cookie kept the session logged in
    secrets = [item["secret"] for item in read_items(root / "items.jsonl")]
    assert sorted(secrets) == sorted(f"secret {n}" for n in range(41))
    secure_hits = [n for path, n in site.site.hits.items() if path.startswith("/s/")]
    assert len(secure_hits) == 41 and set(secure_hits) == {1}


@pytest.mark.e2e
def test_a_saved_cookie_the_jar_now_refuses_does_not_stop_the_resume(
    tmp_path: Path, site: SiteThread
) -> None:
    # A job saved by a build with looser cookie rules may hold a cookie the jar
    # refuses today (over 4096 bytes, a domain that is no host name): it is left
    # out, and the rest of the session comes back.
    root = make_project(tmp_path)
    args = command(root, site.url, spider="secure")
    first = run(root, [*args, "-s", "max_pages=10"])
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(root / "job" / "job.db") as db:
        (saved,) = db.execute("SELECT value FROM meta WHERE key = 'cookies'").fetchone()
        sessions = json.loads(saved)
        for _name, cookies, _logged_in in sessions:
            cookies.append({"name": "big", "value": "v" * 5000, "domain": "127.0.0.1"})
            cookies.append({"name": "odd", "value": "1", "domain": "a..b"})
        db.execute("UPDATE meta SET value = ? WHERE key = 'cookies'", (json.dumps(sessions),))
    db.close()

    second = run(root, args)
    assert second.returncode == 0, second.stderr
    assert "'big'" in second.stderr and "not restored" in second.stderr
    assert site.site.logins == 1  # the sid cookie came back: no new login
    assert len(read_items(root / "items.jsonl")) == 41


# -- refusals ----------------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        str(path.relative_to(directory)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def refused(root: Path, args: list[str]) -> str:
    result = run(root, args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("crawl: error: "), result.stderr
    return lines[-1].removeprefix("crawl: error: ")


@pytest.fixture
def stopped_job(tmp_path: Path, site: SiteThread) -> tuple[Path, list[str]]:
    """A job stopped by max_pages, with requests still queued."""
    root = make_project(tmp_path)
    args = command(root, site.url)
    result = run(root, [*args, "-s", "max_pages=20"])
    assert result.returncode == 0, result.stderr
    assert "pending:          0" not in job_status(root / "job")
    return root, args


@pytest.mark.e2e
def test_refuses_a_job_of_another_spider(stopped_job: tuple[Path, list[str]]) -> None:
    root, args = stopped_job
    before = snapshot(root / "job")
    message = refused(root, [*args[:3], "secure", *args[4:]])
    assert "belongs to spider 'pages', not 'secure'" in message
    assert snapshot(root / "job") == before


@pytest.mark.e2e
def test_refuses_a_corrupted_store(stopped_job: tuple[Path, list[str]]) -> None:
    root, args = stopped_job
    (root / "job" / "job.db").write_bytes(b"this is not a database" * 100)
    before = snapshot(root / "job")
    message = refused(root, args)
    assert "is corrupted" in message and "job.db" in message
    assert snapshot(root / "job") == before


@pytest.mark.e2e
def test_refuses_a_newer_format(stopped_job: tuple[Path, list[str]]) -> None:
    root, args = stopped_job
    info_path = root / "job" / "job.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info_path.write_text(json.dumps({**info, "format": 99}), encoding="utf-8")
    before = snapshot(root / "job")
    message = refused(root, args)
    assert "newer version" in message and "format 99" in message
    assert snapshot(root / "job") == before


@pytest.mark.e2e
def test_refuses_when_a_queued_callback_is_gone(stopped_job: tuple[Path, list[str]]) -> None:
    root, args = stopped_job
    source = root / "spiders" / "site.py"
    source.write_text(
        source.read_text(encoding="utf-8")
        .replace("parse(", "parse_page(")
        .replace("callback=self.parse)", "callback=self.parse_page)"),
        encoding="utf-8",
    )
    before = snapshot(root / "job")
    message = refused(root, args)
    assert "callback(s) parse that spider pages no longer has" in message
    assert snapshot(root / "job") == before


@pytest.mark.e2e
def test_a_second_process_on_the_same_job_refuses(stopped_job: tuple[Path, list[str]]) -> None:
    import fcntl

    root, args = stopped_job
    before = snapshot(root / "job")
    fd = os.open(root / "job" / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = refused(root, args)
    finally:
        os.close(fd)
    assert "is in use by another crawl" in message
    assert snapshot(root / "job") == before


@pytest.mark.e2e
def test_refuses_a_json_array_export(tmp_path: Path, site: SiteThread) -> None:
    root = make_project(tmp_path)
    args = [*command(root, site.url)[:-2], "-o", str(root / "items.json")]
    message = refused(root, args)
    assert "JSON array" in message and ".jsonl" in message
    assert not (root / "job").exists()


@pytest.mark.e2e
def test_status_of_a_directory_that_is_no_job(tmp_path: Path) -> None:
    result = run(tmp_path, [sys.executable, "-m", "crawler.cli", "status", str(tmp_path)])
    assert result.returncode == 2
    assert "is not a crawl job directory" in result.stderr


def test_store_is_sqlite_in_wal_mode_while_crawling(tmp_path: Path) -> None:
    from crawler.frontier.sqlite import SqliteFrontier
    from crawler.request import Request

    frontier = SqliteFrontier(tmp_path / "job.db", cache_size=4)
    for n in range(10):
        frontier.push(Request(f"http://a.test/{n}", priority=n % 2), "a.test")
    frontier.freeze({"format": "1"}, {})
    frontier.commit()
    frontier.thaw()
    with sqlite3.connect(tmp_path / "job.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (10,)
    # Higher priority first, FIFO within one, across the cache and the disk.
    order = [frontier.pop("a.test") for _ in range(10)]
    assert [r.url.rsplit("/", 1)[1] for r in order if r] == [
        "1",
        "3",
        "5",
        "7",
        "9",
        "0",
        "2",
        "4",
        "6",
        "8",
    ]
    assert frontier.pop("a.test") is None and len(frontier) == 0
    frontier.close()


def checkpoint(frontier: Any) -> None:
    frontier.freeze({"format": "2", "spider": "t"}, {})
    frontier.commit()
    frontier.thaw()


def test_leases_and_retries_are_pending_again_after_a_crash(tmp_path: Path) -> None:
    from crawler.frontier.sqlite import SqliteFrontier
    from crawler.request import Request

    store = tmp_path / "job.db"
    frontier = SqliteFrontier(store)
    for n in range(4):
        assert frontier.add_seen("GET", f"http://a.test/{n}")
        frontier.push(Request(f"http://a.test/{n}", callback="parse", meta={"n": n}), "a.test")
    leased = frontier.pop("a.test")
    retried = frontier.pop("a.test")
    finished = frontier.pop("a.test")
    assert leased is not None and retried is not None and finished is not None
    retried.retries = 1
    frontier.defer(retried, "a.test", 60.0)
    frontier.done(finished)
    checkpoint(frontier)
    # Changes after the last checkpoint are lost with the process.
    frontier.push(Request("http://a.test/late"), "a.test")
    assert frontier.add_seen("GET", "http://a.test/late")
    frontier.done(leased)
    frontier._db.close()  # no close(): as if killed

    again = SqliteFrontier(store)
    assert not again.add_seen("GET", "http://a.test/1")
    assert again.add_seen("GET", "http://a.test/late")
    (deferred,) = again.take_deferred()
    request, host, wait = deferred
    assert (request.url, host, request.meta, request.retries) == (
        "http://a.test/1",
        "a.test",
        {"n": 1},
        1,
    )
    assert 50 < wait <= 60
    assert len(again) == 2  # the lease and the one never handed out
    urls = sorted(r.url for r in iter(lambda: again.pop("a.test"), None))
    assert urls == ["http://a.test/0", "http://a.test/3"]
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.db", "job.db.bloom"]


def kill_when(proc: subprocess.Popen[bytes], grown: Any, deadline_seconds: float = 30) -> bool:
    """SIGKILL ``proc`` once ``grown()`` is true; False if it ended first."""
    deadline = time.monotonic() + deadline_seconds
    while proc.poll() is None and time.monotonic() < deadline:
        if grown():
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return killed


@pytest.mark.e2e
def test_csv_and_sqlite_exports_resume_exactly_once(tmp_path: Path) -> None:
    import csv

    with SiteThread(Site(KILL_PAGES)) as site:
        root = make_project(tmp_path)
        with (root / "settings.toml").open("a", encoding="utf-8") as f:
            f.write('pipelines = ["sqlite"]\n[pipeline.sqlite]\npath = "items.db"\n')
        args = [*command(root, site.url)[:-2], "-o", str(root / "items.csv")]
        args += ["-s", "checkpoint_every_pages=30"]
        out = root / "items.csv"
        kills = 0
        for target in (2_500, 6_000):
            proc = subprocess.Popen(
                args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            kills += kill_when(proc, lambda t=target: out.exists() and out.stat().st_size >= t)
        assert kills == 2
        result = run(root, args)
        assert result.returncode == 0, result.stderr
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["page"] for row in rows) == expected_pages(KILL_PAGES)
    with sqlite3.connect(root / "items.db") as db:
        items = [json.loads(text) for (text,) in db.execute("SELECT item FROM items")]
    assert sorted(item["page"] for item in items) == expected_pages(KILL_PAGES)


@pytest.mark.e2e
def test_a_job_killed_while_being_created_starts_afresh(tmp_path: Path, site: SiteThread) -> None:
    root = make_project(tmp_path)
    (root / "job").mkdir()
    (root / "job" / "lock").write_text("", encoding="utf-8")
    result = run(root, [*command(root, site.url), "-s", "max_pages=5"])
    assert result.returncode == 0, result.stderr
    assert len(read_items(root / "items.jsonl")) == 5
    assert "pages done:       5" in job_status(root / "job")


def test_frontier_beyond_its_cache_hands_out_each_request_once(tmp_path: Path) -> None:
    from crawler.frontier.sqlite import SqliteFrontier
    from crawler.request import Request

    rng = random.Random(7)
    store = tmp_path / "job.db"
    frontier = SqliteFrontier(store, cache_size=50)
    hosts = ["a.test", "b.test", "c.test"]
    pushed: list[str] = []
    popped: list[str] = []
    for n in range(1500):
        host = rng.choice(hosts)
        url = f"http://{host}/{n}"
        frontier.push(Request(url, priority=rng.choice([0, 0, 0, 1])), host)
        pushed.append(url)
        if n % 3 == 0:
            request = frontier.pop(rng.choice(hosts))
            if request is not None:
                popped.append(request.url)
                frontier.done(request)
        if n % 200 == 199:
            frontier.freeze({"format": "1"}, {})
            frontier.push(Request(f"http://a.test/frozen{n}"), "a.test")  # while committing
            pushed.append(f"http://a.test/frozen{n}")
            frontier.commit()
            frontier.thaw()
    assert len(frontier) == len(pushed) - len(popped)
    checkpoint(frontier)
    frontier.close()

    again = SqliteFrontier(store, cache_size=50)
    assert len(again) == len(pushed) - len(popped)
    for host in hosts:
        last_priority = 2
        while (request := again.pop(host)) is not None:
            assert request.priority <= last_priority  # higher priority first, across refills
            last_priority = request.priority
            popped.append(request.url)
            again.done(request)
    assert len(again) == 0
    assert sorted(popped) == sorted(pushed)
    again.close()


# -- what a kill costs, and counters after one -------------------------------------------


class HoldingSite(Site):
    """The site, but ``/hold``, and every request after the first ``answer_first``,
    are answered only once ``release`` is set: they stay in flight for as long as the
    test wants. Requests are counted when they arrive."""

    def __init__(self, pages: int, answer_first: int | None = None) -> None:
        super().__init__(pages)
        self.answer_first = answer_first
        self.admitted = 0
        self.held = 0
        self.body_bytes: dict[str, int] = {}
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        with self.lock:
            self.hits[path] += 1
            hold = not self.release.is_set() and (
                path == "/hold"
                or (self.answer_first is not None and self.admitted >= self.answer_first)
            )
            if hold:
                self.held += 1
            else:
                self.admitted += 1
        if hold:
            await trio.to_thread.run_sync(self.release.wait, 60)

        async def measuring_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                with self.lock:
                    self.body_bytes[path] = len(message["body"])
            await send(message)

        if path == "/hold":
            headers = [(b"content-type", b"text/html")]
            await measuring_send({"type": "http.response.start", "status": 200, "headers": headers})
            await measuring_send({"type": "http.response.body", "body": b"<html>held</html>"})
        else:
            await self.answer(scope, measuring_send)


HOLD_SPIDER = """
from crawler import Request, Spider


class Held(Spider):
    name = "held"
    options = {"site_url": ""}

    def start_requests(self):
        yield Request(self.settings["site_url"] + "/hold", callback=self.parse)
        for n in range(20):
            yield Request(self.settings["site_url"] + f"/p/{n}", callback=self.parse)

    def parse(self, response):
        yield {"page": str(response.url).rsplit("/", 1)[1]}
"""


def committed(job: Path) -> dict[str, Any]:
    """The stats of the job's last committed checkpoint ({} before the first)."""
    store = job / "job.db"
    if not store.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'stats'").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return {}  # the store is being created
    return json.loads(row[0]) if row else {}


def wait_for(proc: subprocess.Popen[bytes], condition: Any, deadline_seconds: float = 30) -> None:
    """Poll ``condition`` until true; fail if the crawl ends or the guard runs out first."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert proc.poll() is None, "the crawl ended before it could be killed"
        assert time.monotonic() < deadline, "the crawl never got there"
        time.sleep(0.005)


@pytest.mark.e2e
def test_counters_after_a_kill_count_each_fetch_of_a_page_once(tmp_path: Path) -> None:
    site = HoldingSite(PAGES)
    with SiteThread(site) as thread:
        try:
            root = make_project(tmp_path, HOLD_SPIDER)
            args = command(root, thread.url, spider="held")
            proc = subprocess.Popen(
                [*args, "-s", "checkpoint_every_seconds=0.1"],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # /hold is in flight (sent, so counted as a request) while a checkpoint
            # commits every other page: that checkpoint must not count /hold.
            wait_for(proc, lambda: committed(root / "job").get("pages") == 20)
            assert site.hits["/hold"] == 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            site.release.set()
        result = run(root, args)
        assert result.returncode == 0, result.stderr
    assert site.hits["/hold"] == 2  # fetched again after the kill
    stats = committed(root / "job")
    assert stats["pages"] == 21
    # As an uninterrupted crawl counts them: one request, and its bytes, per page.
    assert stats["requests"] == 21
    assert stats["bytes"] == sum(site.body_bytes.values())


@pytest.mark.e2e
def test_a_kill_after_a_checkpoint_redoes_only_the_pages_in_flight(tmp_path: Path) -> None:
    answered = 300
    site = HoldingSite(PAGES, answer_first=answered)
    with SiteThread(site) as thread:
        try:
            root = make_project(tmp_path)
            args = command(root, thread.url)  # the default checkpoint settings
            proc = subprocess.Popen(
                args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Every page the site answered is handled and committed by a timed
            # checkpoint; the requests sent since are held by the site, in flight.
            wait_for(proc, lambda: committed(root / "job").get("pages") == answered)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            site.release.set()
        result = run(root, args)
        assert result.returncode == 0, result.stderr
        page_hits = {path: n for path, n in site.hits.items() if path.startswith("/p/")}
    # Counted on the server: all pages, and a second time only those in flight at the
    # kill, at most one per connection (the pages done since the last checkpoint,
    # none here, would be the rest). The site held those it received before the kill.
    assert len(page_hits) == PAGES
    refetched = sum(page_hits.values()) - PAGES
    assert 0 < site.held <= refetched <= 16  # max_connections_per_host
    pages = pages_of(read_items(root / "items.jsonl"))
    assert len(pages) == len(set(pages))
    assert sorted(pages) == expected_pages(PAGES)


# -- the engine's fields of a request in the store -----------------------------------------


class GoneAfterKillSite(HoldingSite):
    """``/hold`` is held until ``release``, then answered 404 (``gone`` set first)."""

    def __init__(self) -> None:
        super().__init__(PAGES)
        self.gone = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/hold" and self.gone:
            with self.lock:
                self.hits["/hold"] += 1
            headers = [(b"content-type", b"text/html")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": b"gone"})
            return
        await super().__call__(scope, receive, send)


FIELDS_SPIDER = """
from crawler import Request, Spider


class Fields(Spider):
    name = "fields"
    options = {"site_url": ""}

    def start_requests(self):
        yield Request(
            self.settings["site_url"] + "/hold",
            callback=self.parse,
            accept_statuses=[404],
            dont_retry=True,
            dont_redirect=True,
            retry_any_method=True,
            meta={"k": 1},
        )
        for n in range(20):
            yield Request(self.settings["site_url"] + f"/p/{n}", callback=self.parse)

    def parse(self, response):
        request = response.crawl_request
        yield {
            "page": str(response.url).rsplit("/", 1)[1],
            "status": response.status_code,
            "meta": response.meta,
            "fields": [
                sorted(request.accept_statuses),
                request.dont_retry,
                request.dont_redirect,
                request.retry_any_method,
            ],
        }
"""


@pytest.mark.e2e
def test_request_fields_survive_a_kill_and_resume(tmp_path: Path) -> None:
    site = GoneAfterKillSite()
    with SiteThread(site) as thread:
        try:
            root = make_project(tmp_path, FIELDS_SPIDER)
            args = command(root, thread.url, spider="fields")
            proc = subprocess.Popen(
                [*args, "-s", "checkpoint_every_seconds=0.1"],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # /hold is in flight, so still queued in every checkpoint, when the crawl dies.
            wait_for(proc, lambda: committed(root / "job").get("pages") == 20)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            site.gone = True
        finally:
            site.release.set()
        result = run(root, args)
        assert result.returncode == 0, result.stderr
    assert site.hits["/hold"] == 2
    (held,) = [item for item in read_items(root / "items.jsonl") if item["page"] == "hold"]
    # The 404 reached the callback: accept_statuses came back from the store.
    assert held == {
        "page": "hold",
        "status": 404,
        "meta": {"k": 1},
        "fields": [[404], True, True, True],
    }


MIGRATED_SPIDER = """
from crawler import Spider


class Migrated(Spider):
    name = "migrated"
    options = {"site_url": ""}

    def start_requests(self):
        return []

    def parse(self, response):
        request = response.crawl_request
        yield {
            "status": response.status_code,
            "meta": response.meta,
            "retries": request.retries,
            "redirects": request.redirects,
            "accept": request.accept_statuses,
            "flags": [request.dont_retry, request.dont_redirect, request.retry_any_method],
        }
"""


def old_format_job(directory: Path, url: str) -> None:
    """A stopped job as the crawler wrote it before requests had fields for the engine's
    state (format 1): that state in meta keys, the record a list of nine values."""
    from crawler.frontier.sqlite import SCHEMA

    directory.mkdir()
    (directory / "job.json").write_text(
        json.dumps({"format": 1, "spider": "migrated", "created": 1.0}), encoding="utf-8"
    )
    db = sqlite3.connect(directory / "job.db")
    try:
        db.executescript(SCHEMA)
        meta = {"format": "1", "spider": "migrated", "checkpoint_time": "1.0", "starts_done": "1"}
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
        old_meta = {
            "k": 1,
            "retry_times": 1,
            "redirect_times": 2,
            "handle_httpstatus_all": True,
            "dont_retry": True,
            "retry": True,
        }
        record = [url, "GET", None, "", 0, old_meta, False, None, 0]
        db.execute(
            "INSERT INTO requests (id, host, nprio, callback, errback, data) "
            "VALUES (1, '127.0.0.1', 0, 'parse', NULL, ?)",
            (json.dumps(record),),
        )
        db.commit()
    finally:
        db.close()


@pytest.mark.e2e
def test_a_job_of_the_old_format_is_migrated_and_resumed(tmp_path: Path, site: SiteThread) -> None:
    root = make_project(tmp_path, MIGRATED_SPIDER)
    old_format_job(root / "job", site.url + "/gone")
    result = run(root, command(root, site.url, spider="migrated"))
    assert result.returncode == 0, result.stderr
    # The 404 reached the callback: handle_httpstatus_all became accept_statuses="all".
    assert read_items(root / "items.jsonl") == [
        {
            "status": 404,
            "meta": {"k": 1},
            "retries": 1,
            "redirects": 2,
            "accept": "all",
            "flags": [True, False, True],
        }
    ]
    assert json.loads((root / "job" / "job.json").read_text(encoding="utf-8"))["format"] == 2
    db = sqlite3.connect(root / "job" / "job.db")
    try:
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    finally:
        db.close()
    assert version == "2"
