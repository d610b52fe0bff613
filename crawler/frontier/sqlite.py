"""SqliteFrontier: queued requests and the seen set on disk, with a bounded cache in memory.

Every queued request is a row of ``requests``; every fingerprint a row of
``seen``. Rows are written in batches into one long SQLite transaction that
the job commits at each checkpoint (``freeze`` / ``commit`` / ``thaw``), so
the file always holds the state of the last checkpoint and nothing else: a
crash rolls back to it by itself.

A request handed out by ``pop`` keeps its row until ``done`` (a lease): if
the process dies meanwhile, the row is still there and the request is
pending again on resume. A retry waiting for its backoff keeps its row too,
with the wall-clock time before which it may not be sent.

Memory stays flat however long the crawl: at most ``cache_size`` requests are
kept as objects (per host, the first ones in queue order); the rest live only
on disk and are read back a batch at a time when their host's cache runs
dry. The seen set keeps recent fingerprints (and recent raw URLs, which
answer most duplicate links without hashing) and asks the disk otherwise.

Within a host, priority (higher first) then FIFO holds exactly while the
host's requests fit in the cache; once some are on disk, a request of higher
priority than everything on disk still goes ahead of them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from heapq import heappop, heappush
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..request import Request
from ._fingerprint import request_fingerprint

if TYPE_CHECKING:
    # Imported where a store is opened: a crawl without a job never loads sqlite3.
    import sqlite3

__all__ = ["FORMAT_VERSION", "SqliteFrontier"]

log = logging.getLogger("crawler.frontier")

#: Version of the store's layout; a store with a higher one is refused, an older one
#: migrated (``migrate``). 2: the engine's state of a request is in fields of its own
#: record, no longer in keys of its ``meta``.
FORMAT_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    nprio INTEGER NOT NULL,
    callback TEXT,
    errback TEXT,
    not_before REAL NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_queue ON requests (host, nprio, id);
CREATE INDEX IF NOT EXISTS requests_deferred ON requests (not_before) WHERE not_before > 0;
CREATE TABLE IF NOT EXISTS seen (fp BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, done INTEGER NOT NULL) WITHOUT ROWID;
"""

_FIRST_KEY = (-(2**63), 0)
_BATCH = 1024
_MIGRATE_BATCH = 10_000
_REFILL = 512

_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_decode_json = json.JSONDecoder().decode


# The engine's boolean fields of a request, stored as one number.
_DONT_RETRY = 1
_DONT_REDIRECT = 2
_RETRY_ANY_METHOD = 4
_CROSS_ORIGIN_REDIRECT = 8


def _flags(request: Request) -> int:
    return (
        (_DONT_RETRY if request.dont_retry else 0)
        | (_DONT_REDIRECT if request.dont_redirect else 0)
        | (_RETRY_ANY_METHOD if request.retry_any_method else 0)
        | (_CROSS_ORIGIN_REDIRECT if request.cross_origin_redirect else 0)
    )


def encode_request(request: Request) -> str:
    """The request's fields but the callbacks (stored in columns) as compact JSON."""
    accepted = request.accept_statuses
    # Optional fields go last, in this order, and only as far as one is set: records
    # without them keep format 2's shape, and older records decode unchanged.
    tail: tuple[Any, ...] = ()
    cb_kwargs = request._cb_kwargs  # None when empty: reading it makes no dict
    if request.cookies is not None:
        tail = (cb_kwargs or {}, request.proxy, request.cookies)
    elif request.proxy is not None:
        tail = (cb_kwargs or {}, request.proxy)
    elif cb_kwargs:
        tail = (cb_kwargs,)
    try:
        return _encode_json(
            [
                request.url,
                request.method,
                request.headers,
                request.body.decode("latin-1") if request.body else "",
                request.priority,
                request._meta or {},
                request.dont_filter,
                request.session,
                request.depth,
                request.retries,
                request.redirects,
                _flags(request),
                # An empty tuple is a constant: the common case builds no list.
                (accepted if isinstance(accepted, str) else sorted(accepted)) if accepted else (),
                *tail,
            ]
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot store {request!r} in the job directory: its meta and cb_kwargs must "
            "be JSON data "
            f"(strings, numbers, lists, dicts): {exc}"
        ) from exc


