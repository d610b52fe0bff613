"""Connection permits counted in Redis: the per-host cap of every worker together.

Each open connection of any worker is one lease in a sorted set per host,
``crawl:{<spider>/<crawl-id>}:host:<host>:conns``, scored by the time (Redis's
clock, in ms) at which it expires. Taking a permit is one Lua call that drops
the expired leases, compares the count with the cap the worker passes (its
own configuration for that host) and adds the lease if there is room. A task
of the worker renews every lease it holds every TTL/3 in one call, and gives
leases back in batches, so the cost is one call per connection opened plus one
per batch of closes, never per request.

A full host is not polled. The refused call marks the host as wanted
(``host:<host>:wanted``), and the call that gives leases of that host back
clears the mark and publishes the host's name on the crawl's ``freed``
channel, which every worker listens to on a connection of its own. Within a
worker, one task per full host asks again, the others queue behind it: one
freed permit costs one call, not one per waiting task. A lost message (or a
lease that merely expired) costs a delay: a waiter looks again every
``_SLOW_POLL`` seconds, and polls as before (2 ms doubling to 100 ms) while
the worker has no subscription. The pool bounds the whole wait by its pool
timeout.

An idle connection keeps its lease, so a worker done with a host would keep the
others out of it until keep-alive expiry. So the refusal that marks a host
wanted (only the one that finds no mark: once per wait, not per refusal) also
publishes the host on the ``wanted`` channel, and every worker that holds leases
of it closes its connections to it that have been idle for ``HANDOVER_GRACE``
(through ``hand_over_idle``), looking again at that pace while the host stays
wanted: their releases publish ``freed`` and wake the waiter. A connection in
use is never closed; the grace spares those idle only between two requests.

A worker that dies keeps its leases until they expire: for at most the TTL,
the cap counts connections that no longer exist (the safe side: the servers
see fewer). While Redis cannot be reached, no new connection is opened (the
acquire keeps retrying until the pool timeout) and what is open stays open.
"""

from __future__ import annotations

import logging
import math
import os
import random
import secrets
import socket
from collections.abc import Callable

import trio

from ._redis import Arg, RedisClient, RedisError, Script, Subscription

__all__ = [
    "ACQUIRE",
    "HANDOVER_GRACE",
    "RELEASE",
    "RENEW",
    "RedisPermits",
    "key_prefix",
    "worker_id",
]

log = logging.getLogger("crawler.distributed")

#: KEYS[1] the host's lease set, KEYS[2] its wanted mark; ARGV lease id, cap, TTL in ms,
#: the ``wanted`` channel, the host. 1 if taken, 0 if full: the host is then marked wanted,
#: for RELEASE to tell, and a mark that is new is published, for the holders to hand over.
ACQUIRE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local new = redis.call('EXISTS', KEYS[2]) == 0
  redis.call('SET', KEYS[2], '1', 'PX', ttl)
  if new then
    redis.call('PUBLISH', ARGV[4], ARGV[5])
  end
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
""",
    "acquire_connection_permit",
)

#: KEYS the lease sets, ARGV[1] the TTL in ms, then one lease id per key (a key may repeat).
#: Pushes every lease's expiry to now + TTL; returns how many had expired and were re-added.
RENEW = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = 0
for i, key in ipairs(KEYS) do
  lost = lost + redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return lost
""",
    "renew_connection_permits",
)

#: KEYS (lease set, wanted mark) per host; ARGV the channel, then per host: its name,
#: how many lease ids, the ids. Deletes the leases; publishes the names of the hosts
#: that were wanted.
RELEASE = Script(
    """
local channel = ARGV[1]
local a = 2
for i = 1, #KEYS, 2 do
  local host, last = ARGV[a], a + 1 + tonumber(ARGV[a + 1])
  for j = a + 2, last, 500 do
    redis.call('ZREM', KEYS[i], unpack(ARGV, j, math.min(j + 499, last)))
  end
  a = last + 1
  if redis.call('DEL', KEYS[i + 1]) == 1 then
    redis.call('PUBLISH', channel, host)
  end
end
return 0
""",
    "release_connection_permits",
)

# Without a subscription, a full host is asked again after this, doubled per refusal
# up to _MAX_BACKOFF (seconds); with one, after a message, or _SLOW_POLL at most.
_FIRST_BACKOFF = 0.002
_MAX_BACKOFF = 0.1
_SLOW_POLL = 1.0
# A connection idle for less than this is between two requests of a burst: it is not
# handed over, and the idle ones of a wanted host are looked at again this often.
HANDOVER_GRACE = 0.1


def key_prefix(spider: str, crawl_id: str) -> str:
    """``crawl:{<spider>/<crawl-id>}:``: one hash tag, so every key of a crawl is in one slot."""
    return f"crawl:{{{spider}/{crawl_id}}}:"


