"""Scheduler and MemoryFrontier: ordering, filters, per-host readiness, stop conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from crawler._links import host_of, make_host_filter
from crawler.engine._politeness import Politeness
from crawler.engine._scheduler import Scheduler
from crawler.engine._stats import Stats
from crawler.frontier import Frontier
from crawler.frontier.memory import MemoryFrontier
from crawler.request import Request


def make(
    *,
    caps: dict[str, int] | None = None,
    delays: dict[str, float] | None = None,
    **kwargs: object,
) -> Scheduler:
    caps = caps or {}
    delays = delays or {}
    politeness = Politeness(delay_for=lambda host: delays.get(host, 0.0))
    return Scheduler(
        MemoryFrontier(),
        politeness,
        host_cap=lambda host: caps.get(host, 8),
        stats=Stats("t"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_memory_frontier_is_a_frontier() -> None:
    assert isinstance(MemoryFrontier(), Frontier)


def test_memory_frontier_priority_then_fifo() -> None:
    f = MemoryFrontier()
    for i, prio in enumerate([0, 5, 0, 5, -1]):
        f.push(Request(f"http://a.test/{i}", priority=prio), "a.test")
    f.push(Request("http://b.test/x"), "b.test")
    assert len(f) == 6
    assert f.pending("a.test") == 5
    assert sorted(f.hosts()) == ["a.test", "b.test"]
    order = []
    while (r := f.pop("a.test")) is not None:
        order.append(r.url.rsplit("/", 1)[1])
    assert order == ["1", "3", "0", "2", "4"]
    assert len(f) == 1
    assert list(f.hosts()) == ["b.test"]


async def test_dedup_query_order_and_dont_filter() -> None:
    s = make()
    assert s.enqueue(Request("http://a.test/p?x=1&y=2"))
    assert not s.enqueue(Request("http://a.test/p?y=2&x=1"))
    assert not s.enqueue(Request("http://a.test/p?x=1&y=2#frag"))
    assert s.enqueue(Request("http://a.test/p?x=1&y=2", dont_filter=True))
    assert not s.enqueue(Request("mailto:someone@a.test"))
    assert s.stats.dropped == {"duplicate": 2, "invalid_url": 1}
    assert s.queued == 2


async def test_depth_limit_and_offsite() -> None:
    s = make(depth_limit=2, host_filter=make_host_filter(["a.test"]))
    assert s.enqueue(Request("http://a.test/2", depth=2))
    assert not s.enqueue(Request("http://a.test/3", depth=3))
    assert not s.enqueue(Request("http://b.test/1"))
    assert s.enqueue(Request("http://sub.a.test/1"))
    assert s.stats.dropped == {"depth": 1, "offsite": 1}


async def test_unseen_filters_raw_urls_already_enqueued() -> None:
    s = make()
    s.enqueue(Request("http://a.test/1"))
    assert s.unseen(["http://a.test/1", "http://a.test/2"]) == ["http://a.test/2"]
    assert s.stats.dropped["duplicate"] == 1


async def test_parked_workers_get_delayed_requests_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Idle workers park without a timeout; the timekeeper hands out what falls due."""
    s = make(delays={"polite.test": 10.0})
    for i in range(3):
        s.enqueue(Request(f"http://polite.test/{i}"))
    first = await s.get()
    assert first is not None
    s.release_slot(host_of(first.url))
    got: list[Request | None] = []

    async def worker() -> None:
        got.append(await s.get())

    async with trio.open_nursery() as nursery, timekeeper(s):
        for _ in range(8):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await trio.sleep(25)  # virtual time (MockClock)
        # 10 s after the first request the second was due; 10 s later the third.
        assert [r.url for r in got if r] == ["http://polite.test/1", "http://polite.test/2"]
        s.stop()
    assert got[2:] == [None] * 6


