"""The development HTTP cache: run a spider again without asking the site again.

``HttpCache`` sits where a crawl middleware sits, with the same two methods:
``process_request(request, spider)`` answers from the cache (a Response: the
fetch is skipped) or lets the request go (None), and
``process_response(request, response, spider)`` stores what came back. The
engine calls them around the exchange (``_fetch``); a hit costs no
politeness turn, no connection and no request to the site, but goes through
redirects, callbacks, dedup and depth like any response.

Two policies:

* ``dev``: every response is stored (but the ignored status codes) and
  replayed until ``http_cache_expiration``, whatever its headers say: the
  site is asked once per page while a spider is written and rerun.
* ``rfc9111``: a private cache as RFC 9111 describes one: Cache-Control
  (max-age, no-store, no-cache; must-revalidate and private are what it does
  anyway), Expires, and heuristic freshness from Last-Modified (§4.2.2); a
  stale response is revalidated with If-None-Match / If-Modified-Since, and a
  304 refreshes it and replays it.

The key is the request fingerprint (method, canonical URL, body). Cookies and
other headers are not part of it: in ``dev`` mode a page fetched while logged
in is replayed to a run that is not, which is what a development loop wants.
Requests a spider's session sends itself (its login: the form, the POST of
the credentials, the redirect after it) do not pass the engine's exchange;
in ``dev`` mode ``SessionCacheTransport``, under the session's client, keeps
and replays them too, as they came over the wire (Set-Cookie included, so the
session's jar ends up with the same cookies). They are keyed apart from the
crawl's pages, by method, URL and a hash of the body: the credentials a login
POST carries never reach the cache file, only their digest does. ``rfc9111``
mode leaves them alone, as RFC 9111 stores no answer to a POST.
See docs/http-cache.md.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._paths import for_spider
from .._redact import redact_url
from ..frontier._fingerprint import request_fingerprint
from ..http import URL, ByteStream, Transport
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse
from ..request import Request
from ._cache_store import CacheEntry, CacheStore, HttpCacheError

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "CACHE_POLICIES",
    "CACHE_STATS",
    "HttpCache",
    "HttpCacheError",
    "SessionCacheTransport",
]

log = logging.getLogger("crawler.engine")

CACHE_POLICIES = ("dev", "rfc9111")
#: The counters the cache keeps, each reported as ``httpcache/NAME``.
CACHE_STATS = ("hit", "miss", "store", "revalidate", "uncacheable")
#: Where a replayed response says it came from: ``response.extensions[CACHE_EXTENSION]``.
CACHE_EXTENSION = "http_cache"

# Keys of the exchanges a session sends itself start with this: stored as they came
# over the wire (still encoded), they must never answer a crawl request of the same URL.
_SESSION_KEY = b"session:"
# Hop-by-hop headers: not part of a response replayed as it came over the wire.
_HOP_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive"})
# Headers that describe the bytes on the wire, not the stored (decoded) body.
_WIRE_HEADERS = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)
_CONDITIONALS = ("if-none-match", "if-modified-since")
# RFC 9110 §15.1: statuses a cache may store and give a heuristic freshness to.
_HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# RFC 9111 §4.2.2: a typical heuristic is 10% of the time since Last-Modified.
_HEURISTIC_FRACTION = 0.1


def cache_dir(settings: Settings, spider_name: str) -> Path:
    """The cache directory of ``spider_name``: ``http_cache_dir`` with ``{spider}`` filled
    in, relative to the project directory."""
    return settings.project_dir / for_spider(settings.http_cache_dir, spider_name).expanduser()


class HttpCache:
    """A crawl middleware that answers requests from an SQLite cache (see the module).

    ``clock`` gives Unix time (``time.time``); tests pass their own to age entries.
    """

    def __init__(
        self,
        directory: Path,
        *,
        policy: str = "dev",
        expiration: float = 0.0,
        ignore_http_codes: Iterable[int] = (),
        counters: Counter[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if policy not in CACHE_POLICIES:
            raise ValueError(f"http_cache_policy must be one of {CACHE_POLICIES}, not {policy!r}")
        self.store = CacheStore(directory)
        self.rfc = policy == "rfc9111"
        self.expiration = expiration
        self.ignore_http_codes = frozenset(ignore_http_codes)
        self.counters: Counter[str] = Counter()
        self.report_to(counters if counters is not None else Counter())
        self._clock = clock
        # id(request) -> (key, header names added) of conditional requests in flight.
        self._revalidating: dict[int, tuple[bytes, list[str]]] = {}
        # Keys of the session exchanges (logins) replayed or stored in this run.
        self._session_keys: set[bytes] = set()

    @classmethod
    def from_settings(
        cls, settings: Settings, spider_name: str, counters: Counter[str]
    ) -> HttpCache | None:
        """The cache the settings ask for, or None with ``http_cache = false``."""
        if not settings.http_cache:
            return None
        return cls(
            cache_dir(settings, spider_name),
            policy=settings.http_cache_policy,
            expiration=settings.http_cache_expiration,
            ignore_http_codes=settings.http_cache_ignore_http_codes,
            counters=counters,
        )

    def report_to(self, counters: Counter[str]) -> None:
        """Count hits, misses... in ``counters`` (a crawl's stats), zeros included."""
        self.counters = counters
        for name in CACHE_STATS:
            counters[name] += 0

    async def open(self) -> None:
        await self.store.open()

    async def aclose(self) -> None:
        await self.store.aclose()

    # -- deciding -----------------------------------------------------------------

    def _passes(self, request: Request) -> bool:
        """Requests the cache leaves alone: those with validators of their own (the
        spider revalidates them itself) and those with ``Cache-Control: no-store``
        (a spider's way to keep one request out of the cache)."""
        headers = request.headers
        if not headers:
            return False
        lowered = {name.lower(): value for name, value in headers.items()}
        if any(name in lowered for name in _CONDITIONALS):
            return True
        return "no-store" in _directives(lowered.get("cache-control"))

    def _usable(self, key: bytes, now: float) -> tuple[float, float] | None:
        """(stored_at, fresh_until) of a stored response not past ``http_cache_expiration``."""
        found = self.store.index.get(key)
        if found is None:
            return None
        if self.expiration and now - found[0] >= self.expiration:
            return None
        return found

    def _fresh(self, request: Request, fresh_until: float, now: float) -> bool:
        if not self.rfc:
            return True
        if now >= fresh_until:
            return False
        headers = request.headers
        if headers:
            for name, value in headers.items():
                if name.lower() == "cache-control" and "no-cache" in _directives(value):
                    return False
        return True

    def answers(self, request: Request) -> bool:
        """Whether ``request`` will be answered from the cache without the network.

        Asked by the scheduler, without I/O, before it books a politeness turn
        for the request's host: a hit takes none.
        """
        if self._passes(request):
            return False
        now = self._clock()
        found = self._usable(_key(request), now)
        return found is not None and self._fresh(request, found[1], now)

    # -- the middleware -------------------------------------------------------------

    async def process_request(self, request: Request, spider: Any) -> HTTPResponse | None:
        """The stored response when it may be used as it is; None sends the request
        (with validators added when a stale one can be revalidated)."""
        self.abandon(request)
        if self._passes(request):
            return None
        now = self._clock()
        key = _key(request)
        found = self._usable(key, now)
        if found is None:
            return None
        entry = await self._get(key)
        if entry is None:
            return None
        if self._fresh(request, found[1], now):
            self.counters["hit"] += 1
            return _replay(entry, request)
        self._add_validators(request, key, entry)
        return None

    async def process_response(
        self, request: Request, response: HTTPResponse, spider: Any
    ) -> HTTPResponse:
        """Store ``response`` if the policy allows; a 304 to a revalidation gives the
        stored response back, refreshed."""
        pending = self._revalidating.pop(id(request), None)
        if pending is not None:
            _drop_headers(request, pending[1])
            if response.status_code == 304:
                refreshed = await self._refresh(request, pending[0], response)
                if refreshed is not None:
                    return refreshed
        elif self._passes(request):
            return response
        counters = self.counters
        counters["miss"] += 1
        if not self._storable(request, response):
            counters["uncacheable"] += 1
            return response
        await self._put(_key(request), _entry(request, response, self._clock()))
        counters["store"] += 1
        return response

    async def discard(self, request: Request) -> None:
        """Forget the stored response to ``request`` (a logged-out page, say), so that
        the next time it is asked for it is fetched."""
        import sqlite3  # loaded by the store already: a dictionary lookup

        self.abandon(request)
        key = _key(request)
        if key not in self.store.index:
            return
        try:
            await self.store.delete(key)
        except sqlite3.Error as exc:
            log.warning("HTTP cache %s: cannot delete %s: %s", self.store.path, request.url, exc)

    def abandon(self, request: Request) -> None:
        """Take back the validators added to ``request`` when its exchange failed, so a
        retry (or a job that stores it) does not carry them."""
        pending = self._revalidating.pop(id(request), None)
        if pending is not None:
            _drop_headers(request, pending[1])

    # -- helpers -----------------------------------------------------------------------

    def _add_validators(self, request: Request, key: bytes, entry: CacheEntry) -> None:
        etag = last_modified = None
        for name, value in entry.headers:
            lowered = name.lower()
            if lowered == "etag":
                etag = value
            elif lowered == "last-modified":
                last_modified = value
        added: dict[str, str] = {}
        if etag is not None:
            added["If-None-Match"] = etag
        if last_modified is not None:
            added["If-Modified-Since"] = last_modified
        if not added:
            return  # nothing to revalidate with: fetched again in full
        request.headers = {**(request.headers or {}), **added}
        self._revalidating[id(request)] = (key, list(added))

    async def _refresh(
        self, request: Request, key: bytes, response: HTTPResponse
    ) -> HTTPResponse | None:
        """RFC 9111 §4.3.4: the 304's headers update the stored ones; the stored body stays."""
        entry = await self._get(key)
        if entry is None:
            return None
        updates = {
            name.lower(): value
            for name, value in response.headers.multi_items()
            if name.lower() not in _WIRE_HEADERS
        }
        headers = [(n, v) for n, v in entry.headers if n.lower() not in updates]
        headers += [(n, v) for n, v in response.headers.multi_items() if n.lower() in updates]
        now = self._clock()
        refreshed = CacheEntry(
            entry.method,
            entry.url,
            entry.status,
            headers,
            entry.body,
            now,
            fresh_until(entry.status, headers, now),
        )
        await self._put(key, refreshed)
        self.counters["revalidate"] += 1
        return _replay(refreshed, request)

    def _storable(self, request: Request, response: HTTPResponse) -> bool:
        status = response.status_code
        if status in self.ignore_http_codes or status == 304 or status == 206:
            return False
        if not self.rfc:
            return True
        if request.method not in ("GET", "HEAD"):
            return False
        directives = _directives(response.headers.get("cache-control"))
        if "no-store" in directives:
            return False
        return (
            status in _HEURISTIC_STATUSES
            or "max-age" in directives
            or "public" in directives
            or "private" in directives
            or "expires" in response.headers
        )

    async def exchange_session(self, request: HTTPRequest, inner: Transport) -> HTTPResponse:
        """A request a session sends itself (``dev`` mode): the stored wire response, or
        ``inner``'s, stored before it goes up to the session's cookies and redirects."""
        key = _session_key(request)
        self._session_keys.add(key)
        counters = self.counters
        if self._usable(key, self._clock()) is not None:
            entry = await self._get(key)
            if entry is not None:
                counters["hit"] += 1
                return HTTPResponse(
                    entry.status,
                    headers=entry.headers,
                    stream=ByteStream(entry.body),
                    request=request,
                    extensions={CACHE_EXTENSION: True},
                )
        response = await inner.handle_request(request)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _HOP_HEADERS
        ]
        status = response.status_code
        counters["miss"] += 1
        if status in self.ignore_http_codes or status == 304 or status == 206:
            counters["uncacheable"] += 1
        else:
            now = self._clock()
            entry = CacheEntry(request.method, str(request.url), status, headers, body, now, now)
            await self._put(key, entry)
            counters["store"] += 1
        return HTTPResponse(
            status,
            headers=headers,
            stream=ByteStream(body),
            request=request,
            http_version=response.http_version,
            extensions=response.extensions,
        )

    async def forget_logins(self) -> None:
        """A page came back logged out under the login this run replayed or stored: that
        login is stale (its cookie expired, say), so it is deleted, and the re-login that
        follows reaches the site (and is stored in its place)."""
        import sqlite3  # loaded by the store already: a dictionary lookup

        keys, self._session_keys = self._session_keys, set()
        for key in keys:
            if key in self.store.index:
                try:
                    await self.store.delete(key)
                except sqlite3.Error as exc:
                    log.warning("HTTP cache %s: cannot delete a login: %s", self.store.path, exc)

    async def _get(self, key: bytes) -> CacheEntry | None:
        import sqlite3  # loaded by the store already: a dictionary lookup

        try:
            return await self.store.get(key)
        except (sqlite3.Error, ValueError) as exc:  # a damaged row: fetched again
            log.warning("HTTP cache %s: cannot read an entry: %s", self.store.path, exc)
            return None

    async def _put(self, key: bytes, entry: CacheEntry) -> None:
        import sqlite3  # loaded by the store already: a dictionary lookup

        try:
            await self.store.put(key, entry)
        except sqlite3.Error as exc:  # a full disk must not stop the crawl
            self.store.index.pop(key, None)
            log.warning(
                "HTTP cache %s: cannot store %s: %s", self.store.path, redact_url(entry.url), exc
            )


