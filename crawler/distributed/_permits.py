"""Connection permits counted in Redis: the per-host cap of every worker together.

Each open connection of any worker is one lease in a sorted set per host,
``crawl:{<spider>/<crawl-id>}:host:<host>:conns``, scored by the time (Redis's
clock, in ms) at which it expires. Taking a permit is one Lua call that drops
the expired leases, compares the count with the cap the worker passes (its
own configuration for that host) and adds the lease if there is room; a full
host is asked again after a short jittered wait, the pool bounding the whole
wait by its pool timeout. A task of the worker renews every lease it holds
every TTL/3 in one call, and gives leases back in batches, so the cost is one
call per connection opened plus one per batch of closes, never per request.

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

import trio

from ._redis import RedisClient, RedisError, Script

__all__ = ["ACQUIRE", "RENEW", "RedisPermits", "key_prefix", "worker_id"]

log = logging.getLogger("crawler.distributed")

#: KEYS[1] the host's lease set; ARGV lease id, cap, TTL in ms. 1 if taken, 0 if full.
ACQUIRE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
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

_FIRST_BACKOFF = 0.002  # seconds; doubled per refusal up to _MAX_BACKOFF
_MAX_BACKOFF = 0.1


def key_prefix(spider: str, crawl_id: str) -> str:
    """``crawl:{<spider>/<crawl-id>}:``: one hash tag, so every key of a crawl is in one slot."""
    return f"crawl:{{{spider}/{crawl_id}}}:"


def worker_id() -> str:
    """Unique among the workers of a crawl, readable in ``redis-cli``: host, pid, random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Lease:
    """A permit: which host set holds it under which id."""

    __slots__ = ("key", "lease")

    def __init__(self, key: str, lease: str) -> None:
        self.key = key
        self.lease = lease

    def __repr__(self) -> str:
        return f"<lease {self.lease} in {self.key}>"


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
        self._to_release: list[_Lease] = []
        self._wake = trio.Event()
        self._unreachable = False
        client.register(ACQUIRE)
        client.register(RENEW)

    def __repr__(self) -> str:
        return f"<RedisPermits {self._prefix}host:*:conns at {self._client.target}>"

    def host_key(self, host: str) -> str:
        return f"{self._prefix}host:{host}:conns"

    # -- ConnectionPermits ---------------------------------------------------------

    async def acquire(self, host: str, cap: int) -> object:
        """Take a lease on one of ``host``'s ``cap`` connections, asking again while full.

        A lease whose call was cut short (cancellation, a lost connection) may
        or may not have been added; it is given back either way, so it never
        outlives its TTL unrenewed and uncounted.
        """
        key = self.host_key(host)
        backoff = _FIRST_BACKOFF
        while True:
            self._next_id += 1
            lease = _Lease(key, f"{self.worker}:{self._next_id}")
            try:
                taken = await self._client.run(ACQUIRE, [key], [lease.lease, cap, self._ttl_ms])
            except BaseException as exc:
                self._give_back(lease)
                if not isinstance(exc, RedisError):
                    raise
                self._report_unreachable(exc, host)
            else:
                self._report_reachable()
                if taken == 1:
                    self.held[lease.lease] = lease
                    return lease
            await trio.sleep(backoff * self._uniform(0.5, 1.5))
            backoff = min(_MAX_BACKOFF, backoff * 2)

    def release(self, permit: object) -> None:
        """Forget the lease now (no more renewals) and delete it in the next batch."""
        assert isinstance(permit, _Lease)
        if self.held.pop(permit.lease, None) is not None:
            self._give_back(permit)

    # -- the background task ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the held leases every TTL/3 and delete given-back ones as they come."""
        task_status.started()
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
        per_key: dict[str, list[str]] = {}
        for lease in batch:
            per_key.setdefault(lease.key, []).append(lease.lease)
        try:
            await self._client.pipeline([["ZREM", key, *ids] for key, ids in per_key.items()])
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