async def test_priority_within_host() -> None:
    s = make()
    s.enqueue(Request("http://a.test/low", priority=-1))
    s.enqueue(Request("http://a.test/mid"))
    s.enqueue(Request("http://a.test/high", priority=3))
    got = [(await s.get()) for _ in range(3)]
    assert [r.url.rsplit("/", 1)[1] for r in got if r] == ["high", "mid", "low"]


async def test_capped_host_does_not_block_others() -> None:
    s = make(caps={"slow.test": 1})
    for i in range(3):
        s.enqueue(Request(f"http://slow.test/{i}"))
    for i in range(3):
        s.enqueue(Request(f"http://fast.test/{i}"))
    first = [await s.get() for _ in range(4)]
    urls = [r.url for r in first if r]
    # One request to the capped host is in flight; every other one went to the other host.
    assert sum("slow.test" in u for u in urls) == 1
    assert sum("fast.test" in u for u in urls) == 3
    slow = next(r for r in first if r and "slow.test" in r.url)
    # Nothing more is ready until the capped host's exchange ends.
    got: list[Request | None] = []

    async def worker() -> None:
        got.append(await s.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        s.release_slot(host_of(slow.url))
    assert got[0] is not None and got[0].url == "http://slow.test/1"


@asynccontextmanager
async def timekeeper(s: Scheduler) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.run_timer)
        yield
        nursery.cancel_scope.cancel()


async def test_delayed_host_does_not_block_others(autojump_clock: trio.testing.MockClock) -> None:
    s = make(delays={"polite.test": 10.0})
    s.enqueue(Request("http://polite.test/0"))
    s.enqueue(Request("http://polite.test/1"))
    s.enqueue(Request("http://other.test/0"))
    s.enqueue(Request("http://other.test/1"))
    start = trio.current_time()
    a = await s.get()
    b = await s.get()
    c = await s.get()
    assert a and b and c
    assert [a.url, b.url, c.url] == [
        "http://polite.test/0",
        "http://other.test/0",
        "http://other.test/1",
    ]
    assert trio.current_time() == start
    for r in (a, b, c):
        s.release_slot(host_of(r.url))
        s.task_done()
    async with timekeeper(s):
        d = await s.get()
    assert d is not None and d.url == "http://polite.test/1"
    assert trio.current_time() - start >= 10.0


async def test_retry_later_waits_without_a_worker(autojump_clock: trio.testing.MockClock) -> None:
    s = make()
    s.enqueue(Request("http://a.test/x"))
    r = await s.get()
    assert r is not None
    s.release_slot(host_of(r.url))
    t0 = trio.current_time()
    r.retries = 1
    s.retry_later(r, 5.0)
    s.task_done()
    async with timekeeper(s):
        again = await s.get()
    assert again is r
    assert trio.current_time() - t0 >= 5.0
    s.release_slot(host_of(again.url))
    s.task_done()
    assert await s.get() is None
    assert s.closed


async def test_get_returns_none_when_exhausted_and_wakes_all() -> None:
    s = make()
    s.enqueue(Request("http://a.test/x"))
    r = await s.get()
    assert r is not None
    results: list[object] = []

    async def waiter() -> None:
        results.append(await s.get())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        s.release_slot(host_of(r.url))
        s.task_done()
    assert results == [None, None, None]


