"""Looking after a shared crawl from outside: ``crawl status``, ``crawl stop``, ``crawl export``.

Export is where "exactly once" ends up on disk. Committed pages put their
items in the crawl's Redis stream, each page's items once; the exporter reads
the stream in order from the position it recorded, appends the lines to the
file, fsyncs it, then records the new position (the last stream id and the
file's size) in a small file beside it, replaced atomically. After a crash
between the two, the next export cuts the file back to the recorded size and
reads on from the recorded id: every item is in the file once.

``--trim`` deletes from the stream what the file holds, only once the
position that counts it is on disk: so a crash between the two leaves items
in the stream that the file holds too, which the next export skips (and
trims) by its position. Nothing is lost and nothing is written twice. The
last id trimmed is recorded in the crawl's meta hash: an export whose file has
not reached it (another file, or ``-O``) would miss items, and refuses to run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..pipelines._file import AppendFile
from ._frontier import CrawlKeys
from ._redis import RedisClient, RedisError
from ._scripts import TRIM

__all__ = ["ExportResult", "crawl_status", "export_items", "position_path", "stop_crawl"]

_PAGE = 1000  # stream entries read per call
_FOLLOW_BLOCK_MS = 500
_LIMITS = ("max_pages", "max_items", "max_seconds")  # what the lease script sets ``stop`` to


@dataclass
class CrawlCounts:
    """One shared crawl as its keys show it now."""

    keys: CrawlKeys
    workers: list[tuple[str, float]]  # alive, with seconds until their leases expire
    queued: int
    leased: int
    stats: dict[str, int]
    stream: int
    stop: str  # '' if unset; else a limit reached ("max_pages"...) or a stop time
    left: float | None  # seconds until the run's max_seconds deadline (None: no deadline)
    sessions: dict[str, tuple[int, int]]  # shared session -> (logins, cookie changes)


async def _counts(client: RedisClient, keys: CrawlKeys) -> CrawlCounts:
    # TIME in the same batch: the clock of the node that holds the crawl (in a cluster,
    # the batch goes to the node serving its keys), which scored the heartbeats.
    clock, workers, queued, leased, stats, stream, stop, deadline, sessions = await client.pipeline(
        [
            ["TIME"],
            ["ZRANGE", keys.workers, 0, -1, "WITHSCORES"],
            ["GET", keys.queued],
            ["HLEN", keys.owner],
            ["HGETALL", keys.stats],
            ["XLEN", keys.items],
            ["GET", keys.stop],
            ["GET", keys.deadline],
            ["HGETALL", keys.prefix + "sessions"],
        ]
    )
    assert isinstance(clock, list) and isinstance(workers, list) and isinstance(stats, list)
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    alive = [
        (workers[i].decode(), (float(workers[i + 1]) - now_ms) / 1000)
        for i in range(0, len(workers), 2)
        if float(workers[i + 1]) >= now_ms
    ]
    counters = {stats[i].decode(): int(stats[i + 1]) for i in range(0, len(stats), 2)}
    return CrawlCounts(
        keys,
        alive,
        int(queued or 0),  # type: ignore[call-overload]
        int(leased),  # type: ignore[call-overload]
        counters,
        int(stream),  # type: ignore[call-overload]
        stop.decode() if isinstance(stop, bytes) else "",
        (int(deadline) - now_ms) / 1000 if isinstance(deadline, bytes) else None,
        _sessions(sessions),
    )


def _sessions(reply: object) -> dict[str, tuple[int, int]]:
    """The shared sessions' hash (``gen:NAME``, ``ver:NAME``) by session name."""
    assert isinstance(reply, list)
    fields = {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
    names = sorted({field.partition(":")[2] for field in fields})
    return {name: (fields.get(f"gen:{name}", 0), fields.get(f"ver:{name}", 0)) for name in names}


def _format(counts: CrawlCounts) -> str:
    stats = counts.stats
    keys = counts.keys
    lines = [
        f"shared crawl:  spider {keys.spider}, crawl id {keys.crawl_id}"
        + ("  (stop requested)" if counts.stop and counts.stop not in _LIMITS else ""),
        f"workers alive: {len(counts.workers)}",
        f"pages done:    {stats.get('pages', 0)}",
        f"pending:       {counts.queued}",
        f"in flight:     {counts.leased} (leased)",
        f"items:         {stats.get('items', 0)} ({counts.stream} in the stream"
        + (f", {stats['trimmed']} exported and trimmed)" if stats.get("trimmed") else ")"),
        f"errors:        {stats.get('errors', 0)} (pages failed, callback and pipeline errors)",
        f"refetches:     {stats.get('refetches', 0)} (commits refused after a lease expired; "
        f"{stats.get('reaped', 0)} leases taken back from dead workers)",
    ]
    for name, (logins, changes) in counts.sessions.items():
        lines.append(
            f"session {name}:  {logins} login{'' if logins == 1 else 's'} shared by the "
            f"workers, cookies changed {changes} times"
        )
    if counts.left is not None and counts.workers and not counts.stop:
        lines.append(f"time left:     {max(0.0, counts.left):.1f} s (max_seconds of this run)")
    for worker, left in counts.workers:
        mine = {
            k: stats.get(f"w:{worker}:{k}", 0) for k in ("pages", "items", "errors", "refetches")
        }
        lines.append(
            f"  {worker}: {mine['pages']} pages, {mine['items']} items, {mine['errors']} "
            f"errors, {mine['refetches']} refetches; heartbeat good for {left:.1f} s"
        )
    if counts.stop in _LIMITS:
        # The crawl-wide limit stops the crawl even though requests wait.
        state = "stopping" if counts.workers else "stopped"
        lines.append(f"state:         {state}: {counts.stop} reached")
    elif not counts.workers and not counts.queued and not counts.leased and stats.get("pages"):
        lines.append("state:         finished")
    return "\n".join(lines)


async def _crawls(client: RedisClient, spider: str | None, crawl_id: str) -> list[CrawlKeys]:
    if spider is not None:
        return [CrawlKeys(spider, crawl_id)]
    found: list[CrawlKeys] = []
    # A cluster's keys are spread over its primaries, and SCAN sees one node's only.
    for node in await client.primaries():
        cursor = b"0"
        for _ in range(100_000):  # bounded: SCAN ends when the cursor comes back to 0
            reply = await client.execute_on(
                node, "SCAN", cursor, "MATCH", "crawl:{*}:meta", "COUNT", 1000
            )
            assert isinstance(reply, list)
            cursor, names = reply
            for name in names:
                tag = name.decode()[len("crawl:{") : -len("}:meta")]
                spider_name, _, crawl = tag.rpartition("/")
                found.append(CrawlKeys(spider_name, crawl))
            if cursor == b"0":
                break
    return sorted(found, key=lambda k: k.prefix)


def crawl_status(url: str, spider: str | None, crawl_id: str) -> str:
    """The state of the shared crawl(s) in the Redis at ``url``, as text."""

    async def main() -> str:
        async with RedisClient(url, pool_size=1) as client:
            crawls = await _crawls(client, spider, crawl_id)
            if not crawls:
                return f"no shared crawl in {client.target}"
            return "\n\n".join([_format(await _counts(client, keys)) for keys in crawls])

    return trio.run(main)


def stop_crawl(url: str, spider: str, crawl_id: str) -> str:
    """Ask every worker of the crawl to finish its pages in flight and exit."""

    async def main() -> str:
        keys = CrawlKeys(spider, crawl_id)
        async with RedisClient(url, pool_size=1) as client:
            # Busy workers see the flag at their next round; waiting ones are woken.
            await client.pipeline(
                [["SET", keys.stop, repr(time.time())], ["PUBLISH", keys.wake, ""]]
            )
            counts = await _counts(client, keys)
        return (
            f"stop requested for spider {spider}, crawl id {crawl_id}: "
            f"{len(counts.workers)} worker(s) alive finish their pages in flight and exit"
        )

    return trio.run(main)


def position_path(path: Path) -> Path:
    """Where the export position of ``path`` is kept: beside it."""
    return path.with_name(path.name + ".position")


@dataclass
class ExportResult:
    written: int
    total: int  # bytes in the file


class _Position:
    def __init__(self, path: Path, stream: str) -> None:
        self.path = position_path(path)
        self.stream = stream
        self.last_id = "0-0"
        self.offset: int | None = None

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise RedisError(f"{self.path}: unreadable export position ({exc})") from None
        if data.get("stream") != self.stream:
            raise RedisError(
                f"{self.path}: this file was exported from stream {data.get('stream')!r}, "
                f"not {self.stream!r}; export to another file, or use -O to start it afresh"
            )
        self.last_id, self.offset = str(data["last_id"]), int(data["offset"])

    def save(self, last_id: str, offset: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"stream": self.stream, "last_id": last_id, "offset": offset})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self.last_id, self.offset = last_id, offset


