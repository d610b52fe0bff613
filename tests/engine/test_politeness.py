"""Per-host delays, jitter, AIMD throttling and robots.txt handling."""

from __future__ import annotations

import email.utils
import random

import h11
import pytest
import trio
import trio.testing

from crawler.engine._politeness import Politeness, RobotsCache, parse_retry_after
from crawler.engine._robots import RobotsUnavailable
from tests.servers import Reply, Seen, serve_h11


class FakeClock:
    """A clock the test moves by hand: politeness logic never sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def test_delays_are_per_host_and_overridable() -> None:
    clock = FakeClock()
    polite = Politeness(1.0, delay_for=lambda h: 5.0 if h.endswith("slow.test") else 1.0, now=clock)
    assert polite.next_allowed_time("a.test") < clock()  # never seen: go at once
    polite.record_request("a.test")
    polite.record_request("www.slow.test")
    assert polite.next_allowed_time("a.test") == 1001.0
    assert polite.next_allowed_time("www.slow.test") == 1005.0
    assert polite.next_allowed_time("b.test") < clock()  # untouched by the others
    assert polite.delay("www.slow.test") == 5.0


def test_reserve_books_consecutive_slots_for_concurrent_callers() -> None:
    clock = FakeClock()
    polite = Politeness(2.0, now=clock)
    assert [polite.reserve("a.test") for _ in range(3)] == [1000.0, 1002.0, 1004.0]
    assert polite.reserve("b.test") == 1000.0
    clock.t = 1010.0
    assert polite.reserve("a.test") == 1010.0


def test_jitter_stays_within_bounds_and_varies() -> None:
    clock = FakeClock()
    polite = Politeness(2.0, jitter=0.5, now=clock, rng=random.Random(1))
    gaps = []
    for _ in range(500):
        polite.record_request("a.test")
        gaps.append(polite.next_allowed_time("a.test") - clock())
    assert all(1.0 <= g <= 3.0 for g in gaps)
    assert min(gaps) < 1.2 and max(gaps) > 2.8  # spread over the whole range


def test_throttle_on_429_with_retry_after_slows_only_that_host() -> None:
    clock = FakeClock()
    polite = Politeness(0.5, backoff=2.0, recovery_step=0.25, now=clock)
    polite.record_request("busy.test")
    polite.record_request("calm.test")
    polite.record_response("busy.test", 429, "7")
    assert polite.next_allowed_time("busy.test") == 1007.0  # Retry-After honoured
    assert polite.delay("busy.test") == 1.0  # 0.5 * 2
    polite.record_response("busy.test", 503)
    assert polite.delay("busy.test") == 2.0  # multiplicative increase
    assert polite.delay("calm.test") == 0.5
    assert polite.next_allowed_time("calm.test") == 1000.5
    # Additive recovery, one step per success, back to the configured delay.
    steps = []
    for _ in range(8):
        polite.record_response("busy.test", 200)
        steps.append(polite.delay("busy.test"))
    assert steps == [1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.5, 0.5]


def test_a_retry_after_is_told_to_on_pause_and_the_shared_gap_needs_a_delay() -> None:
    """What a crawl shared through Redis relies on: each Retry-After reaches on_pause
    (capped like the local pause), and a host without a delay books no shared slot."""
    clock = FakeClock()
    pauses: list[tuple[str, float]] = []
    polite = Politeness(0.0, now=clock, max_delay=60.0, on_pause=lambda h, s: pauses.append((h, s)))
    polite.record_request("a.test")
    assert polite.shared_gap("a.test") == 0.0  # no delay: no Redis call per request
    assert polite.shared_gap("never.seen") == 0.0
    polite.record_response("a.test", 429, "7")
    polite.record_response("a.test", 503, "3600")
    polite.record_response("a.test", 429)  # no Retry-After: nothing to share
    assert pauses == [("a.test", 7.0), ("a.test", 60.0)]
    assert polite.shared_gap("a.test") == polite.delay("a.test") > 0  # throttled now


def test_throttle_starts_from_min_backoff_and_is_capped() -> None:
    clock = FakeClock()
    polite = Politeness(0.0, min_backoff=1.0, max_delay=10.0, now=clock)
    polite.record_response("a.test", 429)
    assert polite.delay("a.test") == 1.0
    for _ in range(10):
        polite.record_response("a.test", 503)
    assert polite.delay("a.test") == 10.0
    polite.record_response("a.test", 429, "3600")
    assert polite.next_allowed_time("a.test") == clock() + 10.0  # Retry-After capped
    polite.record_response("a.test", 500)  # other server errors neither slow nor speed
    assert polite.delay("a.test") == 10.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now_wall=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now_wall=now) == 0.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_crawl_delay_sets_minimum_and_survives_recovery() -> None:
    clock = FakeClock()
    polite = Politeness(0.5, now=clock)
    polite.set_crawl_delay("a.test", 3.0)
    assert polite.delay("a.test") == 3.0
    polite.record_response("a.test", 429)
    assert polite.delay("a.test") == 6.0
    for _ in range(50):
        polite.record_response("a.test", 200)
    assert polite.delay("a.test") == 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"download_delay": -1.0}, "download_delay"),
        ({"jitter": 1.5}, "jitter"),
        ({"backoff": 0.5}, "backoff"),
        ({"recovery_step": 0.0}, "recovery_step"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Politeness(**kwargs)  # type: ignore[arg-type]


def test_negative_per_domain_delay_is_refused() -> None:
    polite = Politeness(delay_for=lambda h: -2.0, now=FakeClock())
    with pytest.raises(ValueError, match=r"delay_for\('a.test'\)"):
        polite.delay("a.test")


async def test_wait_uses_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    polite = Politeness(5.0)
    start = trio.current_time()
    await polite.wait("a.test")
    await polite.wait("a.test")
    assert trio.current_time() - start == pytest.approx(5.0)


# -- robots.txt -------------------------------------------------------------------

ROBOTS = b"User-agent: *\nDisallow: /private\nCrawl-delay: 4\n\nUser-agent: picky\nDisallow: /\n"


class FakeFetch:
    """An async fetch function that counts calls and can hold them back."""

    def __init__(self, status: int = 200, body: bytes = ROBOTS) -> None:
        self.status = status
        self.body = body
        self.urls: list[str] = []
        self.release = trio.Event()
        self.hold = False
        self.error: Exception | None = None

    async def __call__(self, url: str) -> tuple[int, bytes]:
        self.urls.append(url)
        if self.hold:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.status, self.body


async def test_robots_fetched_once_for_concurrent_callers() -> None:
    fetch = FakeFetch()
    fetch.hold = True
    robots = RobotsCache(fetch)
    results: list[bool] = []

    async def ask(i: int) -> None:
        path = "/private/x" if i % 2 else f"/public/{i}"
        results.append(await robots.allowed(f"http://a.test:8080{path}"))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(ask, i)
        await trio.testing.wait_all_tasks_blocked()
        fetch.release.set()
    assert fetch.urls == ["http://a.test:8080/robots.txt"]
    assert robots.fetches == 1
    assert sorted(results) == [False] * 25 + [True] * 25


async def test_robots_disallow_user_agent_and_crawl_delay() -> None:
    fetch = FakeFetch()
    polite = Politeness(0.5, now=FakeClock())
    robots = RobotsCache(fetch, user_agent="mybot", politeness=polite)
    assert await robots.allowed("http://a.test/ok")
    assert not await robots.allowed("http://a.test/private/1")
    assert not await robots.allowed("http://a.test/ok", "picky/2.0")
    assert await robots.allowed("http://a.test/robots.txt", "picky/2.0")
    assert robots.crawl_delay("http://a.test") == 4.0
    assert robots.crawl_delay("http://a.test/any/page") == 4.0
    assert robots.crawl_delay("http://other.test") is None
    assert polite.delay("a.test") == 4.0  # fed into the host's minimum delay
    assert len(fetch.urls) == 1


@pytest.mark.parametrize("status", [404, 403, 410, 301])
async def test_robots_4xx_and_unfollowed_redirects_allow_everything(status: int) -> None:
    robots = RobotsCache(FakeFetch(status, b"User-agent: *\nDisallow: /"))
    assert await robots.allowed("http://a.test/private/1")
    assert robots.crawl_delay("http://a.test") is None


async def test_robots_cache_is_bounded() -> None:
    fetch = FakeFetch()
    robots = RobotsCache(fetch, max_entries=2)
    for host in ["a.test", "b.test", "c.test", "a.test"]:
        await robots.allowed(f"http://{host}/x")
    # a.test was evicted by c.test, so it is fetched again.
    assert [u.split("/")[2] for u in fetch.urls] == ["a.test", "b.test", "c.test", "a.test"]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_robots_server_error_disallows_then_refetches(status: int) -> None:
    clock = FakeClock()
    fetch = FakeFetch(status, b"")
    robots = RobotsCache(fetch, error_retry=60.0, now=clock)
    with pytest.raises(RobotsUnavailable, match=f"http://a.test/robots.txt .*HTTP {status}"):
        await robots.allowed("http://a.test/public")
    with pytest.raises(RobotsUnavailable, match=r"http://a\.test/other may not be crawled"):
        await robots.allowed("http://a.test/other")
    assert len(fetch.urls) == 1
    fetch.status, fetch.body = 200, ROBOTS
    clock.t += 61.0
    assert await robots.allowed("http://a.test/public")
    assert len(fetch.urls) == 2


async def test_robots_network_error_disallows() -> None:
    fetch = FakeFetch()
    fetch.error = OSError("connection refused")
    robots = RobotsCache(fetch)
    with pytest.raises(RobotsUnavailable, match="OSError: connection refused"):
        await robots.allowed("http://a.test/public")


async def test_robots_per_origin_and_ttl() -> None:
    clock = FakeClock()
    fetch = FakeFetch()
    robots = RobotsCache(fetch, ttl=100.0, now=clock)
    await robots.allowed("http://a.test/x")
    await robots.allowed("https://a.test/x")
    await robots.allowed("http://a.test:81/x")
    await robots.allowed("http://A.test/y")
    assert fetch.urls == [
        "http://a.test/robots.txt",
        "https://a.test/robots.txt",
        "http://a.test:81/robots.txt",
    ]
    clock.t += 101.0
    await robots.allowed("http://a.test/x")
    assert len(fetch.urls) == 4


async def test_cancelled_robots_fetch_hands_over_to_a_waiter() -> None:
    fetch = FakeFetch()
    fetch.hold = True
    robots = RobotsCache(fetch)
    answers: list[bool] = []
    first_scope = trio.CancelScope()

    async def first() -> None:
        with first_scope:
            await robots.allowed("http://a.test/public")

    async def second() -> None:
        answers.append(await robots.allowed("http://a.test/public"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()  # first is inside the fetch
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()  # second waits for that fetch
        assert len(fetch.urls) == 1
        first_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()  # second took over the fetch
        assert len(fetch.urls) == 2
        fetch.release.set()
    assert answers == [True]


# -- robots.txt over a real loopback server ---------------------------------------


async def h11_get(url: str) -> tuple[int, bytes]:
    """A minimal one-shot HTTP/1.1 GET over trio and h11, for loopback tests."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    host, _, port = netloc.partition(":")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, int(port or 80))
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            request = h11.Request(
                method="GET", target="/" + path, headers=[("Host", netloc), ("Connection", "close")]
            )
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return status, body


