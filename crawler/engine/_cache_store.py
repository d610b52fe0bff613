"""The HTTP cache's storage: one SQLite file per spider, read and written off the event loop.

Each response is one row keyed by its request fingerprint, written in a
transaction of its own, so a crawl killed mid-write (even by SIGKILL) leaves
the file as it was before that write or after it, never torn: SQLite's
journal (WAL here) rolls back what was not committed the next time the file
opens. ``synchronous=NORMAL`` skips the fsync of each commit; a power cut may
lose the last entries, which a development cache can afford (they are fetched
again), but never corrupts the file.

The one connection is used from worker threads one call at a time (a
capacity limiter of one), so the event loop never waits on the disk. Which
keys are stored, and until when they are fresh, is also kept in memory
(``index``): the scheduler asks it, without I/O, whether a request will be
answered from the cache (and so takes no politeness turn), and a miss costs
no thread hop at all.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    # Imported where a cache is opened: crawls without one never load sqlite3.
    import sqlite3

__all__ = ["CACHE_FILE", "CacheEntry", "CacheStore", "HttpCacheError", "cache_size", "clear_cache"]

#: The database file inside a spider's cache directory.
CACHE_FILE = "cache.db"

# Bodies smaller than this are stored as they are: compressing them saves little.
_COMPRESS_MIN = 512
# zlib level 1: several times faster than the default and most of its gain on HTML.
_COMPRESS_LEVEL = 1
_RAW, _ZLIB = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key BLOB PRIMARY KEY,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    coding INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    fresh_until REAL NOT NULL
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored response. ``stored_at`` and ``fresh_until`` are Unix times;
    ``fresh_until`` is what RFC 9111 freshness gave when it was stored."""

    method: str
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stored_at: float
    fresh_until: float


class HttpCacheError(Exception):
    """The cache file cannot be opened or read (not SQLite, or from an unknown layout)."""


class CacheStore:
    """The SQLite file of one spider's cache: ``await open()``, ``get``/``put``, ``close()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / CACHE_FILE
        self._db: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        #: key -> (stored_at, fresh_until) of every stored response.
        self.index: dict[bytes, tuple[float, float]] = {}

    async def open(self) -> None:
        await trio.to_thread.run_sync(self._open, limiter=self._limiter)

    def _open(self) -> None:
        import sqlite3

        self.directory.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the limiter lets one thread at a time use it.
        try:
            db = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise HttpCacheError(f"the HTTP cache {self.path} cannot be opened: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self.index = {
                key: (stored_at, fresh_until)
                for key, stored_at, fresh_until in db.execute(
                    "SELECT key, stored_at, fresh_until FROM responses"
                )
            }
        except sqlite3.DatabaseError as exc:
            db.close()
            raise HttpCacheError(
                f"the HTTP cache {self.path} cannot be used ({exc}); delete it, or "
                "run `crawl cache clear`"
            ) from None
        self._db = db

    async def get(self, key: bytes) -> CacheEntry | None:
        return await trio.to_thread.run_sync(self._get, key, limiter=self._limiter)

    def _get(self, key: bytes) -> CacheEntry | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT method, url, status, headers, body, coding, stored_at, fresh_until "
            "FROM responses WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        method, url, status, headers, body, coding, stored_at, fresh_until = row
        return CacheEntry(
            method,
            url,
            status,
            [(name, value) for name, value in json.loads(headers)],
            zlib.decompress(body) if coding == _ZLIB else bytes(body),
            stored_at,
            fresh_until,
        )

    async def put(self, key: bytes, entry: CacheEntry) -> None:
        # Indexed first: a request for the same page that comes meanwhile finds it.
        self.index[key] = (entry.stored_at, entry.fresh_until)
        await trio.to_thread.run_sync(self._put, key, entry, limiter=self._limiter)

    def _put(self, key: bytes, entry: CacheEntry) -> None:
        assert self._db is not None
        body, coding = entry.body, _RAW
        if len(body) >= _COMPRESS_MIN:
            packed = zlib.compress(body, _COMPRESS_LEVEL)
            if len(packed) < len(body):
                body, coding = packed, _ZLIB
        # One statement in autocommit mode: one transaction, the row is there whole or not.
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                entry.method,
                entry.url,
                entry.status,
                json.dumps(entry.headers),
                body,
                coding,
                entry.stored_at,
                entry.fresh_until,
            ),
        )

    async def delete(self, key: bytes) -> None:
        self.index.pop(key, None)
        await trio.to_thread.run_sync(self._delete, key, limiter=self._limiter)

    def _delete(self, key: bytes) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM responses WHERE key = ?", (key,))

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await trio.to_thread.run_sync(db.close, limiter=self._limiter)


def cache_size(directory: Path) -> tuple[int, int] | None:
    """(responses stored, bytes on disk) of the cache in ``directory``, or None if there
    is none; read-only, so it may run while a crawl writes."""
    import sqlite3

    path = directory / CACHE_FILE
    if not path.is_file():
        return None
    size = sum(p.stat().st_size for p in directory.glob(CACHE_FILE + "*") if p.is_file())
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            (count,) = db.execute("SELECT count(*) FROM responses").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return int(count), size


def clear_cache(directory: Path) -> int | None:
    """Delete the cache in ``directory`` (its SQLite file and journal); how many responses
    it held, or None if there was none. The directory itself is left."""
    found = cache_size(directory)
    path = directory / CACHE_FILE
    if found is None and not path.exists():
        return None
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(CACHE_FILE + suffix).unlink(missing_ok=True)
    return found[0] if found is not None else 0
