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

The throttle after 429/503 (AIMD, see ``crawler.engine._politeness``) is the
crawl's, not one worker's: ``host:<host>:throttle`` holds it (µs), and the
booking script spaces slots by ``max(the worker's own gap, throttle)``, so a
host that told one worker to slow down is slowed down for all. Changes travel
without calls of their own: a worker counts its 429/503s and the good
responses of a throttled host, and the next booking of that host carries them
(raises first, as they came after the good responses they cancel); raises
waiting for no booking go with the background task's batch. The index
``throttled`` (host -> throttle, plus a version under the empty field) tells
the workers that never saw a 429 which hosts to book: ``ThrottledHosts``
reads it with each round the shared crawl makes anyway, in full only when its
version changed. A throttle key lives ``THROTTLE_TTL`` seconds after its last
change: a host nobody asks any more is forgotten.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from ._redis import Arg, RedisClient, RedisError, Script

__all__ = [
    "PAUSE",
    "RESERVE",
    "THROTTLE",
    "THROTTLED",
    "RedisDelays",
    "ThrottleRule",
    "ThrottledHosts",
]

log = logging.getLogger("crawler.distributed")

#: A host's throttle is forgotten this long after its last change (seconds).
THROTTLE_TTL = 600.0

# The throttle of a host after the changes a worker brings. KEYS: the host's throttle
# key, the crawl's index of throttled hosts; then the host, Redis's time (µs), the
# raises, the recovery (µs), the worker's base delay (µs), min_backoff (µs), backoff,
# max_delay (µs), the key's lifetime (ms). The same arithmetic as Politeness, in µs.
_APPLY = """
local function throttle(key, index, host, now, raises, recovered, base, floor, factor,
                        cap, ttl)
  local old = tonumber(redis.call('GET', key) or '0')
  local value = old
  for _ = 1, raises do
    value = math.min(cap, math.max(floor, math.max(base, value) * factor))
  end
  if recovered > 0 and value > 0 then
    value = value - recovered
    if value <= base then value = 0 end
  end
  value = math.floor(value)
  local version = tonumber(redis.call('HGET', index, '') or '0')
  version = string.format('%d', math.max(now, version + 1))
  if value > 0 then
    if value ~= old or raises > 0 then
      redis.call('SET', key, string.format('%d', value), 'PX', ttl)
      if redis.call('HSET', index, host, string.format('%d', value)) == 1 then
        redis.call('HSET', index, '', version)
      end
      redis.call('PEXPIRE', index, ttl)
    end
  elseif old > 0 or redis.call('HEXISTS', index, host) == 1 then
    redis.call('DEL', key)
    if redis.call('HDEL', index, host) == 1 then
      redis.call('HSET', index, '', version)
    end
  end
  return value
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

#: KEYS the host's next-start key, its throttle key, the index of throttled hosts;
#: ARGV the worker's gap in µs, then the throttle changes it brings (see _APPLY).
#: The wait in µs before starting, and the host's throttle in µs.
RESERVE = Script(
    _APPLY
    + """
local shared = throttle(KEYS[2], KEYS[3], ARGV[2], now, tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9]))
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local after = start + math.max(tonumber(ARGV[1]), shared)
redis.call('SET', KEYS[1], string.format('%d', after), 'PX',
           math.floor((after - now) / 1000) + 60000)
return {start - now, shared}
""",
    "reserve_request_slot",
)

#: KEYS the host's throttle key, the index; ARGV the changes (see _APPLY). The throttle.
THROTTLE = Script(
    _APPLY
    + """
return throttle(KEYS[1], KEYS[2], ARGV[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8]))
""",
    "throttle_host",
)

#: KEYS the index of throttled hosts; ARGV the version the worker has read ('' for
#: none). 0 while it is the same; else the version and the index (HGETALL).
THROTTLED = Script(
    """
local version = redis.call('HGET', KEYS[1], '') or ''
if version == ARGV[1] then return 0 end
return {version, redis.call('HGETALL', KEYS[1])}
""",
    "throttled_hosts",
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


class ThrottleRule(NamedTuple):
    """How a throttle moves (the AIMD parameters of the worker's Politeness), in seconds."""

    min_backoff: float = 1.0
    backoff: float = 2.0
    recovery_step: float = 0.25
    max_delay: float = 60.0


class _Change:
    """What a worker has to tell Redis about a host's throttle: raises, then a recovery."""

    __slots__ = ("base", "raises", "recovered", "rule")

    def __init__(self, rule: ThrottleRule, base: float) -> None:
        self.rule = rule
        self.base = base
        self.raises = 0
        self.recovered = 0.0

    def merge(self, later: _Change) -> None:
        """Put back a change that was not sent, before ``later`` (made meanwhile)."""
        if later.raises:
            self.raises += later.raises
            self.recovered = later.recovered
        else:
            self.recovered += later.recovered
        self.rule, self.base = later.rule, later.base

    def args(self, host: str, ttl: float) -> list[Arg]:
        rule = self.rule
        return [
            host,
            self.raises,
            _us(self.recovered),
            _us(self.base),
            _us(rule.min_backoff),
            repr(float(rule.backoff)),
            _us(rule.max_delay),
            max(1, round(ttl * 1000)),
        ]


_NO_CHANGE: list[Arg] = [0, 0, 0, 0, "1.0", 0, 1]

_MAX_RETRY_WAIT = 1.0  # seconds between two tries while Redis does not answer


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1e6))


