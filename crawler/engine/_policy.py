"""The policy: what to do with a fetch's outcome.

A response is counted and reported to politeness, then switched on: a
redirect becomes a new request (by the shared ``redirect_step`` rule, through
the scheduler so the target is deduplicated, filtered and politely sent), a
retryable status or error goes back to the scheduler after a backoff, an
error status or an exhausted request fails (counted, logged, its errback
called), and everything else reaches the callback.

It is kept apart from sending (``_fetch``) and from the crawl's lifecycle
(``_crawler``) so each can be read on its own: it reaches the rest of the
crawl only through the few callables it is given, never through the Crawler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._links import host_of, resolve_url
from ..http import REDIRECT_STATUSES, URL, HTTPError, HTTPStatusError, redirect_step
from ..http import Response as HTTPResponse
from ..request import Callback, Request
from ..response import Response
from ._failures import describe_failure, describe_status, short_cause
from ._fetch import Failed, Outcome, Skipped
from ._politeness import THROTTLE_STATUSES, parse_retry_after
from ._referer import PageReferrer, Policy, redirect_referer
from ._retry import RetryPolicy
from ._rotation import PROXY_BANNED
from ._stats import Stats

if TYPE_CHECKING:
    from ..jobs._job import PageGate

__all__ = ["OutcomePolicy"]

log = logging.getLogger("crawler.engine")

#: ``invoke(request, callback, args, referrer, kwargs)``: run a spider callback (a method
#: name, or any callable in an in-memory crawl).
Invoke = Callable[
    [Request, Callback, tuple[Any, ...], PageReferrer | None, Mapping[str, Any]], Awaitable[None]
]

# What an errback gets as keyword arguments: none, as in Scrapy (cb_kwargs are the callback's).
_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})

_START_FAILURES_SHOWN = 10


class OutcomePolicy:
    """Acts on each fetch outcome; ``await handle(request, outcome)`` is True when the
    request was not handled and must stay queued (its session could not log in).

    Start requests (depth 0, their retries and redirects included) are tracked
    for the crawl's verdict: ``start_reached`` once one reached its callback,
    ``start_failed`` and the first few ``start_failures`` as "URL (cause)".
    """

    def __init__(
        self,
        spider_name: str,
        *,
        stats: Stats,
        retry: RetryPolicy,
        enqueue: Callable[[Request], object],
        retry_later: Callable[[Request, float], None],
        unseen: Callable[[list[str]], list[str]],
        invoke: Invoke,
        record_response: Callable[[str, int, str | None], None],
        accept_statuses: frozenset[int],
        max_redirects: int,
        referrer_policy: Policy | None,
        gate: PageGate | None = None,
    ) -> None:
        self.name = spider_name
        self._stats = stats
        self._retry = retry
        self._retry_codes = retry.retry_http_codes
        self._enqueue = enqueue
        self._retry_later = retry_later
        self._unseen = unseen
        self._invoke = invoke
        self._record_response = record_response
        # The spider's handle_httpstatus_list: error statuses every request accepts.
        self._accept = accept_statuses
        self._max_redirects = max_redirects
        self._referrer_policy = referrer_policy
        self._gate = gate
        self.start_reached = False
        self.start_failed = 0
        self.start_failures: list[str] = []

    async def handle(self, request: Request, outcome: Outcome) -> bool:
        if type(outcome) is Skipped:
            if outcome is Skipped.DISALLOWED:
                self._stats.dropped["robots"] += 1
                return False
            return True  # its session could not log in: counted and logged
        gate = self._gate
        if gate is not None:
            # What the page yields is committed together with its leaving the queue.
            if gate.closed:
                await gate.enter(request)
            else:
                gate.enter_now(request)
        if type(outcome) is Failed:
            await self._failed(request, outcome.error, None)
            return False
        # A response: handled here rather than in a method of its own, one await less
        # per page.
        assert isinstance(outcome, HTTPResponse)
        response = outcome
        stats = self._stats
        status = response.status_code
        stats.status[status] += 1
        self._record_response(
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
            if status >= 400 or status in self._retry_codes:
                # A rotated proxy's refusal: retried through another, whatever the status.
                banned = status >= 400 and PROXY_BANNED in response.extensions
                if self._maybe_retry(request, status=status, response=response, banned=banned):
                    return False
                accepted = request.accept_statuses
                if status not in self._accept and not (
                    isinstance(accepted, str) or status in accepted
                ):
                    await self._failed(request, None, response)
                    return False
        stats.pages += 1
        if request.depth == 0:
            self.start_reached = True
        policy = self._referrer_policy
        await self._invoke(
            request,
            request.callback or "parse",
            (Response.from_http(response, request, self._unseen),),
            PageReferrer(policy, request.url) if policy is not None else None,
            request._cb_kwargs or _NO_KWARGS,
        )
        return False

    async def replace(self, request: Request, new: Request) -> None:
        """A middleware answered ``request`` with ``new``: schedule it in its place (what a
        page yields for a durable job, so through the same gate)."""
        gate = self._gate
        if gate is not None:
            if gate.closed:
                await gate.enter(request)
            else:
                gate.enter_now(request)
        self._enqueue(new)

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
        # Its cookies are in the jar since it was sent: the jar decides where they go next.
        changes: dict[str, Any] = {"url": url, "redirects": hops, "retries": 0, "cookies": None}
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
        self._stats.redirects += 1
        self._enqueue(request.replace(**changes))

    def _maybe_retry(
        self,
        request: Request,
        *,
        error: HTTPError | None = None,
        status: int | None = None,
        response: HTTPResponse | None = None,
        banned: bool = False,
    ) -> bool:
        if request.dont_retry:
            return False
        if status is not None and not banned and not self._retry.should_retry_status(status):
            return False
        attempt = request.retries + 1
        delay = self._retry.delay_for(
            request,
            attempt,
            error=error,
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after"))
            if response is not None
            else None,
        )
        if delay is None:
            return False
        request.retries = attempt
        self._stats.retries += 1
        log.debug(
            "spider %s: retrying %s in %.2fs (attempt %d): %s",
            self.name,
            request.url,
            delay,
            attempt + 1,
            error if error is not None else f"HTTP {status}",
        )
        self._retry_later(request, delay)
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
        stats = self._stats
        stats.errors[kind] += 1
        stats.failed += 1
        if request.depth == 0:
            self.start_failed += 1
            if len(self.start_failures) < _START_FAILURES_SHOWN:
                short = cause if error is None else short_cause(error)
                self.start_failures.append(f"{request.url} ({short})")
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
            await self._invoke(request, request.errback, (request, failure), None, _NO_KWARGS)
