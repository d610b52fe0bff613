"""The AIMD throttle of a host shared by every worker of a crawl, in a real redis-server:
the scripts on their own, then two workers (two engines, as two processes would be) on
a loopback site that answers 429 to one of them only."""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from crawler import Request, Response, Settings, Spider
from crawler.distributed import RedisClient, RedisDelays, ThrottledHosts, ThrottleRule
from crawler.distributed._delays import THROTTLED
from crawler.engine._engine import Engine
from crawler.engine._stats import Stats
from tests.crawl.helpers import settings
from tests.distributed.helpers import CuttableRelay
from tests.redis_server import RedisServer
from tests.servers import serve_asgi, serve_tcp

GUARD = 60
PREFIX = "crawl:{throttle/one}:"
HOST = "example.com"
THROTTLE = PREFIX + "host:example.com:throttle"
NEXT = PREFIX + "host:example.com:next"
INDEX = PREFIX + "throttled"
RULE = ThrottleRule(min_backoff=1.0, backoff=2.0, recovery_step=0.25, max_delay=5.0)


async def _redis_now(client: RedisClient) -> int:
    """Redis's clock in µs, the one the scripts read."""
    clock = await client.execute("TIME")
    assert isinstance(clock, list)
    return int(clock[0]) * 1_000_000 + int(clock[1])


async def _get_int(client: RedisClient, key: str) -> int:
    value = await client.execute("GET", key)
    assert isinstance(value, bytes)
    return int(value)