class RedisDelays:
    """Request slots per host booked in Redis by every worker of one crawl.

    Start ``run`` in a nursery for the ``pause`` and ``throttle`` calls (sent in
    the background, since a response is handled synchronously).
    """

    def __init__(
        self, client: RedisClient, prefix: str, *, rng: random.Random | None = None
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._uniform = (rng or random.Random()).uniform
        self._pauses: dict[str, float] = {}
        # Throttle changes not sent yet, by host; those with raises wake the task.
        self._changes: dict[str, _Change] = {}
        self._wake = trio.Event()
        self._unreachable = False
        #: How long a throttle key outlives its last change (seconds).
        self.throttle_ttl = THROTTLE_TTL
        for script in (RESERVE, PAUSE, THROTTLE):
            client.register(script)

    def __repr__(self) -> str:
        return f"<RedisDelays {self.prefix}host:*:next at {self._client.target}>"

    def host_key(self, host: str) -> str:
        return f"{self.prefix}host:{host}:next"

    def throttle_key(self, host: str) -> str:
        return f"{self.prefix}host:{host}:throttle"

    @property
    def index_key(self) -> str:
        """The hash of the crawl's throttled hosts (see ``ThrottledHosts``)."""
        return f"{self.prefix}throttled"

    def throttle(self, host: str, raised: bool, base: float, rule: ThrottleRule) -> None:
        """A response of ``host`` raised (a 429/503) or lowered its throttle; told to Redis
        with the host's next booking, or soon by the background task for a raise.

        ``base`` is the worker's own delay for the host without throttle, from which a
        raise starts and to which a recovery brings it back (then 0).
        """
        change = self._changes.get(host)
        if change is None:
            change = self._changes[host] = _Change(rule, base)
        change.rule, change.base = rule, base
        if raised:
            # The good responses before it said the host had recovered; it had not.
            change.raises += 1
            change.recovered = 0.0
            self._wake.set()
        else:
            change.recovered += rule.recovery_step

    def pending(self, host: str) -> bool:
        """Whether a throttle change of ``host`` waits to be sent (a booking would carry it)."""
        return host in self._changes

    async def reserve(self, host: str, gap: float) -> tuple[float, float]:
        """Book the next slot of ``host``, ``max(gap, the host's throttle)`` seconds before
        the one after; the wait until it, and the throttle (after this worker's changes).

        While Redis does not answer, this keeps trying (with a growing wait):
        a request sent without its slot could break the delay of the crawl.
        """
        change = self._changes.pop(host, None)
        keys = [self.host_key(host), self.throttle_key(host), self.index_key]
        changes = change.args(host, self.throttle_ttl) if change else [host, *_NO_CHANGE]
        command = RESERVE.command(keys, [_us(gap), *changes])
        retry = 0.01
        try:
            while True:
                try:
                    (reply,) = await self._client.pipeline([command])
                except RedisError as exc:
                    self._report(exc)
                    await trio.sleep(retry * self._uniform(0.5, 1.5))
                    retry = min(_MAX_RETRY_WAIT, retry * 2)
                    continue
                break
        except BaseException:
            if change is not None:
                self._put_back(host, change)
            raise
        if self._unreachable:
            self._unreachable = False
            log.warning("shared download delay: Redis answers again")
        assert isinstance(reply, list)
        wait, throttle = reply
        return int(wait) / 1e6, int(throttle) / 1e6

    def pause(self, host: str, seconds: float) -> None:
        """No worker starts a request to ``host`` for ``seconds`` (a Retry-After); sent soon."""
        self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send the pauses and throttle raises as they come, in one call per batch."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.flush(raised_only=True)

    async def flush(self, *, raised_only: bool = False) -> None:
        """Send the pauses and the throttle changes (only those with raises: recoveries
        wait for the host's next booking, which costs no call of its own)."""
        pauses, self._pauses = self._pauses, {}
        changes = {
            host: change
            for host, change in self._changes.items()
            if change.raises or not raised_only
        }
        for host in changes:
            del self._changes[host]
        if not pauses and not changes:
            return
        commands = [
            PAUSE.command([self.host_key(host)], [_us(seconds)]) for host, seconds in pauses.items()
        ]
        commands.extend(
            THROTTLE.command(
                [self.throttle_key(host), self.index_key], change.args(host, self.throttle_ttl)
            )
            for host, change in changes.items()
        )
        try:
            await self._client.pipeline(commands)
        except BaseException as exc:
            for host, seconds in pauses.items():
                self._pauses[host] = max(seconds, self._pauses.get(host, 0.0))
            for host, change in changes.items():
                self._put_back(host, change)
            if not isinstance(exc, RedisError):
                raise
            self._report(exc)

    def _put_back(self, host: str, change: _Change) -> None:
        later = self._changes.get(host)
        if later is not None:
            change.merge(later)
        self._changes[host] = change

    def _report(self, exc: RedisError) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.error(
                "shared download delay: Redis unreachable (%s); requests to hosts with a "
                "delay wait until it answers",
                exc,
            )


class ThrottledHosts:
    """Which hosts the crawl throttles, read with each round of a worker's shared crawl.

    A worker books a host's slots only when it knows the host has a delay; one
    that never got a 429 from it learns here that another did. The read is one
    script in the round's pipeline, answered by 0 until the index's version
    changes (a host throttled, or recovered), so it is a few bytes per round and
    nothing is added for a crawl that throttles nothing but a missing key's look.
    """

    def __init__(self, key: str, learn: Callable[[str, float], None]) -> None:
        self.key = key
        self._learn = learn
        self._version: bytes = b""

    def command(self) -> list[Arg]:
        return THROTTLED.command([self.key], [self._version])

    def update(self, reply: Any) -> None:
        """Tell ``learn(host, seconds)`` of each throttled host, when the index changed."""
        if not isinstance(reply, list):
            return
        version, pairs = reply
        self._version = bytes(version)
        for i in range(0, len(pairs) - 1, 2):
            host = bytes(pairs[i])
            if host:
                self._learn(host.decode(), int(pairs[i + 1]) / 1e6)