def export_items(
    url: str,
    spider: str,
    crawl_id: str,
    path: Path,
    *,
    append: bool,
    follow: bool,
    trim: bool = False,
) -> ExportResult:
    """Append the crawl's items not yet in ``path`` to it, as JSON lines (see the module's
    text). ``append`` False (``-O``) starts the file and its position afresh. With
    ``follow``, keep going until no worker of the crawl is left; with ``trim``, delete
    from the stream the items the file holds."""
    keys = CrawlKeys(spider, crawl_id)
    position = _Position(path, keys.items)
    if append:
        position.load()
    return trio.run(_export, url, keys, path, position, append, follow, trim)


async def _export(
    url: str,
    keys: CrawlKeys,
    path: Path,
    position: _Position,
    append: bool,
    follow: bool,
    trim: bool,
) -> ExportResult:
    written = 0
    async with RedisClient(url, pool_size=1, scripts=(TRIM,)) as client:
        # Before the file is touched: -O on a file whose items were trimmed would lose them.
        _check_trimmed(await client.execute("HGET", keys.meta, "trimmed"), position)
        if not append:
            position.path.unlink(missing_ok=True)
        out = AppendFile(path)
        out.open(_line_end, overwrite=not append, resume_offset=position.offset)
        try:
            if trim and position.last_id != "0-0":
                # What the last export wrote, in case it stopped before trimming it.
                await _trim(client, keys, position.last_id)
            while True:
                batch, trimmed = await client.pipeline(
                    [
                        ["XRANGE", keys.items, f"({position.last_id}", "+", "COUNT", _PAGE],
                        ["HGET", keys.meta, "trimmed"],
                    ]
                )
                assert isinstance(batch, list)
                _check_trimmed(trimmed, position)
                if batch:
                    written += _write_batch(out, position, batch)
                    if trim:
                        await _trim(client, keys, position.last_id)
                    continue
                if not follow or not await _workers_left(client, keys):
                    return ExportResult(written, out.offset)
                await client.execute(
                    "XREAD", "BLOCK", _FOLLOW_BLOCK_MS, "COUNT", 1, "STREAMS", keys.items,
                    position.last_id,
                )  # fmt: skip
        finally:
            out.close()


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _check_trimmed(trimmed: object, position: _Position) -> None:
    """Refuse to export past items another export trimmed before this file had them."""
    if not isinstance(trimmed, bytes):
        return
    last = trimmed.decode()
    if _stream_id(last) > _stream_id(position.last_id):
        raise RedisError(
            f"{position.path.with_suffix('')}: the crawl's items up to {last} were trimmed "
            f"from the stream by `crawl export --trim` to another file, and this file "
            f"(exported up to {position.last_id}) does not hold them all; export with -o "
            "to the file that was trimmed from"
        )


async def _trim(client: RedisClient, keys: CrawlKeys, last_id: str) -> None:
    ms, seq = _stream_id(last_id)
    await client.run(TRIM, [keys.items, keys.meta, keys.stats], [last_id, f"{ms}-{seq + 1}"])


def _write_batch(out: AppendFile, position: _Position, batch: list[Any]) -> int:
    lines = [fields[1] for _id, fields in batch]
    out.write(b"\n".join(lines) + b"\n")
    os.fsync(out.fd)  # the lines are durable before the position that counts them
    position.save(batch[-1][0].decode(), out.offset)
    return len(lines)


async def _workers_left(client: RedisClient, keys: CrawlKeys) -> bool:
    return bool((await _counts(client, keys)).workers)


def _line_end(fd: int, size: int) -> int:
    """The end of the last whole line (a run killed mid-write leaves a partial one)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0
