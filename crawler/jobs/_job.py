"""Durable crawls: the job directory, its lock, checkpoints, and resuming.

A job directory holds ``job.json`` (which spider, which format: written once),
``job.db`` (the SqliteFrontier's store: queue, seen set, leases, and the
checkpointed metadata) and ``lock`` (held with ``flock`` while a crawl runs).

A checkpoint must record one consistent cut through the crawl: the pages
whose requests leave the queue are exactly those whose items are in the
exports up to the recorded offsets, and whose new requests are queued. A page
is handled (status, redirects, retries, callback, items, new requests) inside
the page gate; a checkpoint closes the gate, waits for the pages inside to
finish, then, while nothing else can produce items or requests, has the
pipelines write what they hold (their states are the offsets), writes the
batched frontier changes, the stats, cookies and those states into the open
SQLite transaction, and reopens the gate. A worker thread then fsyncs the
exports and commits, in that order, so a committed offset is always durable
(the frontier keeps later changes in memory until the commit is done). Fetches
go on throughout; callbacks wait only for the writes, a few milliseconds, so
a checkpoint every second costs little.

After a crash the store is the last checkpoint; exporters cut their files
back to its offsets, and requests handled since are handed out again (their
items were cut with the file tails), so every item is exported exactly once.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import trio

from .._links import host_of
from .._paths import for_spider
from ..frontier.sqlite import (
    FORMAT_VERSION,
    SqliteFrontier,
    callback_names,
    connect,
    migrate,
    read_meta,
)
from ..http import Cookies
from ..pipelines import JsonArrayExporter, PipelineConfigError
from ..pipelines._file import resolve_path
from ._crawl_state import CrawlState

if TYPE_CHECKING:
    from ..pipelines._runner import Pipeline
    from ..request import Request
    from ..spider import Spider

__all__ = ["JOB_FILE", "STORE_FILE", "Job", "JobError", "resolve_job_dir"]

log = logging.getLogger("crawler.job")

JOB_FILE = "job.json"
STORE_FILE = "job.db"
LOCK_FILE = "lock"

_STAT_COUNTERS = (
    "requests",
    "pages",
    "bytes",
    "retries",
    "redirects",
    "failed",
    "callback_errors",
)


class JobError(Exception):
    """A job directory cannot be used as asked; the directory was left as it was."""


def resolve_job_dir(template: str, spider_name: str) -> Path:
    return for_spider(template, spider_name).expanduser()


class PageGate:
    """Pages are handled inside; a checkpoint closes it and waits until it is empty."""

    __slots__ = ("_drained", "_inside", "_open", "closed")

    def __init__(self) -> None:
        self._inside: set[Request] = set()
        self._open = trio.Event()
        self._open.set()
        self._drained: trio.Event | None = None
        self.closed = False

    async def enter(self, request: Request) -> None:
        while self.closed:
            await self._open.wait()
        self._inside.add(request)

    def enter_now(self, request: Request) -> None:
        """``enter`` when the gate is open (the common case: no await, no task switch)."""
        self._inside.add(request)

    def leave(self, request: Request) -> None:
        inside = self._inside
        if request in inside:
            inside.remove(request)
            if not inside and self._drained is not None:
                self._drained.set()

    async def close(self) -> None:
        self.closed = True
        self._open = trio.Event()
        if self._inside:
            self._drained = trio.Event()
            await self._drained.wait()
        self._drained = None

    def open(self) -> None:
        self.closed = False
        self._open.set()


class Unsettled:
    """The requests sent and bytes received for pages not handled yet (in flight, or
    waiting at the gate).

    Such a page keeps its lease at a checkpoint and is fetched again after a crash,
    so its fetches must not be in the counters the checkpoint saves: a resumed crawl
    would count them twice. The checkpoint saves the live counters minus these.
    """

    __slots__ = ("_by_request", "bytes", "requests")

    def __init__(self) -> None:
        self._by_request: dict[Request, list[int]] = {}
        self.requests = 0
        self.bytes = 0

    def sent(self, request: Request) -> None:
        entry = self._by_request.get(request)
        if entry is None:
            self._by_request[request] = [1, 0]
        else:
            entry[0] += 1
        self.requests += 1

    def received(self, request: Request, size: int) -> None:
        entry = self._by_request.get(request)
        if entry is not None:
            entry[1] += size
            self.bytes += size

    def settle(self, request: Request) -> None:
        """The page is handled: its fetches count from now on."""
        entry = self._by_request.pop(request, None)
        if entry is not None:
            self.requests -= entry[0]
            self.bytes -= entry[1]


class Job:
    """One spider's durable crawl in ``directory``; made by :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        spider_name: str,
        lock_fd: int,
        frontier: SqliteFrontier,
        meta: dict[str, str],
    ) -> None:
        self.directory = directory
        self.spider_name = spider_name
        self.frontier = frontier
        self.meta = meta
        self.resumed = "checkpoint_time" in meta
        self.starts_done = meta.get("starts_done") == "1"
        #: Start requests taken from start_requests() up to the last checkpoint.
        self.starts_queued = int(meta.get("starts_queued", "0") or 0)
        self.gate = PageGate()
        #: Fetches of pages not handled yet, left out of the saved counters.
        self.unsettled = Unsettled()
        self.pages_since = 0
        self.checkpoints = int(meta.get("checkpoints", "0"))
        self.last_checkpoint = float(meta.get("checkpoint_time", "0") or 0)
        self._lock_fd = lock_fd
        self._host_done: Counter[str] = Counter()
        self._due = trio.Event()
        self._every_pages = 1000
        self._every_seconds = 1.0
        self._busy = trio.Lock()
        self._closed_at = 0.0
        self._stopped = False

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        template: str,
        spider: Spider,
        pipelines: Sequence[Pipeline],
        *,
        every_pages: int = 1000,
        every_seconds: float = 1.0,
    ) -> Job:
        """Create the job in ``template`` (``{spider}`` filled in) or check and resume it;
        it checkpoints every ``every_pages`` pages or ``every_seconds``.

        Raises JobError, before anything in the directory is modified, for a
        directory of another spider, a corrupted or newer store, queued
        callbacks the spider no longer has, changed pipelines, or a directory
        another process is crawling with.
        """
        name = spider.name or type(spider).__name__
        directory = resolve_job_dir(template, name)
        _refuse_unresumable(pipelines)
        info = directory / JOB_FILE
        if info.exists():
            job = cls._resume(directory, spider, name, pipelines)
        else:
            # A lock file alone is left by a run killed while it created the job.
            if directory.exists() and any(
                p.name not in (LOCK_FILE, JOB_FILE + ".tmp") for p in directory.iterdir()
            ):
                raise JobError(
                    f"job directory {directory} is not empty and holds no crawl job "
                    f"(no {JOB_FILE}): give --job a new or empty directory"
                )
            job = cls._create(directory, name)
        job._every_pages, job._every_seconds = every_pages, every_seconds
        return job

    @classmethod
    def _create(cls, directory: Path, name: str) -> Job:
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(directory)
        try:
            _write_atomic(
                directory / JOB_FILE,
                json.dumps(
                    {"format": FORMAT_VERSION, "spider": name, "created": time.time()}, indent=1
                )
                + "\n",
            )
            frontier = SqliteFrontier(directory / STORE_FILE)
            meta = {"format": str(FORMAT_VERSION), "spider": name}
            frontier.set_meta(meta)
            frontier.commit()
        except BaseException:
            os.close(lock_fd)
            raise
        _write_pid(lock_fd)
        log.info("spider %s: new job in %s", name, directory)
        return cls(directory, name, lock_fd, frontier, meta)

    @classmethod
    def _resume(
        cls, directory: Path, spider: Spider, name: str, pipelines: Sequence[Pipeline]
    ) -> Job:
        info = _read_info(directory)
        if info.get("spider") != name:
            raise JobError(
                f"job directory {directory} belongs to spider {info.get('spider')!r}, "
                f"not {name!r}: give {name} a --job directory of its own"
            )
        lock_fd = _lock(directory)
        try:
            store = directory / STORE_FILE
            if store.exists():
                meta, names = _inspect_store(store, name)
                missing = sorted(n for n in names if not _has_callback(spider, n))
                if missing:
                    raise JobError(
                        f"job directory {directory}: queued requests use callback(s) "
                        f"{', '.join(missing)} that spider {name} no longer has; put them back "
                        "to resume this job, or start a new one in another directory"
                    )
                _apply_pipeline_states(directory, pipelines, meta.get("pipelines"), spider)
                if meta and int(meta["format"]) < FORMAT_VERSION:
                    _migrate(directory, store, int(meta["format"]), info)
                    meta["format"] = str(FORMAT_VERSION)
            else:
                meta = {}
            frontier = SqliteFrontier(store)
        except BaseException:
            os.close(lock_fd)
            raise
        _write_pid(lock_fd)
        job = cls(directory, name, lock_fd, frontier, meta)
        if job.resumed:
            log.info(
                "spider %s: resuming the job in %s (%d queued, last checkpoint %s)",
                name,
                directory,
                len(frontier),
                _when(job.last_checkpoint),
            )
        return job

    # -- running ---------------------------------------------------------------------

    async def open_pipelines(self, crawl: CrawlState) -> None:
        """Open the pipelines, each exporter cut back to the last checkpoint's position."""
        try:
            await crawl.open_pipelines()
        except BaseException as exc:
            self.frontier.close()
            self.close()
            if isinstance(exc, ValueError):
                raise JobError(f"job directory {self.directory}: cannot resume: {exc}") from exc
            raise

    async def start(self, crawl: CrawlState) -> None:
        """Restore what the last checkpoint saved, then checkpoint the starting point."""
        if self.resumed:
            _restore(crawl, self.meta)
        for request, _host, wait in self.frontier.take_deferred():
            crawl.retry_later(request, wait)
        await self.checkpoint(crawl)

    def start_feed(self, enqueue: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap the start feed's ``enqueue`` so that, when a job stopped while its start
        requests were being queued, those its checkpoint holds are not queued again
        (``dont_filter`` ones would escape the seen set and be fetched twice).
        start_requests() is expected to yield the same requests in the same order."""
        skip = self.starts_queued
        taken = 0

        def take(request: Any) -> None:
            nonlocal taken
            taken += 1
            if taken > skip:
                enqueue(request)
                self.starts_queued = taken

        return take

    def page_done(self, request: Request) -> None:
        """A handed-out request is over (called from the worker, whatever happened)."""
        self.gate.leave(request)
        self.unsettled.settle(request)
        self._host_done[host_of(request.url)] += 1
        self.pages_since += 1
        if self.pages_since >= self._every_pages:
            self._due.set()

    async def run_checkpoints(self, crawl: CrawlState) -> None:
        """Checkpoint every ``every_pages`` pages or ``every_seconds``, until cancelled."""
        every = self._every_seconds
        due_at = trio.current_time() + every
        while True:
            with trio.move_on_at(due_at):
                await self._due.wait()
            self._due = trio.Event()
            # Timed from the start of this checkpoint, not the end of its commit: a
            # slow disk does not widen the work a crash loses by the commit's time.
            due_at = trio.current_time() + every
            await self.checkpoint(crawl)

    async def checkpoint(self, crawl: CrawlState, *, finish_reason: str = "") -> None:
        if self._stopped:
            return
        async with self._busy:
            self._closed_at = time.perf_counter()
            await self.gate.close()
            try:
                if crawl.aborted:
                    return
                with trio.CancelScope(shield=True):
                    await self._commit(crawl, finish_reason)
            finally:
                self.gate.open()

    async def _commit(self, crawl: CrawlState, finish_reason: str) -> None:
        states, syncs = await crawl.stage_pipelines()
        now = time.time()
        self.checkpoints += 1
        meta = _snapshot(crawl, states, self.unsettled)
        meta.update(
            format=str(FORMAT_VERSION),
            spider=self.spider_name,
            starts_done="1" if self.starts_done else "0",
            starts_queued=str(self.starts_queued),
            checkpoint_time=repr(now),
            checkpoints=str(self.checkpoints),
            finish_reason=finish_reason,
        )
        host_done, self._host_done = self._host_done, Counter()
        self.pages_since = 0
        frontier = self.frontier
        frontier.freeze(meta, host_done)
        # The snapshot is taken: pages may be handled again while the commit is
        # fsynced (their changes wait in memory until the frontier thaws).
        self.gate.open()
        paused = time.perf_counter() - self._closed_at
        try:
            await trio.to_thread.run_sync(_make_durable, syncs, frontier)
        finally:
            frontier.thaw()
        self.last_checkpoint = now
        log.debug(
            "spider %s: checkpoint #%d: callbacks paused %.1f ms, committed after %.1f ms",
            self.spider_name,
            self.checkpoints,
            paused * 1000,
            (time.perf_counter() - self._closed_at) * 1000,
        )

    async def finish(self, crawl: CrawlState, clean: bool) -> None:
        """The last checkpoint of a crawl that stopped cleanly; after it nothing is redone."""
        if clean and not crawl.aborted:
            await self.checkpoint(crawl, finish_reason=crawl.finish_reason)
        else:
            log.warning(
                "spider %s: the crawl was cancelled: the job resumes from its last checkpoint (%s)",
                self.spider_name,
                _when(self.last_checkpoint),
            )
        self._stopped = True

    def close(self) -> None:
        """Release the lock (the frontier is closed by the crawler)."""
        self._stopped = True
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)


# -- what a checkpoint saves ----------------------------------------------------------


def _make_durable(syncs: Sequence[Callable[[], None]], frontier: SqliteFrontier) -> None:
    """The exports' fsyncs, then the store's commit, in one worker thread: the offsets
    the commit records are durable before it (a failed fsync raises before the commit,
    so the store keeps the previous checkpoint)."""
    for sync in syncs:
        sync()
    frontier.commit()


def _snapshot(
    crawl: CrawlState, states: list[tuple[str, Any]], unsettled: Unsettled
) -> dict[str, str]:
    stats = crawl.refresh_stats()
    counters: dict[str, Any] = {name: getattr(stats, name) for name in _STAT_COUNTERS}
    # As of the pages this checkpoint commits: those still leased are fetched again
    # after a crash and counted then.
    counters["requests"] -= unsettled.requests
    counters["bytes"] -= unsettled.bytes
    counters["status"] = {str(k): v for k, v in stats.status.items()}
    counters["errors"] = dict(stats.errors)
    counters["dropped"] = dict(stats.dropped)
    counters["custom"] = dict(stats.custom)
    scraped, dropped = crawl.item_counters()
    counters["items"] = scraped
    counters["items_dropped"] = dict(dropped)
    counters["queued"] = stats.queued
    pipelines = [{"pipeline": name, "state": state} for name, state in states]
    return {
        "stats": json.dumps(counters),
        # A pipeline of one's own may return any state: what JSON cannot hold is kept as text.
        "pipelines": json.dumps(pipelines, default=repr),
        "cookies": json.dumps([list(state) for state in crawl.session_states()]),
        "throttles": json.dumps(crawl.throttles()),
    }


def _restore(crawl: CrawlState, meta: Mapping[str, str]) -> None:
    counters = json.loads(meta.get("stats", "{}"))
    stats = crawl.stats
    for name in _STAT_COUNTERS:
        setattr(stats, name, int(counters.get(name, 0)))
    stats.status.update({int(k): v for k, v in counters.get("status", {}).items()})
    stats.errors.update(counters.get("errors", {}))
    stats.dropped.update(counters.get("dropped", {}))
    stats.custom.update(counters.get("custom", {}))
    crawl.restore_item_counters(int(counters.get("items", 0)), counters.get("items_dropped", {}))
    crawl.restore_throttles(json.loads(meta.get("throttles", "{}")))
    for name, cookies, logged_in in json.loads(meta.get("cookies", "[]")):
        # Saved by an older build, a cookie may break today's rules: one
        # refused cookie is logged, and does not stop the resume.
        jar = Cookies.from_list(cookies, skip_refused=True) if cookies else None
        crawl.restore_session(name, jar, bool(logged_in))


# -- checks done before anything is modified ---------------------------------------------


def _has_callback(spider: Spider, name: str) -> bool:
    from ..spider import Spider

    # The base class's parse() only raises: a spider without its own has none.
    method = getattr(type(spider), name, None)
    return callable(getattr(spider, name, None)) and method is not Spider.parse


def _refuse_unresumable(pipelines: Sequence[Pipeline]) -> None:
    for pipeline in pipelines:
        # A JSON array is only valid once closed: it is rewritten by every run and has
        # no committed offset to cut back to.
        if isinstance(pipeline, JsonArrayExporter):
            path = getattr(pipeline, "path_template", "")
            raise JobError(
                f"cannot export to {str(path)!r} in a resumable crawl: a JSON array is "
                "rewritten by every run; export to .jsonl, .csv or SQLite with --job"
            )


def _read_info(directory: Path) -> dict[str, Any]:
    path = directory / JOB_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        version = int(info["format"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JobError(
            f"job directory {directory} is corrupted: {path} is unreadable ({exc}); "
            "move the directory away to start the crawl afresh"
        ) from None
    if version > FORMAT_VERSION:
        raise JobError(
            f"job directory {directory} was written by a newer version of the crawler "
            f"(job format {version}; this version reads up to {FORMAT_VERSION}): "
            "resume it with that version"
        )
    return info


def _inspect_store(store: Path, name: str) -> tuple[dict[str, str], set[str]]:
    """The store's metadata and queued callback names, read without writing anything."""
    try:
        db = sqlite3.connect(f"file:{quote(str(store.resolve()))}?mode=ro", uri=True)
        try:
            meta = read_meta(db)
            names = callback_names(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise JobError(
            f"job directory {store.parent} is corrupted: the store {store} cannot be read "
            f"({exc}); move the directory away to start the crawl afresh"
        ) from None
    if not meta:
        return meta, names  # killed while the job was being created: nothing to resume
    try:
        version = int(meta.get("format", "0"))
    except ValueError:
        version = -1
    if version > FORMAT_VERSION:
        raise JobError(
            f"job directory {store.parent} was written by a newer version of the crawler "
            f"(store format {version}; this version reads up to {FORMAT_VERSION}): "
            "resume it with that version"
        )
    if version < 1 or meta.get("spider") != name:
        raise JobError(
            f"job directory {store.parent} is corrupted: its store names spider "
            f"{meta.get('spider')!r} with format {meta.get('format')!r}; move the directory "
            "away to start the crawl afresh"
        )
    return meta, names


def _migrate(directory: Path, store: Path, version: int, info: dict[str, Any]) -> None:
    """Bring a store written by an older version to today's format, then job.json
    (a crash in between leaves a store that is already migrated: nothing is redone)."""
    try:
        db = connect(store)
        try:
            changed = migrate(db, version)
        finally:
            db.close()
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise JobError(
            f"job directory {directory}: its store (format {version}) could not be brought "
            f"to format {FORMAT_VERSION} ({exc}); resume it with the version that wrote it, "
            "or move the directory away to start the crawl afresh"
        ) from None
    _write_atomic(
        directory / JOB_FILE, json.dumps({**info, "format": FORMAT_VERSION}, indent=1) + "\n"
    )
    log.info(
        "job directory %s: store migrated from format %d to %d (%d requests)",
        directory,
        version,
        FORMAT_VERSION,
        changed,
    )


def _apply_pipeline_states(
    directory: Path, pipelines: Sequence[Pipeline], saved: str | None, spider: Spider
) -> None:
    """Hand each exporter the position it reached at the last checkpoint."""
    if saved is None:
        return
    states = json.loads(saved)
    was = [s["pipeline"] for s in states]
    now = [type(p).__name__ for p in pipelines]
    if was != now:
        raise JobError(
            f"job directory {directory}: the crawl was started with the pipelines {was} and is "
            f"resumed with {now}: resume it with the same -o files and pipelines settings"
        )
    for pipeline, entry in zip(pipelines, states, strict=True):
        state = entry["state"]
        if not isinstance(state, dict):
            continue
        template = getattr(pipeline, "path_template", None)
        if template is not None and "path" in state:
            try:
                path = resolve_path(template, spider)
            except PipelineConfigError as exc:
                raise JobError(f"job directory {directory}: {exc}") from None
            if path.resolve() != Path(state["path"]).resolve():
                raise JobError(
                    f"job directory {directory}: items went to {state['path']} and would now "
                    f"go to {path}: resume with the same export paths"
                )
        if "offset" in state:
            pipeline.resume_offset = int(state["offset"])  # type: ignore[attr-defined]
            if getattr(pipeline, "overwrite", False):
                pipeline.overwrite = False  # type: ignore[attr-defined]
        if "last_id" in state:
            pipeline.resume_last_id = int(state["last_id"])  # type: ignore[attr-defined]


# -- files -------------------------------------------------------------------------------


def _lock(directory: Path) -> int:
    """Hold DIR/lock for this process; JobError if another crawl holds it."""
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise JobError(
                f"job directory {directory} is in use by another crawl (pid {holder}): "
                "wait for it to end, or stop it, before running this one"
            ) from None
        raise
    return fd


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _when(timestamp: float) -> str:
    if not timestamp:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