async def _index(client: RedisClient) -> dict[bytes, bytes]:
    flat = await client.execute("HGETALL", INDEX)
    assert isinstance(flat, list)
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def test_raises_multiply_up_to_max_delay_and_recoveries_bring_the_key_down_to_gone(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            a.throttle(HOST, True, 0.0, RULE)  # a 429: from nothing to min_backoff
            assert a.pending(HOST)
            await a.flush(raised_only=True)
            assert not a.pending(HOST)
            assert await client.execute("GET", THROTTLE) == b"1000000"
            ttl = await client.execute("PTTL", THROTTLE)
            assert isinstance(ttl, int) and 590_000 < ttl <= 600_000  # forgotten after 10 min
            assert (await _index(client))[HOST.encode()] == b"1000000"
            for _ in range(2):
                a.throttle(HOST, True, 0.0, RULE)
            await a.flush()
            assert await client.execute("GET", THROTTLE) == b"4000000"  # 1 s, doubled twice
            a.throttle(HOST, True, 0.0, RULE)
            await a.flush()
            assert await client.execute("GET", THROTTLE) == b"5000000"  # capped at max_delay
            # Recoveries wait for a booking of the host, or a full flush (at the end).
            b = RedisDelays(client, PREFIX)
            for _ in range(4):
                b.throttle(HOST, False, 0.0, RULE)
            await b.flush(raised_only=True)
            assert b.pending(HOST)
            assert await client.execute("GET", THROTTLE) == b"5000000"
            await b.flush()
            assert await client.execute("GET", THROTTLE) == b"4000000"  # 4 steps of 0.25 s
            assert (await _index(client))[HOST.encode()] == b"4000000"
            for _ in range(16):
                b.throttle(HOST, False, 0.0, RULE)
            await b.flush()
            assert await client.execute("EXISTS", THROTTLE) == 0
            assert HOST.encode() not in await _index(client)


async def test_a_raise_starts_from_the_worker_delay_and_cancels_the_recoveries_before_it(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            a.throttle(HOST, True, 1.5, RULE)  # a worker whose own delay is 1.5 s
            await a.flush()
            assert await client.execute("GET", THROTTLE) == b"3000000"
            a.throttle(HOST, False, 1.5, RULE)
            a.throttle(HOST, False, 1.5, RULE)
            a.throttle(HOST, True, 1.5, RULE)  # the host was not recovered after all
            a.throttle(HOST, False, 1.5, RULE)
            await a.flush()
            assert await client.execute("GET", THROTTLE) == b"4750000"  # 6 s capped, - 0.25
            for _ in range(13):  # down to the worker's own delay: the throttle is gone
                a.throttle(HOST, False, 1.5, RULE)
            await a.flush()
            assert await client.execute("EXISTS", THROTTLE) == 0


async def test_a_booking_is_spaced_by_the_shared_throttle_and_carries_the_changes(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            b = RedisDelays(client, PREFIX)
            assert await b.reserve(HOST, 0.0) == (0, 0)  # nothing throttled, nothing kept
            assert await client.execute("EXISTS", THROTTLE) == 0
            a.throttle(HOST, True, 0.0, RULE)
            a.throttle(HOST, True, 0.0, RULE)
            # The booking carries a's raises (no flush): the host is throttled to 2 s.
            _, throttle = await a.reserve(HOST, 0.0)
            assert throttle == 2.0 and not a.pending(HOST)
            # b never saw a 429 and asks for no gap; its slot is still 2 s before the next.
            far = await _redis_now(client) + 100_000_000
            await client.execute("SET", NEXT, far)
            wait, throttle = await b.reserve(HOST, 0.0)
            assert throttle == 2.0 and 99 < wait <= 100
            assert await _get_int(client, NEXT) == far + 2_000_000
            # A worker's own longer gap stands.
            await b.reserve(HOST, 3.0)
            assert await _get_int(client, NEXT) == far + 5_000_000
            # b's good answers ride with its next booking: one step off.
            b.throttle(HOST, False, 0.0, RULE)
            _, throttle = await b.reserve(HOST, 0.0)
            assert throttle == 1.75 and not b.pending(HOST)


async def test_changes_not_sent_while_redis_is_away_are_sent_when_it_answers(
    redis_server: RedisServer,
) -> None:
    relay = CuttableRelay(redis_server.port)
    with trio.fail_after(GUARD):
        async with (
            serve_tcp(relay.handle) as port,
            RedisClient(f"redis://127.0.0.1:{port}/0") as away,
            RedisClient(redis_server.url) as client,
        ):
            a = RedisDelays(away, PREFIX)
            a.throttle(HOST, True, 0.0, RULE)
            relay.cut()
            await a.flush()  # refused: kept
            assert a.pending(HOST)
            a.throttle(HOST, True, 0.0, RULE)
            relay.restore()
            await a.flush()
            assert not a.pending(HOST)
            assert await client.execute("GET", THROTTLE) == b"2000000"  # both raises


async def test_the_index_is_read_in_full_only_when_a_host_comes_or_goes(
    redis_server: RedisServer,
) -> None:
    learnt: list[tuple[str, float]] = []
    with trio.fail_after(GUARD):
        async with RedisClient(redis_server.url) as client:
            a = RedisDelays(client, PREFIX)
            watch = ThrottledHosts(a.index_key, lambda host, s: learnt.append((host, s)))
            client.register(THROTTLED)

            async def read() -> Any:
                (reply,) = await client.pipeline([watch.command()])
                watch.update(reply)
                return reply

            assert await read() == 0  # nothing throttled: a missing key's look
            a.throttle(HOST, True, 0.0, RULE)
            a.throttle("other.example", True, 0.0, RULE)
            await a.flush()
            assert isinstance(await read(), list)
            assert sorted(learnt) == [(HOST, 1.0), ("other.example", 1.0)]
            learnt.clear()
            a.throttle(HOST, False, 0.0, RULE)
            await a.flush()
            assert await read() == 0  # a value changed, no host came or went
            for _ in range(3):
                a.throttle(HOST, False, 0.0, RULE)
            await a.flush()
            assert isinstance(await read(), list)  # example.com recovered
            assert learnt == [("other.example", 1.0)]


# -- two workers ---------------------------------------------------------------------

PAGES = 24


class ThrottlingSite:
    """Pages ``/p/0`` .. ``/p/N-1``. Worker A's first request is answered 429, and its
    later ones are held until worker B's first request comes, so that B starts while
    the host is throttled and before anyone's good answer lowers it."""

    def __init__(self) -> None:
        self.by_agent: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.b_came = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        agent = dict(scope["headers"]).get(b"user-agent", b"").decode()
        self.by_agent[agent] += 1
        status = 200
        if agent == "worker-b":
            self.b_came.set()
        elif self.by_agent[agent] == 1:
            status = 429
        else:
            await self.b_came.wait()
        self.statuses[(scope["path"], status)] += 1
        body = b"<html>page</html>" if status == 200 else b"slow down"
        headers = [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Pages(Spider):
    name = "throttled"
    options = {"start": []}

    def start_requests(self) -> Any:
        for url in self.settings["start"]:
            yield Request(url)

    def parse(self, response: Response) -> Any:
        yield {"url": str(response.url)}


async def _crawl(s: Settings, engine: Engine) -> Stats:
    async with engine:
        return await engine.crawler(Pages, s, pipelines=[]).run()


async def test_a_host_throttled_by_one_worker_is_spaced_by_the_throttle_for_the_other(
    redis_server: RedisServer,
) -> None:
    site = ThrottlingSite()
    b_bookings: list[tuple[float, float]] = []
    throttle_key = "crawl:{throttled/two}:host:127.0.0.1:throttle"
    with trio.fail_after(GUARD):
        async with serve_asgi(site) as base, RedisClient(redis_server.url) as client:
            common = settings(
                base,
                frontier_url=redis_server.url,
                crawl_id="two",
                lease_ttl=10.0,
                obey_robots=False,
                options={"start": [f"{base}/p/{i}" for i in range(PAGES)]},
            )
            fields = {n: getattr(common, n) for n in common.__dataclass_fields__}
            fields.pop("sources", None)
            s_a = Settings(**{**fields, "user_agent": "worker-a"})
            s_b = Settings(**{**fields, "user_agent": "worker-b"})
            engine_a = Engine(s_a, spider=Pages.name)
            engine_b = Engine(s_b, spider=Pages.name)
            assert engine_a.shared is not None and engine_b.shared is not None
            a_delays, b_delays = engine_a.shared.delays, engine_b.shared.delays
            raised = trio.Event()
            throttle_when_b_came: list[Any] = []

            def after_a(call: Any) -> Any:
                async def watched(*args: Any, **kwargs: Any) -> Any:
                    result = await call(*args, **kwargs)
                    if await client.execute("EXISTS", throttle_key):
                        raised.set()
                    return result

                return watched

            a_delays.flush = after_a(a_delays.flush)  # type: ignore[method-assign]
            a_delays.reserve = after_a(a_delays.reserve)  # type: ignore[method-assign]
            reserve_b = b_delays.reserve

            async def booked_by_b(host: str, gap: float) -> tuple[float, float]:
                if not b_bookings:
                    throttle_when_b_came.append(await client.execute("GET", throttle_key))
                reply = await reserve_b(host, gap)
                b_bookings.append(reply)
                return reply

            b_delays.reserve = booked_by_b  # type: ignore[method-assign]
            results: list[Stats] = []

            async def run(s: Settings, engine: Engine) -> None:
                results.append(await _crawl(s, engine))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, s_a, engine_a)
                await raised.wait()  # A's 429 is in Redis: B joins now
                nursery.start_soon(run, s_b, engine_b)
            index = await client.execute("HGETALL", "crawl:{throttled/two}:throttled")
            left = await client.execute("EXISTS", throttle_key)
    # A got one 429 and every page was crawled once (the 429's page twice).
    assert sum(n for (_, status), n in site.statuses.items() if status == 429) == 1
    assert sorted(path for (path, status) in site.statuses if status == 200) == sorted(
        f"/p/{i}" for i in range(PAGES)
    )
    assert all(n == 1 for (_, status), n in site.statuses.items() if status == 200)
    assert site.by_agent["worker-b"] > 0
    # B, which never got a 429, booked its slots through Redis at A's throttle (1 s:
    # min_backoff), so the host was spaced for the whole crawl.
    assert throttle_when_b_came == [b"1000000"]
    assert b_bookings and b_bookings[0][1] == 1.0
    # The good answers of both brought it back down: the key and its index entry are gone.
    assert left == 0
    assert isinstance(index, list) and b"127.0.0.1" not in index[::2]
    assert len(results) == 2