def worker_id() -> str:
    """Unique among the workers of a crawl, readable in ``redis-cli``: host, pid, random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Lease:
    """A permit: which host set holds it under which id."""

    __slots__ = ("host", "key", "lease")

    def __init__(self, host: str, key: str, lease: str) -> None:
        self.host = host
        self.key = key
        self.lease = lease

    def __repr__(self) -> str:
        return f"<lease {self.lease} in {self.key}>"


class _Waiters:
    """The tasks of this worker after a permit of one host: ``freed`` counts the
    messages saying permits of the host were given back; ``line`` lets one of the
    tasks that were refused ask again at a time."""

    __slots__ = ("freed", "line", "tasks")

    def __init__(self) -> None:
        self.tasks = 0
        self.freed = 0
        self.line = trio.Lock()


class RedisPermits:
    """``ConnectionPermits`` shared through Redis by every worker of one crawl.

    Start ``run`` in a nursery (``await nursery.start(permits.run)``) for the
    renewals and the batched releases; ``aclose`` gives back what is left.
    ``ttl`` is how long a lease lives without renewal: how long a killed
    worker's connections still count.
    """

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        *,
        ttl: float = 30.0,
        worker: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"the lease TTL must be > 0 seconds, got {ttl!r}")
        self._client = client
        self._prefix = prefix
        self._ttl_ms = max(1, math.ceil(ttl * 1000))
        self.ttl = ttl
        self.worker = worker or worker_id()
        self._uniform = (rng or random.Random()).uniform
        self._next_id = 0
        self.held: dict[str, _Lease] = {}  # lease id -> lease, while its connection is open
        self._held_per_host: dict[str, int] = {}
        self._to_release: list[_Lease] = []
        self._wake = trio.Event()
        self._unreachable = False
        self._waiters: dict[str, _Waiters] = {}
        self._freed = trio.Event()  # set, and replaced, at each message
        self.channel = f"{prefix}freed"
        self.wanted_channel = f"{prefix}wanted"
        self._wanted_bytes = self.wanted_channel.encode()
        self._close_idle: Callable[[str, float], int] | None = None
        self._wanted: set[str] = set()  # hosts others were refused, of which we hold leases
        self._wanted_now = trio.Event()
        self.subscription = Subscription(
            client,
            [self.channel, self.wanted_channel],
            self._on_message,
            on_ready=self._on_subscribed,
        )
        client.register(ACQUIRE)
        client.register(RELEASE)
        client.register(RENEW)

    def __repr__(self) -> str:
        return f"<RedisPermits {self._prefix}host:*:conns at {self._client.target}>"

    def hand_over_idle(self, close_idle: Callable[[str, float], int]) -> None:
        """Close this worker's idle connections to a host when another worker is refused
        a permit for it, instead of keeping them (and their permits) until keep-alive
        expiry. ``close_idle(host, idle_for)`` is the pool's ``close_idle``: only
        connections idle for ``HANDOVER_GRACE`` or more go, so a burst of requests to
        the host keeps its connections; those in use are looked at again every
        ``HANDOVER_GRACE`` while the host stays wanted and this worker holds its leases.
        """
        self._close_idle = close_idle

    def host_key(self, host: str) -> str:
        return f"{self._prefix}host:{host}:conns"

    # -- ConnectionPermits ---------------------------------------------------------

    async def acquire(self, host: str, cap: int) -> object:
        """Take a lease on one of ``host``'s ``cap`` connections, waiting while it is full.

        A lease whose call was cut short (cancellation, a lost connection) may
        or may not have been added; it is given back either way, so it never
        outlives its TTL unrenewed and uncounted.
        """
        waiters = self._waiters.get(host)
        if waiters is None:
            waiters = self._waiters[host] = _Waiters()
        waiters.tasks += 1
        try:
            # Read before asking: a message that comes between the refusal and the
            # wait is not missed.
            seen = waiters.freed
            lease, full = await self._try(host, cap)
            if lease is not None:
                return lease
            async with waiters.line:
                backoff = _FIRST_BACKOFF
                while True:
                    backoff = await self._until_freed(waiters, seen, full, backoff)
                    seen = waiters.freed
                    lease, full = await self._try(host, cap)
                    if lease is not None:
                        return lease
        finally:
            waiters.tasks -= 1
            if not waiters.tasks:
                del self._waiters[host]

    async def _try(self, host: str, cap: int) -> tuple[_Lease | None, bool]:
        """One ACQUIRE call: the lease if taken; else whether Redis said "full"."""
        key = self.host_key(host)
        self._next_id += 1
        lease = _Lease(host, key, f"{self.worker}:{self._next_id}")
        try:
            taken = await self._client.run(
                ACQUIRE,
                [key, self._wanted_key(host)],
                [lease.lease, cap, self._ttl_ms, self.wanted_channel, host],
            )
        except BaseException as exc:
            self._give_back(lease)
            if not isinstance(exc, RedisError):
                raise
            self._report_unreachable(exc, host)
            return None, False
        self._report_reachable()
        if taken == 1:
            self.held[lease.lease] = lease
            self._held_per_host[host] = self._held_per_host.get(host, 0) + 1
            return lease, False
        return None, True

    async def _until_freed(self, waiters: _Waiters, seen: int, full: bool, backoff: float) -> float:
        """Until permits of the host were given back since ``seen`` (or a slow poll's
        time), when a message will say so; else a backoff (returned, doubled)."""
        if full and self.subscription.ready:
            with trio.move_on_after(_SLOW_POLL):
                while waiters.freed == seen:
                    await self._freed.wait()
            return backoff
        await trio.sleep(backoff * self._uniform(0.5, 1.5))
        return min(_MAX_BACKOFF, backoff * 2)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        host = data.decode(errors="replace")
        if channel == self._wanted_bytes:
            if self._close_idle is not None and host in self._held_per_host:
                self._wanted.add(host)
                self._wanted_now.set()
            return
        # The mark is gone: a permit went back. A new refusal publishes it again.
        self._wanted.discard(host)
        waiters = self._waiters.get(host)
        if waiters is not None:
            waiters.freed += 1
            self._freed.set()
            self._freed = trio.Event()

    def _on_subscribed(self) -> None:
        # Messages may have been missed while there was no subscription: look again.
        for waiters in self._waiters.values():
            waiters.freed += 1
        self._freed.set()
        self._freed = trio.Event()

    def _wanted_key(self, host: str) -> str:
        return f"{self._prefix}host:{host}:wanted"

    def release(self, permit: object) -> None:
        """Forget the lease now (no more renewals) and delete it in the next batch."""
        assert isinstance(permit, _Lease)
        if self.held.pop(permit.lease, None) is not None:
            host = permit.host
            left = self._held_per_host[host] - 1
            if left:
                self._held_per_host[host] = left
            else:
                del self._held_per_host[host]
            self._give_back(permit)

    # -- the background task ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the held leases every TTL/3 and delete given-back ones as they come,
        listening meanwhile for permits the other workers give back or want."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.subscription.run)
            nursery.start_soon(self._hand_over)
            task_status.started()
            await self._maintain()

    async def _maintain(self) -> None:
        period = self.ttl / 3
        renew_at = trio.current_time() + period
        while True:
            with trio.move_on_at(renew_at):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._flush()
            if trio.current_time() >= renew_at:
                await self._renew()
                renew_at = trio.current_time() + period

    async def _hand_over(self) -> None:
        """Close the idle connections of the hosts others want, until this worker holds
        none of their leases or the host is no longer wanted (a ``freed`` message)."""
        while True:
            await self._wanted_now.wait()
            self._wanted_now = trio.Event()
            while self._wanted:
                self._hand_over_once()
                if self._wanted:
                    # Connections in use, or idle for less than the grace: look again.
                    await trio.sleep(HANDOVER_GRACE)

    def _hand_over_once(self) -> None:
        close_idle = self._close_idle
        assert close_idle is not None
        for host in list(self._wanted):
            if host not in self._held_per_host:
                self._wanted.discard(host)
                continue
            if close_idle(host, HANDOVER_GRACE):
                log.debug("%s: idle connections to %s handed over", self, host)

    async def aclose(self) -> None:
        """Give back every lease still held or queued (the pool is closed by now)."""
        for lease in list(self.held.values()):
            self.release(lease)
        with trio.move_on_after(5.0) as scope:
            scope.shield = True
            await self._flush()

    async def _flush(self) -> None:
        """Delete the given-back leases in one call; on failure they wait for the next."""
        batch, self._to_release = self._to_release, []
        if not batch:
            return
        per_host: dict[str, list[str]] = {}
        for lease in batch:
            per_host.setdefault(lease.host, []).append(lease.lease)
        keys: list[Arg] = []
        args: list[Arg] = [self.channel]
        for host, ids in per_host.items():
            keys += (self.host_key(host), self._wanted_key(host))
            args += (host, len(ids), *ids)
        try:
            await self._client.run(RELEASE, keys, args)
        except BaseException as exc:
            # Cut short (even by cancellation): sent again later, deleting twice is harmless.
            self._to_release.extend(batch)
            if not isinstance(exc, RedisError):
                raise
            self._report_unreachable(exc, "releases")

    async def _renew(self) -> None:
        leases = list(self.held.values())
        if not leases:
            return
        keys = [lease.key for lease in leases]
        args: list[int | str] = [self._ttl_ms, *(lease.lease for lease in leases)]
        try:
            lost = await self._client.run(RENEW, keys, args)
        except RedisError as exc:
            self._report_unreachable(exc, "renewals")
            return
        self._report_reachable()
        if lost:
            log.warning(
                "%s: %s connection leases had expired while their connections were open "
                "(Redis unreachable or this worker stalled for over %g s): counted again",
                self,
                lost,
                self.ttl,
            )

    def _give_back(self, lease: _Lease) -> None:
        self._to_release.append(lease)
        self._wake.set()

    def _report_unreachable(self, exc: RedisError, what: str) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.error(
                "connection permits: Redis unreachable (%s); no new connection is opened "
                "until it answers (waiting for %s)",
                exc,
                what,
            )

    def _report_reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            log.warning("connection permits: Redis answers again")
