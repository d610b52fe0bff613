"""One spider's crawl: its lifecycle, and the workers that take requests.

The Crawler builds the crawl's pieces and runs them: opens the pipelines,
feeds the start requests, runs the workers until the frontier is exhausted or
a stop condition is met, and closes everything on the way out, whether the
crawl finished, was stopped or aborted. Each worker loops: take the next
request the scheduler allows, fetch it (``_fetch``: robots.txt, login,
sending), free the host slot, and hand the outcome to the policy
(``_policy``: status, redirects, retries, failures, callbacks).

Everything that can go wrong with one request (network error, bad status, a
callback that raises, a pipeline that fails) is counted and logged with the
URL and spider, and the crawl goes on. For a durable job the Crawler is also
the ``CrawlState`` the job checkpoints.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .._links import host_of, make_host_filter
from .._redact import is_secret_key
from ..frontier import Frontier
from ..frontier.memory import MemoryFrontier
from ..http import PROXY, Client, ConnectionPermits, ConnectionPool, Cookies, Transport
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse
from ..pipelines._encode import ENCODE_ERRORS, make_encoder
from ..pipelines._runner import (
    Feed,
    Pipeline,
    PipelineRunner,
    feed_exporter_for,
    load_pipelines,
)
from ..request import Request
from ..sessions._logins import Logins
from ..sessions._session import SESSION_OWN, Session
from ..spider import Spider
from ._callbacks import Callbacks
from ._components import build_components
from ._fetch import Failed, Fetcher, Skipped
from ._http_cache import CACHE_EXTENSION, HttpCache, SessionCacheTransport
from ._middlewares import Dropped, MiddlewareChain, Replaced
from ._policy import OutcomePolicy
from ._politeness import Politeness, RobotsCache
from ._proxies import ProxyChooser
from ._referer import referrer_policy
from ._retry import RetryPolicy
from ._rotation import ProxyRotation
from ._scheduler import Scheduler
from ._signals import Signals
from ._stats import CustomStats, Stats

if TYPE_CHECKING:
    from ..distributed import RedisDelays
    from ..distributed._shared import SharedCrawl
    from ..jobs._job import Job
    from ..settings import Settings
    from ._referer import PageReferrer

__all__ = ["Crawler", "SharedTransport", "build_pool"]

log = logging.getLogger("crawler.engine")
item_log = logging.getLogger("crawler.items")

#: The page whose callback is running (for the DEBUG line of each item): "200 URL".
_PAGE: contextvars.ContextVar[str] = contextvars.ContextVar("page", default="?")

# Reasons middlewares drop requests for, past which the rest are lumped together: one
# that puts URLs in its reasons must not grow the counter without bound.
_MAX_DROP_REASONS = 1000


def build_pool(settings: Settings, permits: ConnectionPermits | None = None) -> ConnectionPool:
    """The engine's one pool, from the settings' connection limits and timeouts (and,
    in a crawl shared through Redis, the permits that make its caps global)."""
    return ConnectionPool(
        limits=settings.limits(),
        timeout=settings.timeout(),
        http2=settings.http2,
        http2_prior_knowledge=settings.http2_prior_knowledge,
        verify=settings.tls(),
        permits=permits,
    )


class SharedTransport:
    """Lends the shared pool to one spider's client; closing the client leaves it open.

    With ``proxies``, each request that names no proxy of its own (the ``PROXY``
    extension) gets its origin's, here below the redirects so that every hop
    is routed by its own host: robots.txt and login requests included.
    """

    __slots__ = ("_pool", "_proxies")

    def __init__(self, pool: ConnectionPool, proxies: ProxyChooser | None = None) -> None:
        self._pool = pool
        self._proxies = proxies

    async def handle_request(self, request: HTTPRequest) -> HTTPResponse:
        proxies = self._proxies
        if proxies is not None and PROXY not in request.extensions:
            url = request.url
            proxy = proxies.choose(url.scheme, url.host, url.port)
            if isinstance(proxy, ProxyRotation):
                return await proxy.send(self._pool, request)
            request.extensions[PROXY] = proxy
        return await self._pool.handle_request(request)

    async def aclose(self) -> None:
        pass


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
        feeds: Sequence[Path | Feed] = (),
        frontier: Frontier | None = None,
        pipelines: Sequence[Pipeline] | None = None,
        http_cache: HttpCache | None = None,
        shared_delays: RedisDelays | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        # With frontier_url: request slots per host booked with the other processes.
        self.shared_delays = shared_delays
        self.name = spider_cls.name or spider_cls.__name__
        self.stats = Stats(self.name)
        #: The spider's own counters (``spider.stats``), kept in ``stats.custom``.
        self.custom_stats = CustomStats(self.stats.custom)
        #: What spiders, middlewares and extensions connect their handlers to.
        self.signals = Signals(self.name, self._count_signal_error)
        from_crawler = getattr(spider_cls, "from_crawler", None)
        spider = from_crawler(self) if from_crawler is not None else spider_cls()
        spider.settings = settings
        spider.crawler = self
        spider.stats = self.custom_stats
        self.spider = spider
        chain = (
            list(pipelines)
            if pipelines is not None
            else load_pipelines(settings.pipelines, settings)
        )
        chain.extend(feed_exporter_for(feed, spider=self.name) for feed in feeds)
        if settings.frontier_url and settings.job_dir and frontier is None:
            from ..settings import SettingsError

            raise SettingsError(
                "frontier_url and job_dir cannot be used together: a shared crawl keeps its "
                "state in Redis (drop --job, or --frontier)"
            )
        # With job_dir the crawl is durable: the job's store is the frontier.
        self.job: Job | None = None
        if settings.job_dir and frontier is None:
            from ..jobs._job import Job

            self.job = Job.open(
                settings.job_dir,
                spider,
                chain,
                every_pages=settings.checkpoint_every_pages,
                every_seconds=settings.checkpoint_every_seconds,
            )
            frontier = self.job.frontier
        #: With frontier_url: this worker's part of a crawl shared through Redis.
        self.shared: SharedCrawl | None = None
        if settings.frontier_url and frontier is None:
            frontier = self._join_shared(settings, feeds)
        self.frontier: Frontier = frontier if frontier is not None else MemoryFrontier()
        # The HTTP cache (http_cache = true), or ``http_cache`` given by the caller.
        self.http_cache = (
            http_cache
            if http_cache is not None
            else HttpCache.from_settings(settings, self.name, self.stats.http_cache)
        )
        if http_cache is not None:
            http_cache.report_to(self.stats.http_cache)
        self.politeness = Politeness(
            settings.download_delay,
            delay_for=lambda host: settings.for_domain(host).download_delay,
            jitter=settings.download_delay_jitter,
            on_pause=shared_delays.pause if shared_delays is not None else None,
            on_throttle=self._share_throttle if shared_delays is not None else None,
        )
        if shared_delays is not None:
            self._share_throttles(shared_delays)
        self.scheduler = Scheduler(
            self.frontier,
            self.politeness,
            host_cap=self._host_cap,
            stats=self.stats,
            depth_limit=settings.depth_limit,
            # A shared crawl counts max_pages over every worker, in Redis.
            max_pages=settings.max_pages if self.shared is None else 0,
            max_url_length=settings.max_url_length,
            host_filter=make_host_filter(list(spider.allowed_domains))
            if spider.allowed_domains
            else None,
            local=self.http_cache.answers if self.http_cache is not None else None,
        )
        self.pipelines = PipelineRunner(chain)
        if self.shared is not None:
            self.shared.attach(
                self.scheduler.refilled, self.stop, self._shared_failed, self._error_count
            )
        self._timeout = settings.timeout()
        self._proxies = ProxyChooser.for_spider(settings, self.stats.proxies)
        #: The spider's sessions by name ("default" included), made on first use.
        self.sessions: dict[str, Session] = {}
        # The crawl failed and must exit non-zero: a login failed, or no start request
        # could be crawled at all.
        self.failed = False
        self.logins = Logins(
            spider,
            self.name,
            max_relogins=settings.max_relogins,
            on_failure=self._login_failed,
            secrets=[
                v for k, v in settings.options.items() if isinstance(v, str) and is_secret_key(k)
            ],
        )
        if self.shared is not None and settings.shared_sessions:
            self.logins.share = self.shared.share_sessions(
                self.sessions, settings.shared_login_wait
            )
        spider._session_factory = self.session
        self.callbacks = Callbacks(
            spider,
            self.name,
            enqueue=self.scheduler.enqueue,
            item=self._item,
            stats=self.stats,
            stop=self.stop,
        )
        self._max_size = settings.max_response_size or None
        # A shared crawl counts max_items over every worker, in Redis.
        self._max_items = settings.max_items if self.shared is None else 0
        # Items a resumed job had exported before this run: max_items counts per run.
        self._items_before = 0
        self.fetcher = Fetcher(
            self.name,
            sessions=self.sessions,
            session=self.session,
            logins=self.logins,
            unseen=self.scheduler.unseen,
            stats=self.stats,
            timeout=self._timeout,
            unsettled=self.job.unsettled if self.job is not None else None,
            http_cache=self.http_cache,
            spider=spider,
        )
        self.robots: RobotsCache | None = (
            RobotsCache(
                self.fetcher.fetch_robots
                if self.shared is None
                else self.shared.robots_fetch(self.fetcher.fetch_robots),
                user_agent=settings.user_agent,
                politeness=self.politeness,
            )
            if settings.obey_robots
            else None
        )
        self.fetcher.robots = self.robots
        self.policy = OutcomePolicy(
            self.name,
            stats=self.stats,
            retry=RetryPolicy(
                retry_times=settings.retry_times,
                retry_http_codes=settings.retry_http_codes,
                backoff=settings.retry_backoff,
                backoff_max=settings.retry_backoff_max,
            ),
            enqueue=self.scheduler.enqueue,
            retry_later=self.scheduler.retry_later,
            unseen=self.scheduler.unseen,
            invoke=self.callbacks.invoke,
            record_response=self.politeness.record_response,
            accept_statuses=frozenset(getattr(spider, "handle_httpstatus_list", ())),
            max_redirects=settings.max_redirects,
            # None for "no-referrer": no page then builds a PageReferrer at all.
            referrer_policy=None
            if settings.referer_policy == "no-referrer"
            else referrer_policy(settings.referer_policy),
            gate=self.job.gate if self.job is not None else None,
        )
        self.middlewares = MiddlewareChain(
            build_components("middleware", settings.middlewares, self),
            spider,
            self.name,
            self.fetcher,
            unseen=self.scheduler.unseen,
            count_error=self._count_middleware_error,
        )
        self.extensions = build_components("extension", settings.extensions, self)
        # What scheduling a request calls: the scheduler's own, or, when handlers listen
        # to request_scheduled or request_dropped, one that sends those too.
        self._schedule: Callable[..., bool] = self.scheduler.enqueue
        self._workers_scope = trio.CancelScope()
        # Start requests may be endless: a stop must end their feeder too.
        self._feeder_scope = trio.CancelScope()
        self.scheduler.on_stop = self._feeder_scope.cancel
        self.aborted = False
        self.interrupted = False

    # -- lifecycle ------------------------------------------------------------------

    def _join_shared(self, settings: Settings, feeds: Sequence[Path | Feed]) -> Frontier:
        from ..distributed._shared import SharedCrawl
        from ..settings import SettingsError

        if feeds:
            raise SettingsError(
                "with frontier_url, items go to the shared crawl's Redis stream, exactly "
                "once; export them with `crawl export REDIS_URL --spider NAME -O FILE` "
                "instead of -o/-O (docs/distributed.md)"
            )
        try:
            self.shared = SharedCrawl(settings, self.name)
        except ValueError as exc:
            raise SettingsError(f"frontier_url: {exc}") from None
        self._encode_item = make_encoder()
        return self.shared.frontier

    def _error_count(self) -> int:
        stats = self.stats
        return stats.failed + stats.callback_errors + self.pipelines.errors

    def _shared_failed(self, reason: str) -> None:
        self.failed = True
        self.stop(reason)

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
            transport: Transport = SharedTransport(self.pool, self._proxies)
            cache = self.http_cache
            if cache is not None and not cache.rfc:
                # dev mode replays the session's own exchanges (its login) too; RFC 9111
                # stores no answer to a POST, so there the login goes to the site.
                transport = SessionCacheTransport(transport, cache, SESSION_OWN)
            found = self.sessions[key] = Session(
                key,
                transport,
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
        if self.http_cache is not None:
            # Hops replayed from the HTTP cache reached no site: not requests.
            hops = (*response.history, response)
            stats.requests += sum(CACHE_EXTENSION not in hop.extensions for hop in hops)
            if CACHE_EXTENSION not in response.extensions:
                stats.bytes += len(response.content)
            return
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
        shared = self.shared
        joined = False
        try:
            if self.http_cache is not None:
                await self.http_cache.open()
            if shared is not None:
                await shared.start()
                joined = True
            await self.middlewares.open()
            await self.signals.send("spider_opened", spider=self.spider)
            if job is not None:
                await job.start(self)
                self._items_before = self.pipelines.items_scraped
            async with trio.open_nursery() as services:
                self.signals.nursery = services
                self._wire_signals()
                if job is not None:
                    services.start_soon(job.run_checkpoints, self)
                if shared is not None:
                    services.start_soon(shared.run)
                with self._workers_scope:
                    async with trio.open_nursery() as workers:
                        if settings.max_seconds and shared is None:
                            # A shared crawl's deadline is the run's, kept in Redis.
                            services.start_soon(self._deadline, settings.max_seconds)
                        self.scheduler.hold()
                        workers.start_soon(self._feed_start_requests)
                        workers.start_soon(self.scheduler.run_timer)
                        worker = self._worker if shared is None else self._shared_worker
                        for _ in range(max(1, settings.concurrency)):
                            workers.start_soon(worker)
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
                    if shared is not None and joined:
                        await shared.finish()
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
        await self.middlewares.close()
        try:
            await self.pipelines.close(self.spider)
        finally:
            self._sync_stats()
            for session in self.sessions.values():
                await session.aclose()
            if self.http_cache is not None:
                await self.http_cache.aclose()
            self.frontier.close()
            await self.signals.send(
                "spider_closed", spider=self.spider, reason=self.stats.finish_reason
            )

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
        policy = self.policy
        if policy.start_reached or not policy.start_failed or self.interrupted:
            return
        self.failed = True
        shown = "; ".join(policy.start_failures)
        more = policy.start_failed - len(policy.start_failures)
        log.error(
            "spider %s: no start request could be crawled: %s%s",
            self.name,
            shown,
            f"; and {more} more" if more > 0 else "",
        )

    def lost_items(self) -> bool:
        """Whether items were lost to pipeline errors in a crawl that counts that as failing
        (``fail_on_item_errors``): an export with holes must not look like a clean run."""
        errors = self.pipelines.errors
        if errors and self.settings.fail_on_item_errors:
            log.error(
                "spider %s: %d item%s lost to pipeline errors (logged above); the exit status "
                "is 1 (set fail_on_item_errors = false to accept such losses)",
                self.name,
                errors,
                "" if errors == 1 else "s",
            )
            return True
        return False

    def warn_if_no_items(self) -> None:
        """Say so when pages reached callbacks but not one item came out of them: an empty
        export with exit status 0 is otherwise a puzzle, most often a selector that
        matches nothing. (Items all dropped by a pipeline are in the summary already.)"""
        pipelines = self.pipelines
        if not self.stats.pages or pipelines.items_scraped or pipelines.items_dropped:
            return
        if pipelines.errors:  # items came, and failed: logged where they failed
            return
        names = self.callbacks.names()
        describe = getattr(self.spider, "_callback_names", None)  # a CrawlSpider's rules
        if describe is not None:
            names = describe(names)
        log.warning(
            "spider %s: %d pages reached callback%s %s, which yielded no items; check that "
            "their selectors match the pages (crawl parse URL --spider %s shows what a "
            "callback yields)",
            self.name,
            self.stats.pages,
            "s" if len(names) > 1 else "",
            ", ".join(names),
            self.name,
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
            self._schedule(request)
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
        """A worker of an in-memory or ``--job`` crawl: takes requests until none is left."""
        get = self.scheduler.get
        done = self.scheduler.task_done
        release_slot = self.scheduler.release_slot
        fetch, handle = self._steps()
        job = self.job
        while True:
            request = await get()
            if request is None:
                return
            keep = False
            host = host_of(request.url)  # its slot's, whatever a middleware does to it
            try:
                try:
                    outcome = await fetch(request)
                finally:
                    # The host slot is free as soon as the exchange is over, not after
                    # the callback.
                    release_slot(host)
                keep = await handle(request, outcome)
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

    def _steps(
        self,
    ) -> tuple[Callable[[Request], Awaitable[Any]], Callable[[Request, Any], Awaitable[bool]]]:
        """The fetch and outcome steps of a worker, chosen once when it starts: a crawl
        without middlewares, response_received handlers or DEBUG lines pays nothing for
        them (the plain fetch, and the policy straight after it)."""
        if self._extended():
            return self.middlewares.fetch, self._outcome_handler()
        return self.fetcher.fetch, self.policy.handle

    def _extended(self) -> bool:
        """Whether the workers need the middleware chain or the per-response hooks."""
        return (
            bool(self.middlewares)
            or self.signals.connected("response_received")
            or log.isEnabledFor(logging.DEBUG)
            or self.signals.connected("request_dropped")
        )

    def _outcome_handler(self) -> Callable[[Request, Any], Awaitable[bool]]:
        """What the extended loops do with an outcome of the middleware chain: a
        replacement request, a drop, or a response handled as the plain loop does
        (after its DEBUG line and response_received, when asked for)."""
        received = self.signals.connected("response_received")
        robots_dropped = self.signals.connected("request_dropped")
        debug = log.isEnabledFor(logging.DEBUG)
        handle = self.policy.handle

        async def handle_outcome(request: Request, outcome: Any) -> bool:
            if isinstance(outcome, Replaced):
                await self.policy.replace(request, outcome.request)
                return False
            if isinstance(outcome, Dropped):
                await self._dropped(request, outcome)
                return False
            if type(outcome) is not Skipped and type(outcome) is not Failed:
                assert isinstance(outcome, HTTPResponse)
                if debug:
                    _log_crawled(request, outcome)
                if received:
                    await self.signals.send(
                        "response_received", response=outcome, request=request, spider=self.spider
                    )
            elif robots_dropped and outcome is Skipped.DISALLOWED:
                await self.signals.send(
                    "request_dropped", request=request, reason="robots", spider=self.spider
                )
            return await handle(request, outcome)

        return handle_outcome

    async def _shared_worker(self) -> None:
        """The worker loop of a shared crawl: what a page yields is kept with the page
        (``PAGE``, a context variable of this task) and committed with its done mark.
        Middlewares, response_received and DEBUG lines work as in the extended loop."""
        from ..distributed._frontier import PAGE, PageOutcome

        get = self.scheduler.get
        done = self.scheduler.task_done
        release_slot = self.scheduler.release_slot
        fetch, handle_outcome = self._steps()
        shared_delays = self.shared_delays
        while True:
            request = await get()
            if request is None:
                return
            PAGE.set(PageOutcome())
            # Committed only once handled: a page cancelled midway (an abort) keeps its
            # lease, given back when the worker leaves, so it is fetched again.
            handled = keep = False
            host = host_of(request.url)  # its slot's, whatever a middleware does to it
            try:
                try:
                    if shared_delays is not None:
                        await self._book_shared_slot(shared_delays, request)
                    outcome = await fetch(request)
                finally:
                    release_slot(host)
                keep = await handle_outcome(request, outcome)
                handled = True
            except Exception:
                self.stats.errors["internal"] += 1
                log.exception("spider %s: internal error on %s", self.name, request.url)
                handled = True
            finally:
                # Not sent (a login failed): its lease is kept and given back at the end.
                done(request if handled and not keep else None)
                PAGE.set(None)

    async def _book_shared_slot(self, shared: RedisDelays, request: Request) -> None:
        """Wait for ``request``'s slot among every process of the crawl, if its host has
        a delay or a throttle change to tell (this process's own spacing was kept by the
        scheduler already). The booking answers with the crawl's throttle of the host."""
        host = host_of(request.url)
        gap = self.politeness.shared_gap(host)
        if gap > 0 or shared.pending(host):
            wait, throttle = await shared.reserve(host, gap)
            # Taken before the sleep: answers that come meanwhile change it from there.
            self.politeness.share_throttle(host, throttle)
            if wait > 0:
                await trio.sleep(wait)

    def _share_throttles(self, delays: RedisDelays) -> None:
        """Keep the AIMD throttle of each host in Redis, for every process of the crawl:
        this one's 429s and recoveries go there, and it learns the hosts others throttle
        with each round of its shared crawl (when the round reaches the same keys)."""
        from ..distributed import ThrottledHosts, ThrottleRule

        p = self.politeness
        self._throttle_rule = ThrottleRule(p.min_backoff, p.backoff, p.recovery_step, p.max_delay)
        if self.shared is not None and self.shared.keys.prefix == delays.prefix:
            self.shared.watch_throttles(ThrottledHosts(delays.index_key, p.learn_throttle))

    def _share_throttle(self, host: str, raised: bool) -> None:
        assert self.shared_delays is not None
        base = self.politeness.base_delay(host)
        self.shared_delays.throttle(host, raised, base, self._throttle_rule)

    async def _dropped(self, request: Request, dropped: Dropped) -> None:
        if dropped.broken:
            return  # logged and counted as an error where it broke
        counts = self.stats.dropped
        reason = dropped.reason
        if reason not in counts and len(counts) >= _MAX_DROP_REASONS:
            reason = "(other reasons)"
        counts[reason] += 1
        log.debug("spider %s: dropped %s %s (%s)", self.name, request.method, request.url, reason)
        if self.signals.connected("request_dropped"):
            await self.signals.send(
                "request_dropped", request=request, reason=dropped.reason, spider=self.spider
            )

    def _count_signal_error(self) -> None:
        self.stats.errors["signal_handler"] += 1

    # -- signals on the paths of every request and item: wired only when connected -----

    def _wire_signals(self) -> None:
        """Route scheduling, items and idleness through the signals that are connected;
        what nothing listens to keeps its direct path (asked once, here)."""
        signals = self.signals
        if signals.connected("request_scheduled") or signals.connected("request_dropped"):
            self._schedule = self._enqueue_signalled
            self.callbacks._enqueue = self._enqueue_signalled
            self.policy._enqueue = self._enqueue_signalled
        if signals.connected("request_dropped"):
            # Links seen before are then built into Requests and dropped by the scheduler,
            # each with its signal, instead of being skipped unseen by follow_all().
            self.fetcher._unseen = self.policy._unseen = self.middlewares._unseen = _keep_all
        if signals.connected("item_scraped") or item_log.isEnabledFor(logging.DEBUG):
            self.callbacks._item = self._item_extended
        if signals.connected("item_dropped"):
            self.pipelines.on_drop = self._item_dropped
        if signals.connected("item_error"):
            self.pipelines.on_error = self._item_error
        if signals.connected("spider_idle"):
            self.scheduler.on_idle = self._idle

    def schedule(self, request: Request) -> bool:
        """Queue ``request`` as if a callback had yielded it (filters included); True if
        queued. For extensions and signal handlers (spider_idle's among them)."""
        if not isinstance(request, Request):
            raise TypeError(f"schedule() takes a Request, not {type(request).__name__}")
        return self._schedule(request)

    def _enqueue_signalled(self, request: Request, referrer: PageReferrer | None = None) -> bool:
        signals = self.signals
        dropped = self.stats.dropped
        before = dict(dropped) if signals.connected("request_dropped") else None
        queued = self.scheduler.enqueue(request, referrer)
        if queued:
            signals.send_nowait("request_scheduled", request=request, spider=self.spider)
        elif before is not None:
            reason = next((k for k, n in dropped.items() if n != before.get(k, 0)), "filtered")
            signals.send_nowait(
                "request_dropped", request=request, reason=reason, spider=self.spider
            )
        return queued

    async def _idle(self) -> None:
        """spider_idle: what handlers return (a Request, or an iterable of them) is queued."""
        for result in await self.signals.send("spider_idle", spider=self.spider):
            if result is None:
                continue
            if isinstance(result, Request):
                self.schedule(result)
            elif isinstance(result, AsyncIterable):
                async for request in result:
                    self.schedule(request)
            else:
                for request in result:
                    self.schedule(request)

    async def _item_extended(self, item: Any) -> None:
        """``_item`` that also logs the item (DEBUG) and sends item_scraped."""
        result = await self.pipelines.process(item, self.spider)
        if result is not None:
            if self.shared is not None:
                self._share_item(result)
            if item_log.isEnabledFor(logging.DEBUG):
                item_log.debug("Scraped from <%s>\n%r", _PAGE.get(), result)
            if self.signals.connected("item_scraped"):
                await self.signals.send("item_scraped", item=result, spider=self.spider)
        if self._max_items and self.pipelines.items_scraped - self._items_before >= self._max_items:
            self.stop("max_items")

    async def _item_dropped(self, item: Any, reason: str) -> None:
        await self.signals.send("item_dropped", item=item, reason=reason, spider=self.spider)

    async def _item_error(self, item: Any, error: Exception) -> None:
        await self.signals.send("item_error", item=item, error=error, spider=self.spider)

    def _count_middleware_error(self) -> None:
        self.stats.errors["middleware"] += 1

    async def _item(self, item: Any) -> None:
        final = await self.pipelines.process(item, self.spider)
        if final is not None and self.shared is not None:
            self._share_item(final)
        if self._max_items and self.pipelines.items_scraped - self._items_before >= self._max_items:
            self.stop("max_items")

    def _share_item(self, item: Any) -> None:
        assert self.shared is not None
        try:
            line = self._encode_item(item)
        except ENCODE_ERRORS as exc:
            self.pipelines.errors += 1
            log.error("spider %s: %s; the item is dropped", self.name, exc)
            return
        self.shared.frontier.add_item(line)

    # -- what a job checkpoints (jobs.CrawlState) -----------------------------------------

    @property
    def finish_reason(self) -> str:
        return self.stats.finish_reason or self.scheduler.stop_reason or "finished"

    async def open_pipelines(self) -> None:
        await self.pipelines.open(self.spider)

    async def stage_pipelines(self) -> tuple[list[tuple[str, Any]], list[Callable[[], None]]]:
        states, syncs = await self.pipelines.stage_checkpoint()
        names = [type(p).__name__ for p in self.pipelines.pipelines]
        return list(zip(names, states, strict=True)), syncs

    def item_counters(self) -> tuple[int, Mapping[str, int]]:
        return self.pipelines.items_scraped, self.pipelines.items_dropped

    def restore_item_counters(self, scraped: int, dropped: Mapping[str, int]) -> None:
        self.pipelines.items_scraped = scraped
        self.pipelines.items_dropped.update(dropped)

    def retry_later(self, request: Request, delay: float) -> None:
        self.scheduler.retry_later(request, delay)

    def throttles(self) -> dict[str, float]:
        return self.politeness.throttles()

    def restore_throttles(self, throttles: dict[str, float]) -> None:
        self.politeness.restore_throttles(throttles)

    def session_states(self) -> list[tuple[str, list[dict[str, Any]], bool]]:
        return [
            (name, session.cookies.to_list(), session.logged_in)
            for name, session in self.sessions.items()
        ]

    def restore_session(self, name: str, cookies: Cookies | None, logged_in: bool) -> None:
        session = self.session(name)
        if cookies is not None:
            session.cookies.update(cookies)
        if logged_in:
            # Its cookies hold the login: no need to log in again until a response
            # comes back logged out.
            session.mark_logged_in()


def _log_crawled(request: Request, response: HTTPResponse) -> None:
    """The DEBUG line of a response, as Scrapy writes it; the page is remembered (in this
    worker's context) for the lines of the items its callback yields."""
    status = response.status_code
    headers = request.headers or {}
    referer = next((v for k, v in headers.items() if k.lower() == "referer"), None)
    log.debug("Crawled (%d) <%s %s> (referer: %s)", status, request.method, request.url, referer)
    _PAGE.set(f"{status} {request.url}")


def _keep_all(urls: list[str]) -> list[str]:
    """The link prefilter of a crawl whose request_dropped handlers see every duplicate."""
    return urls