async def test_robots_against_loopback_server() -> None:
    def responder(seen: Seen) -> Reply:
        if seen.target == "/robots.txt":
            return Reply(200, [("Content-Type", "text/plain")], ROBOTS)
        return Reply(404)

    async with serve_h11(responder) as server:
        robots = RobotsCache(h11_get)
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(robots.allowed, f"{server.url}/page/{i}")
        assert await robots.allowed(f"{server.url}/page/1")
        assert not await robots.allowed(f"{server.url}/private/secret")
        assert robots.crawl_delay(server.url) == 4.0
    assert [seen.target for seen in server.requests] == ["/robots.txt"]


def test_throttle_changes_are_told_to_on_throttle_and_a_shared_throttle_is_taken() -> None:
    """What a crawl shared through Redis relies on: each raise and each recovery of a
    throttle reaches on_throttle (a good answer of an unthrottled host does not), a
    booking's answer replaces the local throttle, and a learnt one only starts it."""
    clock = FakeClock()
    told: list[tuple[str, bool]] = []
    polite = Politeness(0.0, now=clock, on_throttle=lambda h, r: told.append((h, r)))
    polite.record_response("a.test", 200)  # not throttled: nothing to tell
    polite.record_response("a.test", 429)
    polite.record_response("a.test", 200)
    polite.record_response("a.test", 500)  # neither
    assert told == [("a.test", True), ("a.test", False)]
    assert polite.base_delay("a.test") == 0.0
    polite.share_throttle("a.test", 4.0)  # the crawl's, from a booking
    assert polite.delay("a.test") == 4.0
    polite.learn_throttle("a.test", 8.0)  # already booking: the bookings tell it
    assert polite.delay("a.test") == 4.0
    polite.share_throttle("a.test", 0.0)  # recovered by the other workers
    assert polite.shared_gap("a.test") == 0.0
    polite.learn_throttle("b.test", 2.0)  # throttled by another worker: book it too
    assert polite.shared_gap("b.test") == 2.0
    slow = Politeness(3.0, now=clock, max_delay=10.0)
    slow.share_throttle("c.test", 2.0)  # below the configured delay: no throttle
    assert slow.throttles() == {}
    slow.share_throttle("c.test", 99.0)
    assert slow.delay("c.test") == 10.0  # capped like a local one
