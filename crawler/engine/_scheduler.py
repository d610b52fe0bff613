"""The scheduler: which request goes out next, so that the crawl stays polite and busy.

Requests wait in the frontier, grouped by host. The scheduler keeps one small
slot per host (requests in flight, its cap) and sorts hosts into three places:

* ``_ready``: a heap of the hosts that have work, a free slot and whose
  politeness delay has passed, by the priority of their next request (their
  head), then by when they became ready: a worker takes the top one. So a
  high-priority request of one host goes before low-priority ones of others
  when both may go, and hosts whose heads tie are served round-robin;
* ``_waiting``: a heap of hosts by the time their delay ends;
* nowhere: hosts with no work, or at their connection cap; a host re-enters
  when a request is added or one of its exchanges ends.

So a slow or capped host never holds up the others: it simply is not in the
ready heap while it cannot be served. A host's place in the heap is keyed by
its head when it is placed; a push that puts a higher-priority request at the
head re-keys it (the old entry is left behind, emptied, and skipped), so the
heap never needs a scan of all hosts. A frontier without ``head_priority``
gives every host the same key: round-robin, as before. Workers that find nothing ready park
until something changes (a push, a slot freed, a delay ending, a retry timer
expiring), so an idle crawl costs no CPU.

Retries wait in their own heap with a not-before time instead of sleeping in
a worker, so a backoff never ties up a worker. Once its wait is over, a retry
goes to the front of its host's queue: it is the oldest request there.

``max_pages`` counts first attempts. When that many went out, no new page is
sent, but retries still are, until each has succeeded or run out: they are
attempts of pages within the limit, and abandoning them would leave pages
neither crawled nor failed.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Awaitable, Callable, Iterable
from heapq import heappop, heappush
from itertools import count
from typing import TYPE_CHECKING, Protocol

import trio

from .._links import host_of
from ..frontier import Frontier
from ..request import Request
from ._callbacks import callback_label
from ._moved_meta import MovedMetaWarnings
from ._stats import Stats

if TYPE_CHECKING:
    from ._referer import PageReferrer

__all__ = ["PolitenessPolicy", "Scheduler"]

log = logging.getLogger("crawler.scheduler")

_IDLE, _READY, _WAITING = 0, 1, 2
# The priority a retry is queued with once its wait is over (its own is restored when it
# leaves the queue): ahead of any request of its host, so that it can be found, and sent,
# after max_pages without going through the rest.
_RETRY_FIRST = 2**63


class PolitenessPolicy(Protocol):
    """What the scheduler asks of the politeness policy (times on the trio clock)."""

    def next_allowed_time(self, host: str) -> float: ...

    def record_request(self, host: str) -> None: ...


def _unstorable_callback(request: Request) -> TypeError:
    """The error for a request whose callback a job cannot store: it names both."""
    kind, callback = (
        ("callback", request.callback)
        if request.callback is not None and type(request.callback) is not str
        else ("errback", request.errback)
    )
    assert callback is not None
    return TypeError(
        f"{kind} {callback_label(callback)} of {request.method} {request.url} is not a "
        "method of the spider: a --job crawl stores callbacks by name, so that it can "
        f"resume; make it a spider method ({kind}=self.parse_item) and pass what it needs "
        "in cb_kwargs"
    )


class _Slot:
    __slots__ = ("cap", "host", "in_flight", "key", "seq", "state")

    def __init__(self, host: str, cap: int) -> None:
        self.host = host
        self.cap = cap
        self.in_flight = 0
        self.state = _IDLE
        # Its live entry in the ready heap, while it is ready: (key, seq, self) with
        # key = -head priority; an entry of another seq was left behind by a re-key.
        self.key = 0
        self.seq = -1


def _no_priority(host: str) -> int:
    return 0


class Scheduler:
    """Dedup, depth and offsite filters in front of a frontier; per-host readiness behind it."""

    def __init__(
        self,
        frontier: Frontier,
        politeness: PolitenessPolicy,
        *,
        host_cap: Callable[[str], int],
        stats: Stats,
        depth_limit: int = 0,
        max_pages: int = 0,
        max_url_length: int = 0,
        host_filter: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = trio.current_time,
        recent_urls: int = 100_000,
        local: Callable[[Request], bool] | None = None,
    ) -> None:
        self.frontier = frontier
        # A durable frontier can say whether a request can be stored (its meta is JSON).
        self._check_storable: Callable[[Request], None] | None = getattr(
            frontier, "check_storable", None
        )
        self.politeness = politeness
        self._host_cap = host_cap
        self.stats = stats
        self._moved_meta = MovedMetaWarnings(stats.spider)
        # The same set, emptied as keys are reported: after that a request costs one test.
        self._unwarned_meta = self._moved_meta.unwarned
        self.depth_limit = depth_limit
        self.max_pages = max_pages
        # 0 (no limit) becomes a length no URL reaches: one comparison per request either way.
        self.max_url_length = max_url_length or sys.maxsize
        self.host_filter = host_filter
        self._clock = clock
        #: ``local(request)``: True when the request will be answered without the network
        #: (the HTTP cache has it): it then takes no politeness turn from its host.
        self.local = local
        self._slots: dict[str, _Slot] = {}
        # Entries (-head priority, seq, slot); see _Slot.
        self._ready: list[tuple[int, int, _Slot]] = []
        self._ready_count = 0  # hosts in it (its live entries)
        self._head_priority: Callable[[str], int] = getattr(frontier, "head_priority", _no_priority)
        self._waiting: list[tuple[float, int, _Slot]] = []
        self._delayed: list[tuple[float, int, Request]] = []
        self._seq = count()
        # Raw URLs recently enqueued, in two generations so memory stays bounded.
        self._recent: set[str] = set()
        self._recent_old: set[str] = set()
        self._recent_size = recent_urls
        self._lot = trio.lowlevel.ParkingLot()  # idle workers
        self._timer_lot = trio.lowlevel.ParkingLot()  # the timekeeper, between deadlines
        self._timer_at = math.inf  # the deadline the timekeeper sleeps until
        self.active = 0  # requests handed out and not yet done, plus open feeders
        self.dispatched = 0  # first attempts handed out (what max_pages counts)
        # Retries queued at the front of their host's queue, with their own priority
        # (by id: the queue holds the objects themselves), and how many per host.
        self._retry_priority: dict[int, int] = {}
        self._retries_queued: dict[str, int] = {}
        self._draining = False  # max_pages reached: only retries go out
        self.stopping = False
        self.stop_reason = ""
        self.on_stop: Callable[[], None] | None = None  # e.g. to cancel a start-requests feeder
        #: Called when the crawl would end for want of work (spider_idle); may queue more.
        self.on_idle: Callable[[], Awaitable[None]] | None = None
        self.closed = False
        # A shared frontier sends new requests to Redis and hands back leases later
        # (``refilled``): a push makes its host ready only if it stayed here (a retry).
        push_here: Callable[[Request, str], bool] | None = getattr(frontier, "push_here", None)
        if push_here is not None:
            self._push_here = push_here
            self._push = self._push_shared  # type: ignore[method-assign]
        for host in frontier.hosts():
            self._place(self._slot(host), clock())

    # -- adding -------------------------------------------------------------------

    def enqueue(self, request: Request, referrer: PageReferrer | None = None) -> bool:
        """Add a request unless a filter drops it (counted by reason); True if queued.

        ``referrer``: the page that yielded it, which gives it its Referer header
        once it passed the filters (so that duplicates cost nothing).
        """
        if len(request.url) > self.max_url_length:
            # First, before the URL is hashed, parsed or fingerprinted: a 100 kB
            # URL costs one len() here and nothing more.
            return self._drop_long(request)
        if self._check_storable is not None:
            callback, errback = request.callback, request.errback
            if (callback is not None and type(callback) is not str) or (
                errback is not None and type(errback) is not str
            ):
                raise _unstorable_callback(request)
        meta = request._meta  # None when empty: reading it makes no dict
        unwarned = self._unwarned_meta
        if meta and unwarned and not unwarned.isdisjoint(meta):
            self._moved_meta.report(meta, request.url)
        if not request.dont_filter:
            if self.depth_limit and request.depth > self.depth_limit:
                self.stats.dropped["depth"] += 1
                return False
            if self._check_storable is not None and (meta or request.headers or request._cb_kwargs):
                # Refused before its URL counts as seen, so that a storable request
                # for the same URL is not dropped as a duplicate later.
                self._check_storable(request)
            try:
                new = self.frontier.add_seen(request.method, request.url, request.body)
            except ValueError:
                self.stats.dropped["invalid_url"] += 1
                log.debug("dropped %s: not an absolute http(s) URL", request.url)
                return False
            if request.method == "GET" and not request.body:
                self._remember(request.url)
            if not new:
                self.stats.dropped["duplicate"] += 1
                return False
            if self.host_filter is not None and not self.host_filter(request.url):
                self.stats.dropped["offsite"] += 1
                return False
        if referrer is not None:
            referrer.apply(request)
        self._push(request, host_of(request.url))
        return True

    def _drop_long(self, request: Request) -> bool:
        self.stats.dropped["url_too_long"] += 1
        log.debug(
            "dropped %.200s...: %d characters, over max_url_length %d",
            request.url,
            len(request.url),
            self.max_url_length,
        )
        return False

    def _remember(self, url: str) -> None:
        recent = self._recent
        if len(recent) >= self._recent_size:
            self._recent_old = recent
            recent = self._recent = set()
        recent.add(url)

    def unseen(self, urls: list[str]) -> list[str]:
        """``urls`` without those a plain GET of which was already enqueued.

        A cheap raw-string check (no canonicalisation) that lets link following
        skip building Requests that would only be dropped as duplicates (and
        are counted as such); a URL it keeps may still be one, the seen set
        decides.
        """
        recent, old = self._recent, self._recent_old
        kept = [url for url in urls if url not in recent and url not in old]
        if len(kept) != len(urls):
            self.stats.dropped["duplicate"] += len(urls) - len(kept)
        return kept

    def _push(self, request: Request, host: str) -> None:
        self.frontier.push(request, host)
        self._queued_here(request, host)

    def _push_shared(self, request: Request, host: str) -> None:
        if self._push_here(request, host):
            self._queued_here(request, host)
        # else gone to Redis: no worker is woken for a request it cannot take

    def _queued_here(self, request: Request, host: str) -> None:
        """``request`` waits in this process's queue of ``host``: make the host ready (or
        re-key it, for a new head of higher priority) and wake a worker."""
        slot = self._slots.get(host) or self._slot(host)
        state = slot.state
        if state == _IDLE:
            if slot.in_flight < slot.cap:
                self._place(slot, self._clock())
        elif state == _READY and -request.priority < slot.key:
            # A new head of higher priority: re-key the host (the old entry goes stale).
            self._ready_entry(slot, -request.priority)
        self._lot.unpark()

    def retry_later(self, request: Request, delay: float) -> None:
        """Queue ``request`` again once ``delay`` seconds have passed (no dedup)."""
        at = self._clock() + delay
        self.frontier.defer(request, host_of(request.url), delay)
        heappush(self._delayed, (at, next(self._seq), request))
        if at < self._timer_at:
            self._timer_lot.unpark()

    def refilled(self, hosts: Iterable[str]) -> None:
        """The frontier got requests for ``hosts`` by itself (a shared frontier leased
        them), or learned that the crawl is over: place the hosts, wake the workers."""
        now = self._clock()
        for host in hosts:
            slot = self._slots.get(host) or self._slot(host)
            if slot.state == _IDLE:
                self._place(slot, now)
        self._lot.unpark_all()

    def _slot(self, host: str) -> _Slot:
        slot = self._slots[host] = _Slot(host, max(1, self._host_cap(host)))
        return slot

    def set_host_cap(self, host: str, cap: int) -> None:
        slot = self._slots.get(host) or self._slot(host)
        slot.cap = max(1, cap)
        if slot.state == _IDLE:
            self._place(slot, self._clock())
            self._lot.unpark_all()

    # -- taking -------------------------------------------------------------------

    def _place(self, slot: _Slot, now: float) -> None:
        """Put an idle slot where it belongs: ready, waiting on its delay, or nowhere."""
        if slot.in_flight >= slot.cap or not self.frontier.pending(slot.host):
            return
        at = self.politeness.next_allowed_time(slot.host)
        if at <= now:
            slot.state = _READY
            self._ready_count += 1
            self._ready_entry(slot, -self._head_priority(slot.host))
        else:
            slot.state = _WAITING
            heappush(self._waiting, (at, next(self._seq), slot))
            if at < self._timer_at:
                self._timer_lot.unpark()

    def _ready_entry(self, slot: _Slot, key: int) -> None:
        seq = slot.seq = next(self._seq)
        slot.key = key
        heappush(self._ready, (key, seq, slot))

    def _promote(self, now: float) -> None:
        """Move what became due (hosts past their delay, retries past their wait) forward."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._push_retry(heappop(delayed)[2])
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            slot = heappop(waiting)[2]
            slot.state = _IDLE
            self._place(slot, now)

    def _push_retry(self, request: Request) -> None:
        host = host_of(request.url)
        self._retry_priority[id(request)] = request.priority
        request.priority = _RETRY_FIRST
        self._retries_queued[host] = self._retries_queued.get(host, 0) + 1
        self._push(request, host)

    def _popped_retry(self, request: Request, host: str) -> None:
        """``request`` left its host's queue: if it is a retry, give it back its priority."""
        priority = self._retry_priority.pop(id(request), None)
        if priority is None:
            return
        request.priority = priority
        left = self._retries_queued[host] - 1
        if left:
            self._retries_queued[host] = left
        else:
            del self._retries_queued[host]

    def _pop_ready(self) -> Request | None:
        now = self._clock()
        if (self._waiting and self._waiting[0][0] <= now) or (
            self._delayed and self._delayed[0][0] <= now
        ):
            self._promote(now)
        ready = self._ready
        draining = self._draining
        while ready:
            _, seq, slot = heappop(ready)
            if seq != slot.seq:
                continue  # left behind when its host was re-keyed
            self._ready_count -= 1
            slot.state = _IDLE
            slot.seq = -1
            host = slot.host
            if draining and host not in self._retries_queued:
                continue  # only new pages here; a retry pushed for it places it again
            if self.politeness.next_allowed_time(host) > now:
                self._place(slot, now)
                continue
            request = self.frontier.pop(host)
            if request is None:
                continue
            if self._retry_priority:
                self._popped_retry(request, host)
            slot.in_flight += 1
            self.active += 1
            if not request.retries:
                self.dispatched += 1
            local = self.local
            if local is None or not local(request):
                self.politeness.record_request(host)
            self._place(slot, now)
            return request
        return None

    async def get(self) -> Request | None:
        """The next request to send, or None once the crawl is over or stopping."""
        while True:
            if self.stopping or self.closed:
                return None
            if self.max_pages and self.dispatched >= self.max_pages and not self._draining:
                self._start_draining()
            request = self._pop_ready()
            if request is not None:
                return request
            if self.active == 0 and not self._delayed:
                if self._draining and not self._retries_queued:
                    self.stop("max_pages")
                    return None
                if not len(self.frontier):
                    if self.on_idle is not None and await self._ran_idle():
                        continue
                    self._close()
                    return None
            await self._lot.park()

    async def _ran_idle(self) -> bool:
        """Run the idle hook (the crawl stays open meanwhile: other workers park); True if
        it brought work, which then runs before the crawl may end (and idles again)."""
        assert self.on_idle is not None
        before = self.dispatched
        self.active += 1
        try:
            await self.on_idle()
        finally:
            self.task_done()
        return bool(len(self.frontier) or self._delayed or self.active or before != self.dispatched)

    def _start_draining(self) -> None:
        """max_pages is reached: send no new page, only the retries still to come."""
        self._draining = True
        if self.on_stop is not None:
            self.on_stop()  # no start request is needed any more either
        log.debug("max_pages (%d) reached: sending only the retries left", self.max_pages)

    async def run_timer(self) -> None:
        """The timekeeper: one task sleeps until the next delay or retry ends, then wakes
        as many workers as there are newly ready hosts. Workers themselves never
        wait on a clock, so a deadline wakes one task, not every idle worker.
        Returns once the crawl is over or stopping."""
        lot = self._lot
        while not (self.closed or self.stopping):
            deadline = math.inf
            if self._waiting:
                deadline = self._waiting[0][0]
            if self._delayed:
                deadline = min(deadline, self._delayed[0][0])
            self._timer_at = deadline
            with trio.move_on_at(deadline):
                await self._timer_lot.park()
            self._timer_at = math.inf
            ready_before = self._ready_count
            self._promote(self._clock())
            woken = self._ready_count - ready_before
            if woken > 0:
                lot.unpark(count=woken)

    def _close(self) -> None:
        self.closed = True
        self._lot.unpark_all()
        self._timer_lot.unpark_all()

    # -- finishing ----------------------------------------------------------------

    def release_slot(self, host: str) -> None:
        """The HTTP exchange of a request to ``host`` is over: its slot is free again.

        By host, the one the request had when it was handed out: a middleware may
        have changed its URL since."""
        slot = self._slots[host]
        slot.in_flight -= 1
        if slot.state == _IDLE:
            self._place(slot, self._clock())
            if slot.state != _IDLE:
                self._lot.unpark()

    def task_done(self, request: Request | None = None) -> None:
        """A handed-out request (or a feeder, without one) is fully processed."""
        if request is not None:
            self.frontier.done(request)
        self.active -= 1
        if self.active == 0:
            # Maybe the end: let the workers look (the last one to find nothing closes).
            self._lot.unpark_all()

    def hold(self) -> None:
        """Keep the crawl open while something outside the workers may still add requests."""
        self.active += 1

    def stop(self, reason: str = "stopped") -> None:
        """Hand out nothing more; requests in flight finish normally."""
        if not self.stopping:
            self.stop_reason = reason
            self.stopping = True
            if self.on_stop is not None:
                self.on_stop()
        self._lot.unpark_all()
        self._timer_lot.unpark_all()

    @property
    def queued(self) -> int:
        return len(self.frontier) + len(self._delayed)

    def host_in_flight(self) -> dict[str, int]:
        return {h: s.in_flight for h, s in self._slots.items() if s.in_flight}