async def test_new_request_wakes_a_parked_worker() -> None:
    s = make()
    s.hold()  # like a start-requests feeder that is still running
    got: list[Request | None] = []

    async def worker() -> None:
        got.append(await s.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        s.enqueue(Request("http://a.test/late"))
    assert got[0] is not None and got[0].url == "http://a.test/late"


async def test_max_pages_stops_handing_out() -> None:
    s = make(max_pages=2)
    for i in range(5):
        s.enqueue(Request(f"http://a.test/{i}"))
    first, second = await s.get(), await s.get()
    assert first is not None and second is not None
    for request in (first, second):  # done without a retry: nothing more to send
        s.release_slot(host_of(request.url))
        s.task_done(request)
    assert await s.get() is None
    assert s.stopping and s.stop_reason == "max_pages"
    assert s.queued == 3


async def test_after_max_pages_a_retry_is_found_ahead_of_new_pages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = make(max_pages=2)
    for i in range(5):
        s.enqueue(Request(f"http://a.test/{i}", priority=10))
    first, second = await s.get(), await s.get()
    assert first is not None and second is not None
    first.retries = 1
    s.release_slot(host_of(first.url))
    s.retry_later(first, 1.0)
    s.task_done()  # the retry keeps first in the frontier's hands
    s.release_slot(host_of(second.url))
    s.task_done(second)
    async with timekeeper(s):
        again = await s.get()
        assert again is first and again.priority == 10  # its own priority back
        s.release_slot(host_of(again.url))
        s.task_done(again)
        assert await s.get() is None
    assert s.stop_reason == "max_pages"
    assert s.queued == 3


async def test_stop_wakes_parked_workers() -> None:
    s = make()
    s.hold()
    got: list[Request | None] = []

    async def worker() -> None:
        got.append(await s.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        s.stop()
    assert got == [None, None]


def paths(got: list[Request | None]) -> list[str]:
    return [r.url.split("//", 1)[1] for r in got if r is not None]


async def test_priority_holds_across_hosts_and_ties_are_round_robin() -> None:
    s = make()
    for i in range(3):
        s.enqueue(Request(f"http://a.test/low{i}"))
    for i in range(2):
        s.enqueue(Request(f"http://b.test/low{i}"))
    s.enqueue(Request("http://c.test/high", priority=5))
    # Pushed to a host already ready: its place is re-keyed, not left at its old one.
    s.enqueue(Request("http://b.test/mid", priority=2))
    got = [await s.get() for _ in range(7)]
    assert paths(got) == [
        "c.test/high",
        "b.test/mid",
        "a.test/low0",  # ties: hosts in turn
        "b.test/low0",
        "a.test/low1",
        "b.test/low1",
        "a.test/low2",
    ]


async def test_a_high_priority_request_waits_for_its_hosts_cap() -> None:
    s = make(caps={"busy.test": 1})
    s.enqueue(Request("http://busy.test/0", priority=9))
    s.enqueue(Request("http://busy.test/1", priority=9))
    s.enqueue(Request("http://idle.test/0"))
    first, second = await s.get(), await s.get()
    # busy.test is at its cap: its second high-priority request does not hold up idle.test.
    assert paths([first, second]) == ["busy.test/0", "idle.test/0"]
    assert first is not None
    s.release_slot(host_of(first.url))
    assert paths([await s.get()]) == ["busy.test/1"]


class _SharedLike(MemoryFrontier):
    """A frontier like a shared crawl's: new requests go elsewhere (Redis), only those
    under /here/ stay to be taken. Never empty (the crawl goes on elsewhere); counts
    how often a worker looked at it."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = 0

    def push(self, request: Request, host: str) -> None:
        self.push_here(request, host)

    def push_here(self, request: Request, host: str) -> bool:
        if "/here/" not in request.url:
            return False
        super().push(request, host)
        return True

    def __len__(self) -> int:
        self.looked += 1
        return 1


async def test_a_request_pushed_away_wakes_no_worker() -> None:
    frontier = _SharedLike()
    s = Scheduler(
        frontier, Politeness(delay_for=lambda host: 0.0), host_cap=lambda host: 8, stats=Stats("t")
    )
    got: list[Request | None] = []

    async def worker() -> None:
        got.append(await s.get())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            await trio.testing.wait_all_tasks_blocked()
            looked = frontier.looked  # the worker looked once, then parked
            for name in "abcdefghij":
                assert s.enqueue(Request(f"http://{name}.test/away"))
                await trio.testing.wait_all_tasks_blocked()
            # Requests that left this process woke nobody to look for them.
            assert frontier.looked == looked
            assert s.enqueue(Request("http://k.test/here/1"))
    assert [r.url if r else None for r in got] == ["http://k.test/here/1"]