def decode_request(callback: str | None, errback: str | None, data: str) -> Request:
    (
        url,
        method,
        headers,
        body,
        priority,
        meta,
        dont_filter,
        session,
        depth,
        retries,
        redirects,
        flags,
        accepted,
        *rest,
    ) = _decode_json(data)
    request = Request(
        url,
        callback,
        method,
        headers,
        body.encode("latin-1") if body else None,
        priority=priority,
        meta=meta,
        dont_filter=dont_filter,
        session=session,
        errback=errback,
        depth=depth,
        dont_retry=bool(flags & _DONT_RETRY),
        dont_redirect=bool(flags & _DONT_REDIRECT),
        accept_statuses=accepted,
        retry_any_method=bool(flags & _RETRY_ANY_METHOD),
        cb_kwargs=rest[0] or None if rest else None,
        proxy=rest[1] if len(rest) > 1 else None,
        cookies=rest[2] if len(rest) > 2 else None,
    )
    request.retries = retries
    request.redirects = redirects
    request.cross_origin_redirect = bool(flags & _CROSS_ORIGIN_REDIRECT)
    return request


# -- older formats ------------------------------------------------------------------

# Format 1 kept the engine's state of a request in these keys of its meta.
_V1_FLAGS = {
    "dont_retry": _DONT_RETRY,
    "dont_redirect": _DONT_REDIRECT,
    "retry": _RETRY_ANY_METHOD,
    "cross_origin_redirect": _CROSS_ORIGIN_REDIRECT,
}


def _upgrade_v1(data: str) -> str:
    """A format-1 record as format 2: the engine's meta keys moved into their fields."""
    url, method, headers, body, priority, meta, dont_filter, session, depth = _decode_json(data)
    meta = dict(meta or {})
    retries = int(meta.pop("retry_times", 0) or 0)
    redirects = int(meta.pop("redirect_times", 0) or 0)
    flags = 0
    for key, flag in _V1_FLAGS.items():
        if meta.pop(key, False):
            flags |= flag
    accepted: list[int] | str = "all" if meta.pop("handle_httpstatus_all", False) else []
    return _encode_json(
        [
            url,
            method,
            headers,
            body,
            priority,
            meta,
            dont_filter,
            session,
            depth,
            retries,
            redirects,
            flags,
            accepted,
        ]
    )


def migrate(db: sqlite3.Connection, version: int) -> int:
    """Rewrite a store of an older ``version`` to FORMAT_VERSION in one transaction
    (all or nothing: a crash midway leaves the old store); how many requests changed."""
    if version != 1:
        raise ValueError(f"no migration from store format {version} to {FORMAT_VERSION}")
    changed = 0
    last = -(2**63)
    db.execute("BEGIN IMMEDIATE")
    try:
        while True:  # a batch at a time: a store may hold millions of requests
            rows = db.execute(
                "SELECT id, data FROM requests WHERE id > ? AND data != '' ORDER BY id LIMIT ?",
                (last, _MIGRATE_BATCH),
            ).fetchall()
            if not rows:
                break
            db.executemany(
                "UPDATE requests SET data = ? WHERE id = ?",
                [(_upgrade_v1(data), rid) for rid, data in rows],
            )
            changed += len(rows)
            last = rows[-1][0]
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('format', ?)", (str(FORMAT_VERSION),)
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return changed


class _Bloom:
    """Fingerprints known to be seen, as a Bloom filter of fixed size (8 MiB).

    Nearly every new URL is answered "not seen" here, without asking the disk.
    "Maybe" goes to the caches and the disk, so a false positive costs a lookup,
    never a wrong answer; the size is fixed, so memory stays flat (at 1 million
    fingerprints 1 lookup in 12,000 is a false positive, at 10 million 1 in 20).
    Fingerprints are uniform digests: their bytes are the hash functions.
    """

    __slots__ = ("bits",)

    SIZE = 1 << 23
    _MASK = (1 << 26) - 1

    def __init__(self) -> None:
        self.bits = bytearray(self.SIZE)

    def __contains__(self, fingerprint: bytes) -> bool:
        bits, mask = self.bits, self._MASK
        x = int.from_bytes(fingerprint[:12], "little")
        a = x & mask
        if not bits[a >> 3] & (1 << (a & 7)):
            return False
        b = (x >> 32) & mask
        if not bits[b >> 3] & (1 << (b & 7)):
            return False
        c = (x >> 64) & mask
        return bool(bits[c >> 3] & (1 << (c & 7)))

    def add(self, fingerprint: bytes) -> None:
        bits, mask = self.bits, self._MASK
        x = int.from_bytes(fingerprint[:12], "little")
        a = x & mask
        bits[a >> 3] |= 1 << (a & 7)
        b = (x >> 32) & mask
        bits[b >> 3] |= 1 << (b & 7)
        c = (x >> 64) & mask
        bits[c >> 3] |= 1 << (c & 7)

    def load(self, fingerprints: Iterable[bytes]) -> None:
        bits, mask = self.bits, self._MASK
        from_bytes = int.from_bytes
        for fingerprint in fingerprints:
            x = from_bytes(fingerprint[:12], "little")
            a = x & mask
            bits[a >> 3] |= 1 << (a & 7)
            b = (x >> 32) & mask
            bits[b >> 3] |= 1 << (b & 7)
            c = (x >> 64) & mask
            bits[c >> 3] |= 1 << (c & 7)


