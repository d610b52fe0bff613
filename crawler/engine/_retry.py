"""When to retry a request, and how long to wait first: tenacity's strategies, our loop.

tenacity decides (stop after N attempts, which failures count, exponential
backoff with jitter capped at a maximum); the engine does the waiting, by
re-queueing the request with a not-before time, so a backing-off request
never holds a worker the way ``tenacity.retry`` around a coroutine would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..http import HTTPError, LocalProtocolError, TransportError, UnsupportedProtocol
from ..request import Request
from ._robots import RobotsUnavailable

if TYPE_CHECKING:
    import tenacity

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _StatusFailure(Exception):
    """Stands for a retryable status code where tenacity expects an outcome."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _StatusFailure):
        return True
    # A request we could not even put on the wire (bad header, unsupported
    # scheme) fails the same way every time: retrying it only wastes time.
    # DecodingError (a RequestError, not a TransportError) is not retried either:
    # the server framed those bytes as the whole body and would send them again.
    never_sendable = isinstance(exc, LocalProtocolError | UnsupportedProtocol)
    return isinstance(exc, TransportError) and not never_sendable


class RetryPolicy:
    """``delay_for(request, attempt, ...)``: seconds to wait before retrying, or None to give up.

    ``attempt`` counts the attempts made so far (1 after the first failure);
    ``retry_times`` is the number of retries allowed on top of the first try.
    """

    def __init__(
        self,
        *,
        retry_times: int,
        retry_http_codes: Iterable[int],
        backoff: float,
        backoff_max: float,
    ) -> None:
        self.retry_http_codes = frozenset(retry_http_codes)
        self.backoff_max = backoff_max
        self._retry_times = retry_times
        self._backoff = backoff
        # Made by the first failure: a crawl without one never imports tenacity.
        self._retrying: tenacity.Retrying | None = None

    def _strategies(self) -> tenacity.Retrying:
        import tenacity

        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retry_times + 1),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self._backoff, max=self.backoff_max, jitter=self._backoff
            ),
            retry=tenacity.retry_if_exception(_is_retryable),
        )
        return self._retrying

    def should_retry_status(self, status: int) -> bool:
        return status in self.retry_http_codes

    def delay_for(
        self,
        request: Request,
        attempt: int,
        *,
        error: HTTPError | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> float | None:
        if request.method not in IDEMPOTENT_METHODS and not request.retry_any_method:
            return None
        import tenacity

        retrying = self._retrying or self._strategies()
        state = tenacity.RetryCallState(retrying, None, (), {})
        state.attempt_number = attempt
        failure: BaseException = error if error is not None else _StatusFailure(status or 0)
        state.set_exception((type(failure), failure, None))
        if not retrying.retry(state) or retrying.stop(state):
            return None
        delay = float(retrying.wait(state))
        if isinstance(error, RobotsUnavailable):
            return _after_robots_refetch(delay, error.retry_in, self.backoff_max)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


def _after_robots_refetch(delay: float, retry_in: float, backoff_max: float) -> float | None:
    """A retry only when robots.txt will be fetched again by then: sooner, it would meet
    the cached failure instead of the server (a retry in name only). When that is
    further off than the longest wait between retries, the request fails now."""
    if retry_in > backoff_max:
        return None
    return max(delay, retry_in)
