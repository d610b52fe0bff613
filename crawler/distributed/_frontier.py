"""RedisFrontier: the Frontier protocol over a crawl shared through Redis.

The scheduler calls the frontier synchronously, many times per page, while
Redis is a round trip away. So this frontier only keeps buffers, and the
shared crawl's sync task (``_shared``) moves them to and from Redis in batches:

* requests leased from Redis wait here, per host, until the scheduler pops them;
* a request a page yields is not queued here but kept with that page's outcome
  (``PAGE``, set by the worker task handling the page), and so are the page's
  items; when the page is ``done`` its outcome becomes one commit, applied in
  Redis atomically and only while this worker still holds the page's lease;
* requests queued outside any page (start requests) are pushed as they come.

Deduplication is Redis's: the push and commit scripts add each request's
fingerprint to the crawl's seen set and queue it only if it was new. The
local seen cache only spares Redis the links this worker already sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from heapq import heappop, heappush
from itertools import count

from ..frontier._fingerprint import request_fingerprint
from ..frontier.sqlite import decode_request, encode_request
from ..request import Request

__all__ = ["PAGE", "CrawlKeys", "PageOutcome", "RedisFrontier", "decode_stored", "encode_stored"]


class CrawlKeys:
    """The names of one crawl's keys: all under one hash tag, so one cluster slot."""

    __slots__ = ("crawl_id", "prefix", "spider")

    def __init__(self, spider: str, crawl_id: str) -> None:
        for what, value in (("spider name", spider), ("crawl id", crawl_id)):
            if not value or any(c in value for c in "{}\n"):
                raise ValueError(
                    f"{what} {value!r} cannot name a shared crawl (empty, or braces or newlines)"
                )
        self.spider = spider
        self.crawl_id = crawl_id
        self.prefix = f"crawl:{{{spider}/{crawl_id}}}:"

    def __getattr__(self, name: str) -> str:
        # keys.queued, keys.stats...: the prefix and the key's name.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.prefix + name


class PageOutcome:
    """What one page produced: its new requests (fingerprint, stored form) and items (JSON)."""

    __slots__ = ("children", "items")

    def __init__(self) -> None:
        self.children: list[tuple[bytes, str]] = []
        self.items: list[str] = []


#: The page the current worker task is handling (None outside a page's handling).
PAGE: ContextVar[PageOutcome | None] = ContextVar("crawler_page", default=None)

_NO_OUTCOME = PageOutcome()


def encode_stored(request: Request, host: str) -> str:
    """A request as the scripts store it: host and score first, for them to read."""
    return (
        f"{host}\n{-request.priority}\n{request.callback or ''}\n{request.errback or ''}\n"
        f"{encode_request(request)}"
    )


def decode_stored(blob: bytes | str) -> tuple[str, Request]:
    text = blob.decode() if isinstance(blob, bytes) else blob
    host, _score, callback, errback, data = text.split("\n", 4)
    return host, decode_request(callback or None, errback or None, data)


_Entry = tuple[int, int, bytes, Request]


