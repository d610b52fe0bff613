"""robots.txt: fetched once per origin, shared by every request to it.

The rules follow RFC 9309:

* 2xx: the file is parsed (``protego``), at most ``max_size`` bytes of it
  (500 KiB, as Google reads), without a last line the limit cuts;
* 3xx left over (the fetch function is expected to follow up to five
  redirects itself) and 4xx other than 429: there are no rules, everything
  is allowed;
* 429, 5xx and network errors: the site is treated as fully disallowed,
  for ``error_retry`` seconds, after which the next request fetches the
  file again.  Guessing "allowed" while a server is failing is exactly when
  a crawler does damage.  ``allowed()`` then raises ``RobotsUnavailable``
  rather than answering False, so that the caller reports a failure (with
  the cause) instead of quietly counting the URL as disallowed.

Concurrent requests to an origin whose file is being fetched wait for that
single fetch instead of starting their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from protego import Protego

from .._links import host_of, netloc_of
from ..http import TransportError
from ._failures import describe_failure

if TYPE_CHECKING:  # politeness.py imports this module
    from ._politeness import Politeness

__all__ = ["ROBOTS_MAX_SIZE", "RobotsCache", "RobotsUnavailable", "origin_of"]

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]
#: How much of a robots.txt is read and parsed: 500 KiB, the least RFC 9309 allows
#: and what Google reads; whatever follows is ignored.
ROBOTS_MAX_SIZE = 500 * 1024
_ALLOW_ALL = True
_DISALLOW_ALL = False


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL, lowercase, by slicing."""
    colon = url.find("://")
    if colon < 0:
        raise ValueError(f"cannot find the origin of {url!r}: not an absolute URL")
    return url[:colon].lower() + "://" + netloc_of(url)


class RobotsUnavailable(TransportError):
    """An origin's robots.txt could not be fetched, so none of its URLs may be crawled yet.

    ``cause`` says why in a few words, for a summary of failed requests: the
    network error when the server could not be reached at all (the robots.txt
    is then only where it showed first), else the status robots.txt answered.
    ``retry_in`` is how many seconds the failure stands before the file is
    fetched again: a retry any sooner would only meet the same failure, not
    the server, so the engine's retries wait for it or do not happen.
    """

    def __init__(self, message: str, cause: str, retry_in: float = 0.0) -> None:
        super().__init__(message)
        self.cause = cause
        self.retry_in = retry_in


class _Entry:
    """One origin's rules, or a pending fetch of them."""

    __slots__ = ("cause", "error", "expires", "ready", "rules")

    def __init__(self) -> None:
        self.ready = trio.Event()
        # Protego, True (allow all), False (disallow all); None while pending
        # or when the fetch was cancelled (waiters then try again).
        self.rules: Protego | bool | None = None
        self.expires = float("inf")
        # Why the rules are "disallow all": the fetch's failure, for messages, and
        # what it means for the pages of the origin.
        self.error = ""
        self.cause = ""


class RobotsCache:
    """robots.txt rules per origin, fetched through the engine's ``fetch``.

    ``fetch(url)`` returns ``(status, body)`` and raises on network errors.
    When ``politeness`` is given, each origin's ``Crawl-delay`` for
    ``user_agent`` becomes that host's minimum delay as soon as the file is
    loaded.  ``ttl`` is how long a fetched file is trusted (RFC 9309 asks
    for no more than a day).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        user_agent: str = "*",
        politeness: Politeness | None = None,
        ttl: float = 86_400.0,
        error_retry: float = 300.0,
        max_size: int = ROBOTS_MAX_SIZE,
        max_entries: int = 10_000,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._fetch = fetch
        self.user_agent = user_agent
        self._politeness = politeness
        self.ttl = ttl
        self.error_retry = error_retry
        self.max_size = max_size
        self.max_entries = max_entries
        self._now = now if now is not None else trio.current_time
        self._entries: dict[str, _Entry] = {}
        self.fetches = 0  # robots.txt requests started, for stats and tests

    async def allowed(self, url: str, user_agent: str | None = None) -> bool:
        """May ``url`` be crawled by ``user_agent`` (default: the cache's)?"""
        origin = origin_of(url)
        if url.startswith("/robots.txt", len(origin)):
            return True
        entry = await self._entry(origin)
        rules = entry.rules
        if rules is _DISALLOW_ALL:
            raise RobotsUnavailable(
                f"{origin}/robots.txt could not be fetched ({entry.error}), so {url} "
                f"may not be crawled; it is fetched again after {self.error_retry:g}s",
                entry.cause,
                max(0.0, entry.expires - self._now()),
            )
        if rules is _ALLOW_ALL:
            return True
        assert isinstance(rules, Protego)
        return bool(rules.can_fetch(url, user_agent or self.user_agent))

    def crawl_delay(self, origin: str, user_agent: str | None = None) -> float | None:
        """The loaded ``Crawl-delay`` for ``user_agent`` (default: the cache's).

        ``origin`` may also be any absolute URL on that origin.  None until
        the origin's file is loaded, or when it sets no delay.
        """
        entry = self._entries.get(origin)
        if entry is None:
            entry = self._entries.get(origin_of(origin))
        if entry is None or not isinstance(entry.rules, Protego):
            return None
        delay = entry.rules.crawl_delay(user_agent or self.user_agent)
        return None if delay is None else float(delay)

    async def _entry(self, origin: str) -> _Entry:
        """The origin's loaded entry, fetching the file when needed."""
        while True:
            entry = self._entries.get(origin)
            if entry is not None:
                if not entry.ready.is_set():
                    await entry.ready.wait()
                if entry.rules is not None and entry.expires > self._now():
                    return entry
                if self._entries.get(origin) is not entry:
                    continue  # someone else already started a new fetch
            entry = _Entry()
            self._store(origin, entry)
            try:
                await self._load(origin, entry)
            finally:
                # Cancelled: drop the entry so that a waiter fetches instead.
                if entry.rules is None and self._entries.get(origin) is entry:
                    del self._entries[origin]
                entry.ready.set()
            if entry.rules is not None:
                return entry

    def _store(self, origin: str, entry: _Entry) -> None:
        entries = self._entries
        entries.pop(origin, None)
        while len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[origin] = entry

    async def _load(self, origin: str, entry: _Entry) -> None:
        url = origin + "/robots.txt"
        self.fetches += 1
        try:
            status, body = await self._fetch(url)
            entry.error = f"HTTP {status}"
            entry.cause = f"its robots.txt answered HTTP {status}"
        except Exception as exc:
            status, body = 599, b""  # unreachable counts as a server error
            entry.error = entry.cause = describe_failure(exc)
        now = self._now()
        if 200 <= status < 300:
            text = _head(body, self.max_size).decode("utf-8", errors="replace")
            entry.rules = Protego.parse(text)
            entry.expires = now + self.ttl
        elif status == 429 or status >= 500:
            entry.rules = _DISALLOW_ALL
            entry.expires = now + self.error_retry
        else:
            entry.rules = _ALLOW_ALL
            entry.expires = now + self.ttl
        if self._politeness is not None:
            delay = self.crawl_delay(origin)
            self._politeness.set_crawl_delay(host_of(origin), delay)


def _head(body: bytes, max_size: int) -> bytes:
    """The first ``max_size`` bytes of a robots.txt, without the line the limit cuts
    in two: half a rule ("Disallow: /la" of "Disallow: /late") is not the site's."""
    if len(body) <= max_size:
        return body
    head = body[:max_size]
    if body[max_size : max_size + 1] in (b"\n", b"\r"):
        return head
    return head[: head.rfind(b"\n") + 1]
