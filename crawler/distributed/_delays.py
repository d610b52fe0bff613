"""The per-host download delay of every worker together, booked in Redis.

Each host with a delay has one key, ``crawl:{<spider>/<crawl-id>}:host:<host>:next``:
the earliest time (Redis's clock, in µs) at which its next request may start.
Booking a request is one Lua call: ``start = max(now, next)``, ``next = start +
gap``, and the answer is how long to wait until ``start``. Redis's clock is the
only one read, so the workers' clocks may disagree as they like; two workers
can never book the same slot, since the calls run one after the other.

A ``Retry-After`` seen by one worker pushes ``next`` out for all (queued, sent
by the background task). A worker books through Redis only for a host whose
delay it knows to be above zero (a configured delay, a robots.txt
Crawl-delay, or throttling after a 429/503), so a crawl without delays never
calls Redis per request.
"""

from __future__ import annotations

import logging
import random

import trio

from ._redis import RedisClient, RedisError, Script

__all__ = ["PAUSE", "RESERVE", "RedisDelays"]

log = logging.getLogger("crawler.distributed")

#: KEYS[1] the host's next-start key; ARGV the gap in µs. The wait in µs before starting.
RESERVE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local after = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', after), 'PX',
           math.floor((after - now) / 1000) + 60000)
return start - now
""",
    "reserve_request_slot",
)

#: KEYS[1] the host's next-start key; ARGV the pause in µs: nothing starts before now + pause.
PAUSE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local after = now + tonumber(ARGV[1])
if after > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', after), 'PX',
             math.floor((after - now) / 1000) + 60000)
end
return 0
""",
    "pause_host",
)

_MAX_RETRY_WAIT = 1.0  # seconds between two tries while Redis does not answer


class RedisDelays:
    """Request slots per host booked in Redis by every worker of one crawl.

    Start ``run`` in a nursery for the ``pause`` calls (sent in the background,
    since a response is handled synchronously).
    """

    def __init__(
        self, client: RedisClient, prefix: str, *, rng: random.Random | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._uniform = (rng or random.Random()).uniform
        self._pauses: dict[str, float] = {}
        self._wake = trio.Event()
        self._unreachable = False
        client.register(RESERVE)
        client.register(PAUSE)

    def __repr__(self) -> str:
        return f"<RedisDelays {self._prefix}host:*:next at {self._client.target}>"

    def host_key(self, host: str) -> str:
        return f"{self._prefix}host:{host}:next"

    async def reserve(self, host: str, gap: float) -> float:
        """Book the next slot of ``host``, ``gap`` seconds before the one after; the wait.

        While Redis does not answer, this keeps trying (with a growing wait):
        a request sent without its slot could break the delay of the crawl.
        """
        command = RESERVE.command([self.host_key(host)], [max(0, round(gap * 1e6))])
        retry = 0.01
        while True:
            try:
                (wait,) = await self._client.pipeline([command])
            except RedisError as exc:
                self._report(exc)
                await trio.sleep(retry * self._uniform(0.5, 1.5))
                retry = min(_MAX_RETRY_WAIT, retry * 2)
                continue
            if self._unreachable:
                self._unreachable = False
                log.warning("shared download delay: Redis answers again")
            assert isinstance(wait, int)
            return wait / 1e6

    async def wait(self, host: str, gap: float) -> None:
        """Book a slot of ``host`` and sleep until it starts."""
        seconds = await self.reserve(host, gap)
        if seconds > 0:
            await trio.sleep(seconds)

    def pause(self, host: str, seconds: float) -> None:
        """No worker starts a request to ``host`` for ``seconds`` (a Retry-After); sent soon."""
        self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send the pauses as they come, in one call per batch."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        pauses, self._pauses = self._pauses, {}
        if not pauses:
            return
        commands = [
            PAUSE.command([self.host_key(host)], [round(seconds * 1e6)])
            for host, seconds in pauses.items()
        ]
        try:
            await self._client.pipeline(commands)
        except BaseException as exc:
            for host, seconds in pauses.items():
                self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))
            if not isinstance(exc, RedisError):
                raise
            self._report(exc)

    def _report(self, exc: RedisError) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.error(
                "shared download delay: Redis unreachable (%s); requests to hosts with a "
                "delay wait until it answers",
                exc,
            )