class _Queue:
    """One host's queue: the cached head (a heap) and how many rows wait on disk only."""

    __slots__ = ("heap", "spill_key", "spilled")

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, Request]] = []
        self.spilled = 0
        # Every disk-only row sorts at or after this (nprio, id) key.
        self.spill_key: tuple[int, int] = _FIRST_KEY


def connect(path: Path) -> sqlite3.Connection:
    """A read-write connection in WAL mode; transactions are begun and committed explicitly."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives a power cut, not only a killed process.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA cache_size=-16384")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


class SqliteFrontier:
    """A durable Frontier in ``path`` (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        cache_size: int = 20_000,
        seen_cache_size: int = 100_000,
        raw_cache_size: int = 50_000,
    ) -> None:
        self.path = path
        self._db = connect(path)
        # The checkpoint commits from a worker thread: every use of the connection holds this.
        self._lock = threading.Lock()
        self._in_txn = False
        self._frozen = False
        self._cache_size = cache_size
        self._cached = 0
        self._queues: dict[str, _Queue] = {}
        self._size = 0
        self._held: dict[Request, int] = {}  # handed out by pop, not yet done
        self._delayed: dict[Request, int] = {}  # retries waiting for their backoff
        self._held_ids: set[int] = set()
        self._ins: list[tuple[Any, ...]] = []
        self._upd: list[tuple[Any, ...]] = []
        self._del: list[tuple[int]] = []
        self._seen_new: set[bytes] = set()
        self._seen_young: set[bytes] = set()
        self._seen_old: set[bytes] = set()
        self._seen_cache_size = seen_cache_size
        self._raw_young: set[str] = set()
        self._raw_old: set[str] = set()
        self._raw_cache_size = raw_cache_size
        self._seen_check = self._db.cursor()
        self._bloom = _Bloom()
        self._load()
        # A transaction is always open: lookups run inside it instead of paying for a
        # read transaction each, and it is what the next checkpoint commits.
        self._begin()

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._in_txn = True

    def _load(self) -> None:
        db = self._db
        self._load_bloom()
        (top,) = db.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()
        self._next_id = int(top) + 1
        deferred: dict[str, int] = {}
        for (host,) in db.execute("SELECT host FROM requests WHERE not_before > 0"):
            deferred[host] = deferred.get(host, 0) + 1
        for host, count in db.execute("SELECT host, count(*) FROM requests GROUP BY host"):
            waiting = count - deferred.get(host, 0)
            if waiting > 0:
                queue = self._queues[host] = _Queue()
                queue.spilled = waiting
                self._size += waiting

    def _bloom_path(self) -> Path:
        return self.path.with_name(self.path.name + ".bloom")

    def _seen_count(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM seen").fetchone()
        return int(count)

    def _load_bloom(self) -> None:
        """Read the filter saved at the last close if it still matches the seen set,
        else rebuild it from the table (after a crash: about 1 s per million)."""
        path = self._bloom_path()
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        # Fingerprints are only ever added, so their count tells whether the seen set
        # changed since the filter was saved.
        if len(data) == 8 + _Bloom.SIZE and int.from_bytes(data[:8], "little") == (
            self._seen_count()
        ):
            self._bloom.bits[:] = data[8:]
            return
        self._bloom.load(fp for (fp,) in self._db.execute("SELECT fp FROM seen"))

    def _save_bloom(self) -> None:
        """Keep the filter for the next run: it holds every committed fingerprint (and
        perhaps some rolled back, which only costs a lookup)."""
        import sqlite3

        path = self._bloom_path()
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(self._seen_count().to_bytes(8, "little"))
                f.write(self._bloom.bits)
            tmp.replace(path)
        except (OSError, sqlite3.Error) as exc:
            log.warning("%s: could not save the seen filter (it is rebuilt): %s", path, exc)

    # -- the Frontier protocol ---------------------------------------------------

    def push(self, request: Request, host: str) -> None:
        rid = self._delayed.pop(request, None)
        data = encode_request(request) if rid is None else ""
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = _Queue()
        nprio = -request.priority
        if rid is not None:  # a retry whose backoff is over: its row is already there
            self._held_ids.discard(rid)
            heappush(queue.heap, (nprio, rid, request))
            self._cached += 1
        else:
            rid = self._next_id
            self._next_id = rid + 1
            self._ins.append((rid, host, nprio, request.callback, request.errback, data))
            key = (nprio, rid)
            if self._frozen:
                # Nothing reaches the disk until the commit is over, so a refill could
                # not find this row there: keep it in memory.
                cache = True
            elif queue.spilled:
                cache = key < queue.spill_key
            else:
                cache = self._cached < self._cache_size
                if not cache:
                    queue.spill_key = key
            if cache:
                heappush(queue.heap, (nprio, rid, request))
                self._cached += 1
            else:
                queue.spilled += 1
            if len(self._ins) >= _BATCH:
                self._flush()
        self._size += 1

    def check_storable(self, request: Request) -> None:
        """Raise the TypeError ``push`` would raise for ``request``, before anything is recorded."""
        encode_request(request)

    def pop(self, host: str) -> Request | None:
        queue = self._queues.get(host)
        if queue is None:
            return None
        if not queue.heap:
            if queue.spilled:
                self._refill(host, queue)
            if not queue.heap:
                return None
        _, rid, request = heappop(queue.heap)
        self._cached -= 1
        self._size -= 1
        self._held[request] = rid
        self._held_ids.add(rid)
        if not queue.heap and not queue.spilled:
            del self._queues[host]
        return request

    def done(self, request: Request) -> None:
        rid = self._held.pop(request, None)
        if rid is not None:
            self._held_ids.discard(rid)
            self._del.append((rid,))
            if len(self._del) >= _BATCH:
                self._flush()

    def defer(self, request: Request, host: str, delay: float) -> None:
        not_before = time.time() + max(delay, 0.0)
        data = encode_request(request)
        rid = self._held.pop(request, None)
        if rid is None:
            rid = self._delayed.get(request)
        if rid is None:
            rid = self._next_id
            self._next_id = rid + 1
            self._ins.append((rid, host, -request.priority, request.callback, request.errback, ""))
        self._upd.append((not_before, data, rid))
        self._delayed[request] = rid
        self._held_ids.add(rid)

    def head_priority(self, host: str) -> int:
        """The priority of ``host``'s next request; with its cache empty, the highest any of
        its rows on disk may have (a bound: the scheduler only orders hosts by it)."""
        queue = self._queues.get(host)
        if queue is None:
            return 0
        if queue.heap:
            return -queue.heap[0][0]
        return -queue.spill_key[0] if queue.spilled else 0

    def pending(self, host: str) -> int:
        queue = self._queues.get(host)
        return len(queue.heap) + queue.spilled if queue is not None else 0

    def hosts(self) -> Iterable[str]:
        return list(self._queues)

    def add_seen(self, method: str, url: str, body: bytes = b"") -> bool:
        if method == "GET" and not body:
            if url in self._raw_young or url in self._raw_old:
                return False
            fingerprint = request_fingerprint(method, url, body)
            raw = self._raw_young
            if len(raw) >= self._raw_cache_size:
                self._raw_old = raw
                raw = self._raw_young = set()
            raw.add(url)
        else:
            fingerprint = request_fingerprint(method, url, body)
        bloom = self._bloom
        if fingerprint in bloom:
            # Maybe seen: the caches, then the disk, know for sure.
            if (
                fingerprint in self._seen_young
                or fingerprint in self._seen_old
                or fingerprint in self._seen_new
            ):
                return False
            with self._lock:
                found = self._seen_check.execute(
                    "SELECT 1 FROM seen WHERE fp = ?", (fingerprint,)
                ).fetchone()
            if found is not None:
                young = self._seen_young
                if len(young) >= self._seen_cache_size:
                    self._seen_old = young
                    young = self._seen_young = set()
                young.add(fingerprint)
                return False
            # A false positive of the filter: new after all.
        else:
            bloom.add(fingerprint)
        young = self._seen_young
        if len(young) >= self._seen_cache_size:
            self._seen_old = young
            young = self._seen_young = set()
        young.add(fingerprint)
        self._seen_new.add(fingerprint)
        if len(self._seen_new) >= _BATCH:
            self._flush()
        return True

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        """Roll back what no checkpoint committed and close; a clean store is one file."""
        import sqlite3

        with self._lock:
            db = self._db
            try:
                if self._in_txn:
                    db.execute("ROLLBACK")
                    self._in_txn = False
                self._save_bloom()
                # Back to a rollback journal: the -wal and -shm files go away, so the
                # directory of a stopped job can be read without creating anything.
                db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error as exc:
                log.warning("%s: closing the job store: %s", self.path, exc)
            finally:
                db.close()
        self._queues.clear()
        self._held.clear()
        self._delayed.clear()

    # -- resuming -----------------------------------------------------------------

    def take_deferred(self) -> list[tuple[Request, str, float]]:
        """Retries that were waiting for their backoff when the job stopped:
        (request, host, seconds still to wait). The caller schedules them again."""
        now = time.time()
        out = []
        with self._lock:
            rows = self._db.execute(
                "SELECT id, host, callback, errback, not_before, data FROM requests "
                "WHERE not_before > 0 ORDER BY not_before"
            ).fetchall()
        for rid, host, callback, errback, not_before, data in rows:
            request = decode_request(callback, errback, data)
            self._delayed[request] = rid
            self._held_ids.add(rid)
            out.append((request, host, max(0.0, not_before - now)))
        return out

    def callback_names(self) -> set[str]:
        return callback_names(self._db)

    # -- checkpoints ----------------------------------------------------------------

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self._in_txn:
                self._db.execute("BEGIN IMMEDIATE")
                self._in_txn = True
            yield self._db

    def _flush(self) -> None:
        """Write the batched changes into the open transaction (never while frozen)."""
        if self._frozen or not (self._ins or self._upd or self._del or self._seen_new):
            return
        with self._txn() as db:
            if self._ins:
                db.executemany(
                    "INSERT INTO requests (id, host, nprio, callback, errback, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    self._ins,
                )
                self._ins = []
            if self._upd:
                db.executemany(
                    "UPDATE requests SET not_before = ?, data = ? WHERE id = ?", self._upd
                )
                self._upd = []
            if self._del:
                db.executemany("DELETE FROM requests WHERE id = ?", self._del)
                self._del = []
            if self._seen_new:
                db.executemany("INSERT OR IGNORE INTO seen (fp) VALUES (?)", _rows(self._seen_new))
                self._seen_new = set()

    def _refill(self, host: str, queue: _Queue) -> None:
        """Read the next disk-only rows of ``host`` into its cache."""
        self._flush()
        nprio, rid = queue.spill_key
        with self._lock:
            rows = self._db.execute(
                "SELECT id, nprio, callback, errback, data FROM requests "
                "WHERE host = ? AND (nprio, id) >= (?, ?) AND not_before = 0 "
                "ORDER BY nprio, id LIMIT ?",
                (host, nprio, rid, _REFILL + len(self._held_ids)),
            ).fetchall()
        held = self._held_ids
        loaded = 0
        for row_id, row_nprio, callback, errback, data in rows:
            queue.spill_key = (row_nprio, row_id + 1)
            if row_id in held or (self._frozen and (row_id,) in self._del):
                continue
            heappush(queue.heap, (row_nprio, row_id, decode_request(callback, errback, data)))
            loaded += 1
            if loaded >= _REFILL:
                break
        self._cached += loaded
        if loaded == 0 or not rows:
            if queue.spilled:
                log.error(
                    "%s: %d requests of %s were expected on disk and are not there",
                    self.path,
                    queue.spilled,
                    host,
                )
                self._size -= queue.spilled
            queue.spilled = 0
        else:
            queue.spilled = max(0, queue.spilled - loaded)

    def freeze(self, meta: Mapping[str, str], host_done: Mapping[str, int]) -> None:
        """Write every batched change and ``meta`` into the transaction and stop writing:
        what the next ``commit`` makes durable is the state as of now."""
        self._flush()
        with self._txn() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())
            )
            if host_done:
                db.executemany(
                    "INSERT INTO hosts (host, done) VALUES (?, ?) "
                    "ON CONFLICT (host) DO UPDATE SET done = done + excluded.done",
                    list(host_done.items()),
                )
        self._frozen = True

    def set_meta(self, meta: Mapping[str, str]) -> None:
        """Stage ``meta`` in the open transaction (committed with the next checkpoint)."""
        with self._txn() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())
            )

    def commit(self) -> None:
        """Commit the frozen transaction (blocking: the caller runs it in a worker thread)."""
        with self._lock:
            if self._in_txn:
                self._db.execute("COMMIT")
                self._in_txn = False
            self._begin()

    def thaw(self) -> None:
        self._frozen = False


def _rows(fingerprints: set[bytes]) -> Iterator[tuple[bytes]]:
    for fingerprint in fingerprints:
        yield (fingerprint,)


def callback_names(db: sqlite3.Connection) -> set[str]:
    """Every callback and errback name the queued requests refer to."""
    names: set[str] = set()
    for column in ("callback", "errback"):
        names.update(
            name for (name,) in db.execute(f"SELECT DISTINCT {column} FROM requests") if name
        )
    return names


def read_meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM meta"))