class SessionCacheTransport:
    """Put under a session's client in ``dev`` mode: the requests the session sends
    itself (marked ``SESSION_OWN``) go through the cache; the crawl's own requests,
    which the engine's exchange has already looked up, and robots.txt pass as they are.
    """

    __slots__ = ("_cache", "_inner", "_mark")

    def __init__(self, inner: Transport, cache: HttpCache, mark: str) -> None:
        self._inner = inner
        self._cache = cache
        self._mark = mark

    async def handle_request(self, request: HTTPRequest) -> HTTPResponse:
        if request.extensions.get(self._mark):
            return await self._cache.exchange_session(request, self._inner)
        return await self._inner.handle_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _key(request: Request) -> bytes:
    return request_fingerprint(request.method, request.url, request.body)


def _session_key(request: HTTPRequest) -> bytes:
    """Method, canonical URL and body, hashed: a login's credentials are not stored."""
    return _SESSION_KEY + request_fingerprint(request.method, str(request.url), request.content)


def _drop_headers(request: Request, names: list[str]) -> None:
    headers = request.headers
    if headers is not None:
        for name in names:
            headers.pop(name, None)
        if not headers:
            request.headers = None


def _replay(entry: CacheEntry, request: Request) -> HTTPResponse:
    return HTTPResponse(
        entry.status,
        headers=entry.headers,
        content=entry.body,
        request=HTTPRequest(request.method, URL(request.url)),
        extensions={CACHE_EXTENSION: True},
    )


