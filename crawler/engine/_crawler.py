"""One spider's crawl: workers that take requests, send them and run callbacks.

Each worker loops: take the next request the scheduler allows, send it through
the spider's client (its own cookies, over the engine's shared pool), read the
body, free the host slot, then run the callback and route what it yields:
Requests back to the scheduler, anything else through the item pipelines.

Everything that can go wrong with one request (network error, bad status, a
callback that raises, a pipeline that fails) is counted and logged with the
URL and spider, and the crawl goes on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trio

from .._links import host_of, make_host_filter, resolve_url
from .._redact import is_secret_key
from ..frontier import Frontier
from ..frontier.memory import MemoryFrontier
from ..http import (
    REDIRECT_STATUSES,
    URL,
    Client,
    ConnectionPool,
    HTTPError,
    HTTPStatusError,
    redirect_step,
)
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse
from ..pipelines._runner import Pipeline, PipelineRunner, feed_exporter_for, load_pipelines
from ..request import Request
from ..response import Response
from ..sessions._logins import SESSION_GENERATION, Logins
from ..sessions._session import Session
from ..spider import Spider
from ._callbacks import Callbacks
from ._failures import describe_failure, describe_status, short_cause
from ._politeness import THROTTLE_STATUSES, Politeness, RobotsCache, parse_retry_after
from ._referer import PageReferrer, Policy, redirect_referer, referrer_policy
from ._retry import RetryPolicy
from ._robots import ROBOTS_MAX_SIZE
from ._scheduler import Scheduler
from ._stats import Stats

if TYPE_CHECKING:
    from ..jobs._job import Job
    from ..settings import Settings

__all__ = ["Crawler", "SharedTransport", "build_pool"]

log = logging.getLogger("crawler.engine")


def build_pool(settings: Settings) -> ConnectionPool:
    """The engine's one pool, from the settings' connection limits and timeouts."""
    return ConnectionPool(
        limits=settings.limits(),
        timeout=settings.timeout(),
        http2=settings.http2,
        http2_prior_knowledge=settings.http2_prior_knowledge,
        verify=settings.tls(),
    )


class SharedTransport:
    """Lends the shared pool to one spider's client; closing the client leaves it open."""

    __slots__ = ("_pool",)

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    async def handle_request(self, request: HTTPRequest) -> HTTPResponse:
        return await self._pool.handle_request(request)

    async def aclose(self) -> None:
        pass


def _retry_after(response: HTTPResponse) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