class RedisFrontier:
    """The local side of a shared frontier (see the module's text)."""

    def __init__(self, *, seen_cache_size: int = 100_000) -> None:
        self._queues: dict[str, list[_Entry]] = {}
        self._counter = count()
        self._size = 0
        self._held: dict[Request, bytes] = {}  # popped, being handled: request -> lease id
        self._delayed: dict[Request, bytes] = {}  # retries waiting for their backoff
        self.loose: list[tuple[bytes, str]] = []  # pushes outside any page
        self.commits: list[tuple[bytes, PageOutcome]] = []  # pages done, not yet committed
        self.loose_items: list[str] = []  # items yielded outside any page
        self._seen_young: set[bytes] = set()
        self._seen_old: set[bytes] = set()
        self._raw_young: set[str] = set()
        self._raw_old: set[str] = set()
        self._seen_cache_size = seen_cache_size
        # (url, method, body, fingerprint) of the last new request add_seen saw
        self._last: tuple[str, str, bytes, bytes] | None = None
        #: Set by the sync task once Redis says the whole crawl is over.
        self.finished = False
        #: Called when the sync task has work: a page done, a push, the buffer low.
        self.nudge: Callable[[], None] = _nothing
        self.low_water = 0

    # -- the Frontier protocol ---------------------------------------------------

    def push(self, request: Request, host: str) -> None:
        self.push_here(request, host)

    def push_here(self, request: Request, host: str) -> bool:
        """``push``, saying whether the request stayed in this worker's buffer (a retry
        of a page it holds leased) rather than going to Redis with its page's commit."""
        rid = self._delayed.pop(request, None)
        if rid is not None:  # a retry whose backoff is over: still leased to us
            self._buffer(host, rid, request)
            return True
        last = self._last
        if request.dont_filter:
            fingerprint = b""  # whatever add_seen saw last (a request a filter dropped)
        elif (
            last is not None
            and last[0] == request.url
            and last[1] == request.method
            and last[2] == request.body
        ):
            fingerprint = last[3]
        else:
            fingerprint = request_fingerprint(request.method, request.url, request.body)
        self._last = None
        stored = encode_stored(request, host)
        page = PAGE.get()
        if page is not None:
            page.children.append((fingerprint, stored))
            return False
        # Outside a page (start requests): pushed on its own, deduplicated even when
        # dont_filter, since every worker feeds the same start requests.
        if not fingerprint:
            fingerprint = request_fingerprint(request.method, request.url, request.body)
        self.loose.append((fingerprint, stored))
        self.finished = False
        self.nudge()
        return False

    def add_item(self, line: str) -> None:
        """An item (as a JSON line) for the page being handled, exported with its commit."""
        page = PAGE.get()
        if page is not None:
            page.items.append(line)
        else:
            self.loose_items.append(line)
            self.nudge()

    def check_storable(self, request: Request) -> None:
        """Raise the TypeError ``push`` would raise, before anything is recorded."""
        encode_request(request)

    def pop(self, host: str) -> Request | None:
        queue = self._queues.get(host)
        if not queue:
            return None
        _, _, rid, request = heappop(queue)
        if not queue:
            del self._queues[host]
        self._size -= 1
        self._held[request] = rid
        if self._size <= self.low_water:
            self.nudge()
        return request

    def done(self, request: Request) -> None:
        rid = self._held.pop(request, None)
        if rid is None:
            return  # deferred for a retry: still leased, committed after its last attempt
        self.commits.append((rid, PAGE.get() or _NO_OUTCOME))
        self.nudge()

    def defer(self, request: Request, host: str, delay: float) -> None:
        rid = self._held.pop(request, None)
        if rid is not None:
            self._delayed[request] = rid

    def pending(self, host: str) -> int:
        queue = self._queues.get(host)
        return len(queue) if queue else 0

    def hosts(self) -> Iterable[str]:
        return list(self._queues)

    def add_seen(self, method: str, url: str, body: bytes = b"") -> bool:
        plain = method == "GET" and not body
        if plain and (url in self._raw_young or url in self._raw_old):
            return False
        fingerprint = request_fingerprint(method, url, body)
        if fingerprint in self._seen_young or fingerprint in self._seen_old:
            return False
        young = self._seen_young
        if len(young) >= self._seen_cache_size:
            self._seen_old = young
            young = self._seen_young = set()
        young.add(fingerprint)
        if plain:
            raw = self._raw_young
            if len(raw) >= self._seen_cache_size:
                self._raw_old = raw
                raw = self._raw_young = set()
            raw.add(url)
        # push() reuses it: the scheduler pushes right after a new URL passed its filters.
        self._last = (url, method, body, fingerprint)
        return True

    def __len__(self) -> int:
        # Not finished: something may still come from Redis, so the crawl is not over.
        if self.finished and not self.loose and not self.commits and not self.loose_items:
            return self._size
        return self._size + 1

    def close(self) -> None:
        self._queues.clear()
        self._size = 0

    # -- for the sync task ------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._size

    def add_leased(self, pairs: list[bytes]) -> set[str]:
        """Buffer the (id, stored request) pairs of a lease reply; the hosts they are for."""
        hosts: set[str] = set()
        for i in range(0, len(pairs), 2):
            host, request = decode_stored(pairs[i + 1])
            self._buffer(host, pairs[i], request)
            hosts.add(host)
        return hosts

    def _buffer(self, host: str, rid: bytes, request: Request) -> None:
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        heappush(queue, (-request.priority, next(self._counter), rid, request))
        self._size += 1

    def drop_buffered(self) -> int:
        """Forget the leased requests not started yet (their leases are gone); how many."""
        dropped = self._size
        self._queues.clear()
        self._size = 0
        return dropped

    def lease_ids(self) -> list[bytes]:
        """Every lease this worker holds: buffered, being handled, waiting to retry or
        to be committed."""
        ids = [entry[2] for queue in self._queues.values() for entry in queue]
        ids.extend(self._held.values())
        ids.extend(self._delayed.values())
        ids.extend(rid for rid, _ in self.commits)
        return ids

    def idle(self) -> bool:
        """Nothing here: no buffered, handled, retrying or uncommitted request, no push."""
        return not (
            self._size
            or self._held
            or self._delayed
            or self.loose
            or self.commits
            or self.loose_items
        )


def _nothing() -> None:
    pass