def _entry(request: Request, response: HTTPResponse, now: float) -> CacheEntry:
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _WIRE_HEADERS
    ]
    status = response.status_code
    return CacheEntry(
        request.method,
        request.url,
        status,
        headers,
        response.content,
        now,
        fresh_until(status, headers, now),
    )


def _directives(value: str | None) -> dict[str, str]:
    """Cache-Control directives, names lower-cased, values unquoted ("" when none)."""
    out: dict[str, str] = {}
    if not value:
        return out
    for part in value.split(","):
        name, _, arg = part.partition("=")
        name = name.strip().lower()
        if name:
            out[name] = arg.strip().strip('"')
    return out


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    import email.utils  # here: only a crawl with a cache reads these dates

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _seconds(value: str | None) -> float | None:
    if value is not None and value.isascii() and value.isdigit():
        return float(value)
    return None


def fresh_until(status: int, headers: list[tuple[str, str]], response_time: float) -> float:
    """The Unix time a response received at ``response_time`` stops being fresh
    (RFC 9111 §4.2): its freshness lifetime minus the age it already had."""
    fields = {name.lower(): value for name, value in headers}
    directives = _directives(fields.get("cache-control"))
    if "no-cache" in directives or "no-store" in directives:
        return 0.0
    date = _http_date(fields.get("date"))
    lifetime = _seconds(directives.get("max-age"))
    if lifetime is None and "expires" in fields:
        expires = _http_date(fields["expires"])
        # An invalid Expires (such as "0") means already expired (§5.3).
        lifetime = 0.0 if expires is None else expires - (date or response_time)
    if lifetime is None:
        modified = _http_date(fields.get("last-modified"))
        if modified is None or status not in _HEURISTIC_STATUSES:
            return 0.0
        lifetime = _HEURISTIC_FRACTION * max(0.0, (date or response_time) - modified)
    apparent = max(0.0, response_time - date) if date is not None else 0.0
    age = max(apparent, _seconds(fields.get("age")) or 0.0)
    return response_time + lifetime - age