class Crawler:
    """Runs one spider to completion on a shared pool: ``await crawler.run()``.

    ``stop(reason)`` ends it gracefully (nothing new is sent, what is in flight
    finishes); ``abort()`` cancels the requests in flight too. Pipelines are
    closed in both cases, so exports stay valid.
    """

    def __init__(
        self,
        spider_cls: type[Spider],
        settings: Settings,
        pool: ConnectionPool,
        *,
        feeds: Sequence[Path] = (),
        frontier: Frontier | None = None,
        pipelines: Sequence[Pipeline] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        spider = spider_cls()
        spider.settings = settings
        self.spider = spider
        self.name = spider.name or spider_cls.__name__
        self.stats = Stats(self.name)
        chain = (
            list(pipelines)
            if pipelines is not None
            else load_pipelines(settings.pipelines, settings)
        )
        chain.extend(feed_exporter_for(path) for path in feeds)
        # With job_dir the crawl is durable: the job's store is the frontier.
        self.job: Job | None = None
        if settings.job_dir and frontier is None:
            from ..jobs._job import Job

            self.job = Job.open(settings.job_dir, spider, chain)
            frontier = self.job.frontier
        self.frontier: Frontier = frontier if frontier is not None else MemoryFrontier()
        self.politeness = Politeness(
            settings.download_delay,
            delay_for=lambda host: settings.for_domain(host).download_delay,
            jitter=settings.download_delay_jitter,
        )
        self.scheduler = Scheduler(
            self.frontier,
            self.politeness,
            host_cap=self._host_cap,
            stats=self.stats,
            depth_limit=settings.depth_limit,
            max_pages=settings.max_pages,
            max_url_length=settings.max_url_length,
            host_filter=make_host_filter(list(spider.allowed_domains))
            if spider.allowed_domains
            else None,
        )
        self.pipelines = PipelineRunner(chain)
        self.retry = RetryPolicy(
            retry_times=settings.retry_times,
            retry_http_codes=settings.retry_http_codes,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
        )
        self._timeout = settings.timeout()
        #: The spider's sessions by name ("default" included), made on first use.
        self.sessions: dict[str, Session] = {}
        # The crawl failed and must exit non-zero: a login failed, or no start request
        # could be crawled at all.
        self.failed = False
        # Start requests (depth 0, their retries and redirects included): whether one
        # reached its callback, and the first few that failed, as "URL (cause)".
        self._start_reached = False
        self._start_failures: list[str] = []
        self._start_failed = 0
        self.logins = Logins(
            spider,
            self.name,
            max_relogins=settings.max_relogins,
            on_failure=self._login_failed,
            secrets=[
                v for k, v in settings.options.items() if isinstance(v, str) and is_secret_key(k)
            ],
        )
        spider._session_factory = self.session
        self.callbacks = Callbacks(
            spider, self.name, enqueue=self.scheduler.enqueue, item=self._item, stats=self.stats
        )
        # None for "no-referrer": no page then builds a PageReferrer at all.
        self._referrer_policy: Policy | None = (
            None
            if settings.referer_policy == "no-referrer"
            else referrer_policy(settings.referer_policy)
        )
        self._handle_status = frozenset(getattr(spider, "handle_httpstatus_list", ()))
        self._max_size = settings.max_response_size or None
        self._max_redirects = settings.max_redirects
        self._max_items = settings.max_items
        # Items a resumed job had exported before this run: max_items counts per run.
        self._items_before = 0
        self.robots: RobotsCache | None = (
            RobotsCache(
                self._fetch_robots, user_agent=settings.user_agent, politeness=self.politeness
            )
            if settings.obey_robots
            else None
        )
        self._workers_scope = trio.CancelScope()
        # Start requests may be endless: a stop must end their feeder too.
        self._feeder_scope = trio.CancelScope()
        self.scheduler.on_stop = self._feeder_scope.cancel
        self.aborted = False
        self.interrupted = False

    # -- lifecycle ------------------------------------------------------------------

    def _host_cap(self, host: str) -> int:
        cap = self.settings.for_domain(host).max_connections
        if cap != self.settings.max_connections_per_host:
            self.pool.set_host_limit(host, cap)
        return int(cap)

    def client(self, session: str | None = None) -> Client:
        """The client of ``session`` (its own cookie jar), made on first use."""
        return self.session(session).client

    def session(self, name: str | None = "default") -> Session:
        """The spider's session ``name`` (``None`` is "default"), made on first use."""
        key = name or "default"
        found = self.sessions.get(key)
        if found is None:
            found = self.sessions[key] = Session(
                key,
                SharedTransport(self.pool),
                headers={"User-Agent": self.settings.user_agent},
                timeout=self._timeout,
                max_response_size=self._max_size,
                on_exchange=self._count_session_exchange,
            )
            found.login_required = self.logins.enabled
        return found

    def _count_session_exchange(self, response: HTTPResponse) -> None:
        """Requests a spider sends itself through a session count like the crawl's."""
        stats = self.stats
        stats.requests += 1 + len(response.history)
        stats.bytes += len(response.content)

    def _login_failed(self, message: str) -> None:
        self.failed = True
        self.stats.errors["login_failed"] += 1
        log.error("spider %s: %s; stopping the crawl", self.name, message)
        self.stop("login_failed")

    def stop(self, reason: str) -> None:
        if not self.scheduler.stopping:
            log.info("spider %s: stopping (%s)", self.name, reason)
        self.scheduler.stop(reason)

    def abort(self) -> None:
        self.aborted = True
        self._workers_scope.cancel()

    async def run(self) -> Stats:
        """Crawl until the frontier is exhausted or a stop condition is met."""
        settings = self.settings
        job = self.job
        if job is not None:
            await job.open_pipelines(self)
        else:
            await self.pipelines.open(self.spider)
        clean = False
        try:
            if job is not None:
                await job.start(self)
                self._items_before = self.pipelines.items_scraped
            async with trio.open_nursery() as services:
                if job is not None:
                    services.start_soon(job.run_checkpoints, self)
                if settings.serve_demo_site:
                    from ..demo import serve_demo_site

                    url = await services.start(serve_demo_site)
                    self.spider.demo_url = url
                with self._workers_scope:
                    async with trio.open_nursery() as workers:
                        if settings.max_seconds:
                            services.start_soon(self._deadline, settings.max_seconds)
                        self.scheduler.hold()
                        workers.start_soon(self._feed_start_requests)
                        workers.start_soon(self.scheduler.run_timer)
                        for _ in range(max(1, settings.concurrency)):
                            workers.start_soon(self._worker)
                services.cancel_scope.cancel()
            clean = True
            self._check_start()
        finally:
            # Not clean: cancelled from outside (or broken), which is no finish either.
            self.stats.finish(
                "aborted"
                if self.aborted or not clean
                else (self.scheduler.stop_reason or "finished")
            )
            with trio.CancelScope(shield=True):
                try:
                    if job is not None:
                        await job.finish(self, clean)
                finally:
                    await self._close()
                    if job is not None:
                        job.close()
        return self.stats

    async def _close(self) -> None:
        try:
            outcome = self.spider.closed(self.stats.finish_reason)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("spider %s: closed() failed", self.name)
        try:
            await self.pipelines.close(self.spider)
        finally:
            self._sync_stats()
            for session in self.sessions.values():
                await session.aclose()
            self.frontier.close()

    async def _deadline(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.stop("max_seconds")

    def _sync_stats(self) -> None:
        stats = self.stats
        stats.items = self.pipelines.items_scraped
        stats.items_dropped = sum(self.pipelines.items_dropped.values())
        stats.queued = self.scheduler.queued
        stats.in_flight = self.scheduler.active
        stats.connections = self.pool.connection_counts()
        stats.errors["pipeline"] = self.pipelines.errors
        if not self.pipelines.errors:
            del stats.errors["pipeline"]

    def _check_start(self) -> None:
        """A crawl none of whose start requests could be crawled has failed, and says why
        (a stop by signal or by a limit before any answer is no such failure)."""
        if self._start_reached or not self._start_failed or self.interrupted:
            return
        self.failed = True
        shown = "; ".join(self._start_failures)
        more = self._start_failed - len(self._start_failures)
        log.error(
            "spider %s: no start request could be crawled: %s%s",
            self.name,
            shown,
            f"; and {more} more" if more > 0 else "",
        )

    def refresh_stats(self) -> Stats:
        self._sync_stats()
        return self.stats

    async def _feed_start_requests(self) -> None:
        """Queue the start requests, yielding to workers now and then (they may be many)."""
        try:
            with self._feeder_scope:
                if self.logins.enabled:
                    names = self.spider.login_sessions
                    if not await self.logins.before_start(self.session(n) for n in names):
                        return
                if self.job is not None and self.job.starts_done:
                    return  # a resumed job: its start requests are all queued or done
                starts: Any = self.spider.start_requests()
                if inspect.isawaitable(starts):
                    starts = await starts  # an ``async def`` returning a list
                enqueue: Callable[[Any], None] = self._enqueue_start
                job = self.job
                if job is not None:
                    enqueue = job.start_feed(enqueue)
                if isinstance(starts, AsyncIterable):
                    async for request in starts:
                        enqueue(request)
                else:
                    for n, request in enumerate(starts, 1):
                        enqueue(request)
                        if n % 256 == 0:
                            await trio.lowlevel.checkpoint()
                if self.job is not None:
                    self.job.starts_done = True
        except Exception:
            self.stats.errors["start_requests"] += 1
            log.exception("spider %s: start_requests() failed", self.name)
        finally:
            self.scheduler.task_done()

    def _enqueue_start(self, request: Any) -> None:
        """Queue one start request; anything else (a URL as text...) is reported and
        skipped, so that one mistake does not lose every start request after it."""
        if isinstance(request, Request):
            self.scheduler.enqueue(request)
            return
        self.stats.errors["start_requests"] += 1
        log.error(
            "spider %s: start_requests() yielded %.200r (%s), not a Request; skipped",
            self.name,
            request,
            type(request).__name__,
        )

    # -- the worker loop ---------------------------------------------------------------

    async def _worker(self) -> None:
        get = self.scheduler.get
        done = self.scheduler.task_done
        job = self.job
        while True:
            request = await get()
            if request is None:
                return
            keep = False
            try:
                keep = await self._handle(request)
            except Exception:
                # A bug here must not end a crawl of millions: count it, say where, go on.
                self.stats.errors["internal"] += 1
                log.exception("spider %s: internal error on %s", self.name, request.url)
            finally:
                if keep:
                    # Never sent: a durable frontier keeps its lease, so the next run
                    # sends it (after the login is fixed) instead of losing it.
                    done()
                else:
                    done(request)
                    if job is not None:
                        job.page_done(request)

    async def _handle(self, request: Request) -> bool:
        """Send ``request`` and run its callback; True if it was not handled and must
        stay queued (its session could not log in)."""
        stats = self.stats
        response: HTTPResponse | None = None
        error: HTTPError | None = None
        try:
            if self.robots is not None and not await self._robots_allow(request):
                stats.dropped["robots"] += 1
                return False
            response = await self._send(request)
            if response is None:
                return True  # its session could not log in: counted and logged
        except HTTPError as exc:
            error = exc
        finally:
            # The host slot is free as soon as the exchange is over, not after the callback.
            self.scheduler.release_host(request)
        job = self.job
        if job is not None:
            # What the page yields is committed together with its leaving the queue.
            if job.gate.closed:
                await job.gate.enter(request)
            else:
                job.gate.enter_now(request)
        if response is None:
            await self._failed(request, error, None)
            return False
        status = response.status_code
        stats.status[status] += 1
        self.politeness.record_response(
            host_of(request.url),
            status,
            response.headers.get("retry-after") if status in THROTTLE_STATUSES else None,
        )
        if status >= 300:
            if status in REDIRECT_STATUSES and not request.dont_redirect:
                location = response.headers.get("location")
                if location:
                    await self._redirect(request, response, location)
                    return False
            if status >= 400 or status in self.retry.retry_http_codes:
                if self._maybe_retry(request, status=status, response=response):
                    return False
                accepted = request.accept_statuses
                if status not in self._handle_status and not (
                    isinstance(accepted, str) or status in accepted
                ):
                    await self._failed(request, None, response)
                    return False
        stats.pages += 1
        if request.depth == 0:
            self._start_reached = True
        policy = self._referrer_policy
        await self.callbacks.invoke(
            request,
            request.callback or "parse",
            (Response.from_http(response, request, self.scheduler.unseen),),
            PageReferrer(policy, request.url) if policy is not None else None,
        )
        return False

    async def _redirect(self, request: Request, response: HTTPResponse, location: str) -> None:
        """Follow a redirect through the scheduler, so the target is deduplicated,
        checked against allowed_domains and robots.txt, and politely scheduled."""
        hops = request.redirects + 1
        url = resolve_url(request.url, location)
        if url is None or hops > self._max_redirects:
            why = "too many redirects" if url is not None else f"bad Location {location!r}"
            await self._failed(request, None, response, cause=why)
            return
        status = response.status_code
        # The target is a new request: the retries its source took are not its own.
        changes: dict[str, Any] = {"url": url, "redirects": hops, "retries": 0}
        step = redirect_step(
            request.method, status, same_origin=URL(url).origin == URL(request.url).origin
        )
        if step.cross_origin:
            # No session auth on the other side of the redirect either.
            changes["cross_origin_redirect"] = True
        if request.headers and (step.cross_origin or step.drops_body):
            changes["headers"] = dict(step.kept(request.headers.items()))
        if step.drops_body:
            changes.update(method=step.method, body=b"")
        if self._referrer_policy is not None:
            headers = redirect_referer(
                self._referrer_policy, changes.get("headers", request.headers), url
            )
            if headers is not None:
                changes["headers"] = headers
        self.stats.redirects += 1
        self.scheduler.enqueue(request.replace(**changes))

    async def _send(self, request: Request) -> HTTPResponse | None:
        """Fetch ``request`` as its session; with a login hook, wait for logins and send
        again after a re-login. None: dropped, since its session could not log in."""
        session = self.sessions.get(request.session or "default") or self.session(request.session)
        if not session.login_required:
            return await self._fetch(request)
        logins = self.logins
        while not session.blocked or await logins.ready(session):
            response = await self._fetch(request)
            if not logins.logged_out(request, response, self.scheduler.unseen):
                session.relogins = 0
                return response
            if not await logins.recover(session, response):
                break
        self.stats.dropped["logged_out"] += 1
        log.warning(
            "spider %s: dropped %s %s: session %r is not logged in",
            self.name,
            request.method,
            request.url,
            session.name,
        )
        return None

    async def _fetch(self, request: Request) -> HTTPResponse:
        session = self.sessions.get(request.session or "default") or self.session(request.session)
        headers = session.client.headers
        if request.headers is not None:
            headers = headers.copy()
            headers.update_from(request.headers)
        http_request = HTTPRequest(
            request.method,
            URL(request.url),
            headers=headers,
            content=request.body or None,
            timeout=self._timeout,
            extensions={SESSION_GENERATION: session.generation},
        )
        self.stats.requests += 1
        job = self.job
        if job is not None:
            job.unsettled.sent(request)
        if request.cross_origin_redirect:
            response = await session.client.send(http_request, auth=None)
        else:
            response = await session.client.send(http_request)
        self.stats.bytes += len(response.content)
        if job is not None:
            job.unsettled.received(request, len(response.content))
        return response

    # -- failures and retries -------------------------------------------------------

    def _maybe_retry(
        self,
        request: Request,
        *,
        error: HTTPError | None = None,
        status: int | None = None,
        response: HTTPResponse | None = None,
    ) -> bool:
        if request.dont_retry:
            return False
        if status is not None and not self.retry.should_retry_status(status):
            return False
        attempt = request.retries + 1
        delay = self.retry.delay_for(
            request,
            attempt,
            error=error,
            status=status,
            retry_after=_retry_after(response) if response is not None else None,
        )
        if delay is None:
            return False
        request.retries = attempt
        self.stats.retries += 1
        log.debug(
            "spider %s: retrying %s in %.2fs (attempt %d): %s",
            self.name,
            request.url,
            delay,
            attempt + 1,
            error if error is not None else f"HTTP {status}",
        )
        self.scheduler.retry_later(request, delay)
        return True

    async def _failed(
        self,
        request: Request,
        error: HTTPError | None,
        response: HTTPResponse | None,
        *,
        cause: str | None = None,
    ) -> None:
        if error is not None:
            if self._maybe_retry(request, error=error):
                return
            kind = type(error).__name__
            cause = describe_failure(error)
        else:
            assert response is not None
            kind = f"http_{response.status_code}"
            cause = describe_status(response.status_code, response.reason_phrase) + (
                f" ({cause})" if cause else ""
            )
        self.stats.errors[kind] += 1
        self.stats.failed += 1
        if request.depth == 0:
            self._start_failed += 1
            if len(self._start_failures) < _START_FAILURES_SHOWN:
                short = cause if error is None else short_cause(error)
                self._start_failures.append(f"{request.url} ({short})")
        log.warning(
            "spider %s: giving up on %s %s after %d retries: %s",
            self.name,
            request.method,
            request.url,
            request.retries,
            cause,
        )
        if request.errback is not None:
            failure: HTTPError
            if error is not None:
                failure = error
            else:
                assert response is not None and response.request is not None
                failure = HTTPStatusError(
                    f"{cause} for {request.url}", request=response.request, response=response
                )
            await self.callbacks.invoke(request, request.errback, (request, failure))

    async def _item(self, item: Any) -> None:
        await self.pipelines.process(item, self.spider)
        if self._max_items and self.pipelines.items_scraped - self._items_before >= self._max_items:
            self.stop("max_items")

    # -- robots.txt ------------------------------------------------------------------

    async def _robots_allow(self, request: Request) -> bool:
        assert self.robots is not None
        allowed: bool = await self.robots.allowed(request.url)
        return allowed

    async def _fetch_robots(self, url: str) -> tuple[int, bytes]:
        """Fetch one robots.txt over the shared pool (counted as a request, not a page).

        Its body is read up to robots.txt's own limit, whatever max_response_size
        says: a file too big for it still gives the rules at its top, which is
        better than shutting the site out for a size that concerns pages.
        """
        client = self.session("default").client
        self.stats.requests += 1
        response = await client.send(
            HTTPRequest("GET", URL(url), headers=client.headers, timeout=self._timeout),
            stream=True,
            follow_redirects=True,
        )
        try:
            status = response.status_code
            body = await _read_at_most(response, ROBOTS_MAX_SIZE + 1) if status < 300 else b""
        finally:
            await response.aclose()
        return status, body


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


_START_FAILURES_SHOWN = 10
