"""The fetch step: from a crawl Request to what the site answered, or why nothing was sent.

It checks robots.txt, waits for its session's login, sends the request and
re-sends it after a re-login; it decides nothing about the answer. The
outcome says which of four things happened, so that the policy that acts on
it (``_policy``) is a plain switch and neither step reaches into the other:

* an ``HTTPResponse``: fetched (the common case is the response itself, so a
  page costs no wrapper object);
* ``Failed(error)``: the exchange failed (network, timeout, decoding...);
* ``Skipped.DISALLOWED``: robots.txt forbids the URL, nothing was sent;
* ``Skipped.NOT_LOGGED_IN``: its session could not log in, nothing usable came
  back; the request stays queued for the next run.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..http import PROXY, URL, Cookie, Cookies, HTTPError, Timeout
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse
from ..request import Request
from ..sessions._logins import SESSION_GENERATION, Logins
from ..sessions._session import Session
from ._politeness import RobotsCache
from ._proxies import proxy_of
from ._robots import ROBOTS_MAX_SIZE
from ._stats import Stats

if TYPE_CHECKING:
    from ..jobs._job import Unsettled
    from ._http_cache import HttpCache

__all__ = ["Failed", "Fetcher", "Outcome", "Skipped"]

log = logging.getLogger("crawler.engine")


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange failed: ``error`` is the transport or decoding error."""

    error: HTTPError


class Skipped(enum.Enum):
    """Nothing was sent, and why."""

    DISALLOWED = "disallowed by robots.txt"
    NOT_LOGGED_IN = "its session is not logged in"


Outcome = HTTPResponse | Failed | Skipped


