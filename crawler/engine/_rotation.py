"""Rotating requests through the ``proxies`` list, benching the ones that fail.

Each request that the rotation routes (none that names its own proxy or whose
host has a ``[domains]`` proxy) takes the next proxy in turn. A proxy that
fails ``proxy_bench_after`` times in a row (it cannot be reached, refuses
the tunnel, answers 407, or the response has one of ``proxy_ban_statuses``)
is benched: skipped for ``proxy_bench_seconds``, twice as long at each bench
that follows without a success in between, up to ``proxy_bench_max_seconds``.
Back from the bench, one more failure benches it again. The failed request
itself is retried by the policy like any failure (so it counts as a retry and
stops at ``retry_times``) and its next attempt takes another proxy.

When every proxy is benched, a request sleeps until the first one is back
(one timer, no polling), unless that is further off than the time a request
may wait for a connection (``pool_timeout``): then it fails at once with a
``ProxyError`` saying so. The bookkeeping is a few attribute updates per
request; a crawl without ``proxies`` has no rotation at all.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import trio

from ..http import PROXY, ConnectError, ConnectTimeout, Proxy, ProxyError, Transport
from ..http import Request as HTTPRequest
from ..http import Response as HTTPResponse

__all__ = ["PROXY_BANNED", "ProxyRotation"]

log = logging.getLogger("crawler.engine")

#: Response extension set when a rotated proxy's response counted as a ban: the
#: proxy's label. The policy retries such a response whatever its status.
PROXY_BANNED = "proxy_banned"

_PROXY_DOWN = (ConnectError, ConnectTimeout, ProxyError)
_MAX_WAITS = 1000  # bench ends a request sleeps through before giving up


class _Turn:
    """One proxy's standing in the rotation."""

    __slots__ = ("benched_until", "counts", "last_failure", "last_used", "proxy", "streak", "times")

    def __init__(self, proxy: Proxy, counts: Counter[str]) -> None:
        self.proxy = proxy
        self.counts = counts
        self.streak = 0  # failures in a row
        self.times = 0  # benches since the last success
        self.benched_until = -math.inf
        self.last_failure = -math.inf
        self.last_used = 0


class ProxyRotation:
    """Sends requests through the proxies of the list in turn (the ``proxies`` setting)."""

    __slots__ = (
        "_ban",
        "_bench",
        "_bench_after",
        "_bench_max",
        "_least_failed",
        "_next",
        "_tick",
        "_turns",
    )

    def __init__(
        self,
        proxies: Sequence[Proxy],
        *,
        rotation: str,
        ban_statuses: Iterable[int],
        bench_after: int,
        bench_seconds: float,
        bench_max_seconds: float,
        counters: dict[str, Counter[str]],
    ) -> None:
        self._turns = [
            _Turn(p, counters.setdefault(p.label, Counter(requests=0, failures=0, benched=0)))
            for p in proxies
        ]
        self._least_failed = rotation == "least-recently-failed"
        self._ban = frozenset(ban_statuses) | {407}
        self._bench_after = bench_after
        self._bench = bench_seconds
        self._bench_max = max(bench_max_seconds, bench_seconds)
        self._next = 0
        self._tick = 0

    async def send(self, transport: Transport, request: HTTPRequest) -> HTTPResponse:
        """Send ``request`` through the next proxy available, and score the proxy."""
        turn = await self._acquire(request)
        request.extensions[PROXY] = turn.proxy
        turn.counts["requests"] += 1
        try:
            response = await transport.handle_request(request)
        except _PROXY_DOWN as exc:
            self._failed(turn, str(exc))
            raise
        if response.status_code in self._ban:
            response.extensions[PROXY_BANNED] = turn.proxy.label
            self._failed(turn, f"HTTP {response.status_code} for {request.url}")
        elif turn.streak or turn.times:
            turn.streak = turn.times = 0
        return response

    # -- choosing ----------------------------------------------------------------

    async def _acquire(self, request: HTTPRequest) -> _Turn:
        back = limit = None
        for _ in range(_MAX_WAITS):
            now = trio.current_time()
            turn = self._pick(now)
            if turn is not None:
                return turn
            back = min(t.benched_until for t in self._turns)
            timeouts = request.timeout
            limit = None if timeouts is None else timeouts.pool
            if limit is not None and back - now > limit:
                break
            await trio.sleep_until(back)
        wait = max((back or 0.0) - trio.current_time(), 0.0)
        raise ProxyError(
            f"Every proxy of the proxies setting is benched for {request.url}: the first "
            f"is back in {wait:.1f} s, longer than a request may wait for a connection "
            f"(pool_timeout {limit} s)",
            request=request,
        )

    def _pick(self, now: float) -> _Turn | None:
        turns = self._turns
        if self._least_failed:
            best: _Turn | None = None
            for turn in turns:
                if turn.benched_until <= now and (
                    best is None
                    or (turn.last_failure, turn.last_used) < (best.last_failure, best.last_used)
                ):
                    best = turn
            if best is not None:
                self._tick += 1
                best.last_used = self._tick
            return best
        count = len(turns)
        for _ in range(count):
            turn = turns[self._next]
            self._next = (self._next + 1) % count
            if turn.benched_until <= now:
                return turn
        return None

    # -- scoring -----------------------------------------------------------------

    def _failed(self, turn: _Turn, why: str) -> None:
        now = trio.current_time()
        turn.counts["failures"] += 1
        turn.last_failure = now
        turn.streak += 1
        # Back from a bench, one failure is enough to go back to it.
        if turn.streak < self._bench_after and turn.times == 0:
            return
        seconds = min(self._bench * 2**turn.times, self._bench_max)
        turn.times += 1
        turn.streak = 0
        turn.benched_until = now + seconds
        turn.counts["benched"] += 1
        log.warning("proxy %s benched for %.1f s: %s", turn.proxy.label, seconds, why)