class Fetcher:
    """Sends a spider's requests through its sessions; ``await fetch(request)`` -> Outcome."""

    def __init__(
        self,
        spider_name: str,
        *,
        sessions: dict[str, Session],
        session: Callable[[str | None], Session],
        logins: Logins,
        unseen: Callable[[list[str]], list[str]],
        stats: Stats,
        timeout: Timeout,
        unsettled: Unsettled | None = None,
        http_cache: HttpCache | None = None,
        spider: Any = None,
    ) -> None:
        self.name = spider_name
        self._sessions = sessions
        self._session = session
        self._logins = logins
        self._unseen = unseen
        self._stats = stats
        self._timeout = timeout
        self._unsettled = unsettled
        # -- HTTP cache (a crawl middleware once middlewares are built in) --------------
        # The exchange is chosen once here: without a cache, a request costs nothing more.
        self._cache = http_cache
        self._spider = spider
        self._exchange = self._send if http_cache is None else self._send_cached
        #: Set once the robots cache (which fetches through ``fetch_robots``) is made.
        self.robots: RobotsCache | None = None

    async def fetch(self, request: Request) -> Outcome:
        """robots.txt, then ``send``: the whole step when no middleware runs between."""
        robots = self.robots
        if robots is not None:
            try:
                if not await robots.allowed(request.url):
                    return Skipped.DISALLOWED
            except HTTPError as exc:
                return Failed(exc)
        return await self.send(request)

    async def disallowed(self, request: Request) -> Outcome | None:
        """Why robots.txt keeps ``request`` from being sent (``Skipped.DISALLOWED``, or
        ``Failed`` when robots.txt could not be read), or None: the first half of
        ``fetch``, for the middleware chain that runs between the two halves."""
        robots = self.robots
        if robots is None:
            return None
        try:
            if not await robots.allowed(request.url):
                return Skipped.DISALLOWED
        except HTTPError as exc:
            return Failed(exc)
        return None

    async def send(self, request: Request) -> Outcome:
        """The second half of ``fetch``: send through its session, robots.txt aside."""
        try:
            session = self._sessions.get(request.session or "default") or self._session(
                request.session
            )
            if not session.login_required:
                return await self._exchange(request, session)
            return await self._send_logged_in(request, session)
        except HTTPError as exc:
            return Failed(exc)

    async def _send_logged_in(self, request: Request, session: Session) -> Outcome:
        """Wait for the session's login, and send again after a re-login."""
        logins = self._logins
        while not session.blocked or await logins.ready(session):
            response = await self._exchange(request, session)
            if not logins.logged_out(request, response, self._unseen):
                session.relogins = 0
                return response
            if self._cache is not None:
                await self._forget_logged_out(request, response, session)
            if not await logins.recover(session, response):
                break
        self._stats.dropped["logged_out"] += 1
        log.warning(
            "spider %s: dropped %s %s: session %r is not logged in",
            self.name,
            request.method,
            request.url,
            session.name,
        )
        return Skipped.NOT_LOGGED_IN

    async def _forget_logged_out(
        self, request: Request, response: HTTPResponse, session: Session
    ) -> None:
        """A logged-out page is no answer to keep: the resend must reach the site. Sent
        under the session's current login (or replayed), it also shows that login to be
        stale, so the re-login must reach the site too."""
        cache = self._cache
        assert cache is not None
        await cache.discard(request)
        sent = response.request
        sent_under = sent.extensions.get(SESSION_GENERATION) if sent is not None else None
        if sent_under is None or sent_under == session.generation:
            await cache.forget_logins()

    async def _send(self, request: Request, session: Session) -> HTTPResponse:
        headers = session.client.headers
        if request.headers is not None:
            headers = headers.copy()
            headers.update_from(request.headers)
        extensions: dict[str, Any] = {SESSION_GENERATION: session.generation}
        if request.proxy is not None:  # the request's own: above [domains] and settings
            extensions[PROXY] = proxy_of(request.proxy)
        url = URL(request.url)
        if request.cookies is not None:
            _store_cookies(session.cookies, request.cookies, url.host)
        http_request = HTTPRequest(
            request.method,
            url,
            headers=headers,
            content=request.body or None,
            timeout=self._timeout,
            extensions=extensions,
        )
        stats = self._stats
        stats.requests += 1
        unsettled = self._unsettled
        if unsettled is not None:
            unsettled.sent(request)
        if request.cross_origin_redirect:
            # No session auth on the other side of a redirect to another origin.
            response = await session.client.send(http_request, auth=None)
        else:
            response = await session.client.send(http_request)
        stats.bytes += len(response.content)
        if unsettled is not None:
            unsettled.received(request, len(response.content))
        return response

    async def _send_cached(self, request: Request, session: Session) -> HTTPResponse:
        """The exchange through the HTTP cache's ``process_request``/``process_response``:
        a stored response skips the network (and was given no politeness turn)."""
        cache = self._cache
        assert cache is not None
        spider = self._spider
        stored = await cache.process_request(request, spider)
        if stored is not None:
            return stored
        try:
            response = await self._send(request, session)
        except BaseException:
            cache.abandon(request)
            raise
        return await cache.process_response(request, response, spider)

    async def fetch_robots(self, url: str) -> tuple[int, bytes]:
        """Fetch one robots.txt over the shared pool (counted as a request, not a page).

        Its body is read up to robots.txt's own limit, whatever max_response_size
        says: a file too big for it still gives the rules at its top, which is
        better than shutting the site out for a size that concerns pages.
        """
        if self._cache is not None:
            return await self._robots_cached(url)
        response = await self._get_robots(url, None)
        return response.status_code, response.content

    async def _get_robots(self, url: str, extra: dict[str, str] | None) -> HTTPResponse:
        client = self._session("default").client
        headers = client.headers
        if extra:
            headers = headers.copy()
            headers.update_from(extra)
        self._stats.requests += 1
        response = await client.send(
            HTTPRequest("GET", URL(url), headers=headers, timeout=self._timeout),
            stream=True,
            follow_redirects=True,
        )
        try:
            status = response.status_code
            body = await _read_at_most(response, ROBOTS_MAX_SIZE + 1) if status < 300 else b""
        finally:
            await response.aclose()
        return HTTPResponse(
            status, headers=response.headers, content=body, request=response.request
        )

    async def _robots_cached(self, url: str) -> tuple[int, bytes]:
        """robots.txt through the HTTP cache too: a rerun from the cache sends nothing."""
        cache = self._cache
        assert cache is not None
        probe = Request(url)
        response = await cache.process_request(probe, self._spider)
        if response is None:
            try:
                fetched = await self._get_robots(url, probe.headers)
            except BaseException:
                cache.abandon(probe)
                raise
            response = await cache.process_response(probe, fetched, self._spider)
        status = response.status_code
        return status, response.content if status < 300 else b""


def _store_cookies(jar: Cookies, cookies: list[dict[str, Any]], host: str) -> None:
    """Put a request's own cookies in its session's jar, as Scrapy does: the jar then
    sends them with this request and with every later one they match. A cookie without
    a domain is the request host's alone (host-only)."""
    for cookie in cookies:
        domain = cookie.get("domain")
        jar.set_cookie(
            Cookie(
                cookie["name"],
                cookie["value"],
                domain or host,
                cookie.get("path", "/"),
                secure=cookie.get("secure", False),
                host_only=not domain,
            )
        )


async def _read_at_most(response: HTTPResponse, limit: int) -> bytes:
    """The first ``limit`` bytes of a streamed body (or all of a shorter one); the rest
    is never read (closing the response then drops its connection)."""
    response.max_size = None  # the limit here replaces the client's
    parts: list[bytes] = []
    size = 0
    # aiter_bytes is an async generator: closed here, not whenever it is collected.
    body = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
    async with aclosing(body) as chunks:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    return b"".join(parts)[:limit]
