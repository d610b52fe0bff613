"""SharedCrawl: one worker's link to a crawl shared through Redis.

A background task (``run``) does every Redis call of the worker, batched into
one pipeline per round: the pushes made outside pages, the commits of pages
done, and a lease call that reaps dead workers, renews this worker's
heartbeat (and with it all its leases) and takes more requests when the local
buffer runs low. Rounds happen when there is something to send, when the
buffer runs low, and at least every third of the lease time as a heartbeat.

A worker with nothing to do while others hold leases (starving) does not poll:
its lease call marks the crawl as waited on, and the next script that gives it
something to do (requests queued into an empty crawl, the last lease done)
publishes on the crawl's ``wake`` channel, which a connection of its own listens
to. A notification lost (Redis restarted, the listening connection down) costs a
delay, never a hang: the worker still looks every ``_SLOW_POLL`` seconds, and
polls as before while it has no subscription.

Losing Redis pauses the worker's traffic with Redis, not its work: pages
already leased are fetched and their outcomes kept, and the task retries with
a growing backoff. If the outage outlasted the lease time, Redis (on its
return) has given the leases to other workers: this worker learns it was
reaped, drops the requests it had not started and registers again; the
commits of its pages in flight are refused by the lease check, so those pages
are fetched and exported by whoever holds their leases now: once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from ._frontier import CrawlKeys, RedisFrontier
from ._redis import Arg, RedisClient, RedisConnectionError, RedisError, Subscription
from ._scripts import COMMIT, LEASE, PUSH, RELEASE, ROBOTS_CLAIM, ROBOTS_DONE, SCRIPTS

if TYPE_CHECKING:
    from ..sessions import Session
    from ..settings import Settings
    from ._delays import ThrottledHosts
    from ._sessions import SharedSessions

__all__ = ["SharedCrawl", "SharedCrawlError"]

log = logging.getLogger("crawler.distributed")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
_CALL_TIMEOUT = 10.0
_GATHER = 0.005  # a round waits this long for more pages to finish, to batch their commits
_MAX_BATCH = 512
_POLL_FIRST = 0.01  # without a subscription, a starving worker asks again after this,
_POLL_MAX = 0.1  # doubling up to this
_SLOW_POLL = 1.0  # with one, it still looks this often, in case a notification was lost
# How long a robots.txt stored for the crawl is trusted: a day, as RobotsCache does.
_ROBOTS_TTL = 86_400
# A worker waiting for a robots.txt that another one fetches asks again after this,
# doubling up to the most; it gives up waiting and fetches the file itself after the
# fetch lock's lifetime, when a holder that died would have lost the lock anyway.
_ROBOTS_POLL_FIRST = 0.01
_ROBOTS_POLL_MAX = 0.25
RobotsFetch = Callable[[str], Awaitable[tuple[int, bytes]]]
# What the lease script writes in ``stop`` when a crawl-wide limit is reached.
_LIMITS = {b"max_pages": "max_pages", b"max_items": "max_items", b"max_seconds": "max_seconds"}


class SharedCrawlError(RedisError):
    """The shared crawl cannot go on: Redis unreachable at the start or for too long."""


class SharedCrawl:
    """The worker's side of a shared crawl: its frontier and the task that syncs it."""

    def __init__(self, settings: Settings, spider: str) -> None:
        self.keys = CrawlKeys(spider, settings.crawl_id)
        self.url = settings.frontier_url
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.ttl = settings.lease_ttl
        self.outage_limit = settings.redis_outage_limit
        # About what the workers can start soon: a worker that hoards leases starves others.
        self.batch = min(_MAX_BATCH, max(8, settings.concurrency))
        # The crawl's limits, counted over every worker by the lease script; max_seconds
        # from the start of the run (see LEASE), on Redis's clock.
        self.max_pages = settings.max_pages
        self.max_items = settings.max_items
        self.max_seconds = settings.max_seconds
        # A robots.txt fetch lock outlives neither the fetch (download_timeout) nor, if the
        # holder dies, the time after which a silent worker is taken for dead.
        self.robots_lock = settings.lease_ttl
        if settings.download_timeout:
            self.robots_lock = min(self.robots_lock, settings.download_timeout)
        # When the run's deadline is due on this worker's clock (trio time), learnt when
        # it registers: a round then, so that the stop is not left to the next heartbeat.
        self._deadline_at: float | None = None
        self.frontier = RedisFrontier()
        self.frontier.low_water = self.batch // 2
        self.frontier.nudge = self._nudge
        self.client = RedisClient(self.url, scripts=SCRIPTS, pool_size=2)
        self._wake = trio.Event()
        self.subscription = Subscription(
            self.client, [self.keys.wake], self._notified, on_ready=self._nudge
        )
        self._register = True
        self._resync = False
        self._resent: set[bytes] = set()  # pages whose commit is sent again
        self._heartbeat_at = 0.0
        self._poll = _POLL_FIRST
        self._stop_seen = False
        self.stopping = False
        self.queued = 0  # the last counts Redis gave: requests waiting, leases held
        self.leased = 0
        # Set by attach(): the scheduler's wake-up and the crawler's stop.
        self._refilled: Callable[[Iterable[str]], None] = _ignore
        self._stop: Callable[[str], None] = _ignore
        self._fail: Callable[[str], None] = _ignore
        self._errors: Callable[[], int] = _zero
        self._errors_sent = 0
        #: With shared_sessions: the sessions kept in step with the other workers'.
        self.sessions: SharedSessions | None = None
        #: With shared delays: the hosts other workers throttle, read with each round.
        self.throttled: ThrottledHosts | None = None

    def attach(
        self,
        refilled: Callable[[Iterable[str]], None],
        stop: Callable[[str], None],
        fail: Callable[[str], None],
        errors: Callable[[], int],
    ) -> None:
        """``errors()``: this worker's error count so far, summed into the crawl's stats."""
        self._refilled = refilled
        self._stop = stop
        self._fail = fail
        self._errors = errors

    def share_sessions(self, sessions: dict[str, Session], wait: float) -> SharedSessions:
        """Keep ``sessions`` (the crawler's, by name) in the crawl's keys: their cookies
        ride along the rounds, and one login serves every worker."""
        from ._sessions import SharedSessions

        self.sessions = SharedSessions(
            self.client,
            self.keys.prefix,
            sessions,
            lock_ttl=self.ttl,
            wait=wait,
            worker=self.worker,
        )
        return self.sessions

    def watch_throttles(self, throttled: ThrottledHosts) -> None:
        """Read the crawl's throttled hosts with each round (see ``ThrottledHosts``)."""
        from ._delays import THROTTLED

        self.client.register(THROTTLED)
        self.throttled = throttled

    def _nudge(self) -> None:
        self._wake.set()

    def _notified(self, _channel: bytes, _data: bytes) -> None:
        # Every worker listening hears it; only a starving one has a use for a round.
        if not self.frontier.buffered:
            self._wake.set()

    def robots_fetch(self, fetch: RobotsFetch) -> RobotsFetch:
        """``fetch`` for robots.txt, fetched once for the whole crawl: a worker first
        looks for the file in the crawl's keys, and stores what it fetched for the others,
        so that a site sees one robots.txt request however many workers crawl it.
        A short lock (see ROBOTS_CLAIM) makes one worker the fetcher when several need
        the file at once; the others wait for its answer. Failures (429, 5xx, network
        errors) are not stored: each worker waits out its own and asks again. Without
        Redis the worker fetches the file itself, and so it does when the lock's holder
        seems gone."""

        async def fetch_shared(url: str) -> tuple[int, bytes]:
            keys: list[Arg] = [
                f"{self.keys.prefix}robots:{url}",
                f"{self.keys.prefix}robots-lock:{url}",
            ]
            token = secrets.token_hex(8)
            stored = await self._robots_claim(url, keys, token)
            if stored is not None:
                return stored
            try:
                status, body = await fetch(url)
            except Exception:
                await self._robots_call(ROBOTS_DONE.command(keys, [token, "", 0]))
                raise
            record = b"%d\n" % status + body if status < 500 and status != 429 else b""
            await self._robots_call(ROBOTS_DONE.command(keys, [token, record, _ROBOTS_TTL]))
            return status, body

        return fetch_shared

    async def _robots_claim(
        self, url: str, keys: list[Arg], token: str
    ) -> tuple[int, bytes] | None:
        """The stored answer; None when this worker is to fetch the file: it took the
        lock, or Redis cannot say, or the holder took longer than the lock's lifetime."""
        lock_ms = max(1, int(self.robots_lock * 1000))
        delay = _ROBOTS_POLL_FIRST
        # Bounded: the waits add up to more than the lock's lifetime, so a holder that
        # died has lost the lock (and another worker took it) by the last ask.
        for ask in range(int(self.robots_lock / _ROBOTS_POLL_MAX) + 16):
            reply = await self._robots_call(ROBOTS_CLAIM.command(keys, [token, lock_ms]))
            if not isinstance(reply, list) or reply[0] == 2:
                return None
            if reply[0] == 1:
                code, _, text = bytes(reply[1]).partition(b"\n")
                if code.isdigit():
                    return int(code), text
                return None
            if ask == 0:
                log.debug(
                    "worker %s: waiting for %s, which another worker is fetching",
                    self.worker,
                    url,
                )
            await trio.sleep(delay)
            delay = min(_ROBOTS_POLL_MAX, delay * 2)
        return None

    async def _robots_call(self, command: list[Arg]) -> Any:
        try:
            with trio.fail_after(_CALL_TIMEOUT):
                return (await self.client.pipeline([command]))[0]
        except (RedisError, trio.TooSlowError) as exc:
            log.info("worker %s: robots.txt not shared (%s)", self.worker, exc or "no reply")
            return None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Reach Redis and register this worker; a clear error if Redis is not there."""
        try:
            await self.client.pipeline(
                [
                    ["HSETNX", self.keys.meta, "spider", self.keys.spider],
                    ["HSETNX", self.keys.meta, "created", repr(time.time())],
                ]
            )
            await self._round()
        except RedisError as exc:
            await self.client.aclose()
            raise SharedCrawlError(f"shared crawl {self.keys.prefix}: {exc}") from None
        log.info(
            "worker %s joined the shared crawl %s on %s (%d queued, %d leased)",
            self.worker,
            self.keys.prefix.rstrip(":"),
            self.client.target,
            self.queued,
            self.leased,
        )

    async def run(self) -> None:
        """Sync with Redis until cancelled (the crawler cancels it once its workers end),
        listening for the crawl's wake-ups meanwhile."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.subscription.run)
            await self._sync()
            nursery.cancel_scope.cancel()

    async def _sync(self) -> None:
        outage_since: float | None = None
        backoff = _BACKOFF_FIRST
        while True:
            if outage_since is None:
                await self._wait()
            try:
                with trio.fail_after(_CALL_TIMEOUT):
                    await self._round()
            except (RedisConnectionError, trio.TooSlowError) as exc:
                now = time.monotonic()
                if outage_since is None:
                    outage_since = now
                    log.warning(
                        "worker %s: lost Redis (%s); pausing leases, keeping the pages in "
                        "flight, retrying",
                        self.worker,
                        exc or "no reply in time",
                    )
                self._resync = True
                if now - outage_since > self.outage_limit:
                    log.error(
                        "worker %s: Redis unreachable for %.0f s (redis_outage_limit); stopping",
                        self.worker,
                        now - outage_since,
                    )
                    self._fail("redis_unreachable")
                    return
                log.info("worker %s: retrying Redis in %.1f s", self.worker, backoff)
                await trio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                continue
            if outage_since is not None:
                log.warning(
                    "worker %s: Redis is back after %.1f s; resuming",
                    self.worker,
                    time.monotonic() - outage_since,
                )
                outage_since = None
                backoff = _BACKOFF_FIRST

    async def _wait(self) -> None:
        """Until there is something to send, the buffer is low, or a heartbeat is due."""
        frontier = self.frontier
        if self._register or self._resync or (self._want() and self.queued):
            return
        if frontier.commits or frontier.loose or frontier.loose_items:
            await trio.sleep(_GATHER)
            return
        now = trio.current_time()
        timeout = self._heartbeat_at - now
        if self._deadline_at is not None:
            if self._deadline_at <= now:
                # Due: ask now, and while Redis's clock is not there yet, every 0.1 s.
                self._deadline_at = now + _POLL_MAX
                return
            timeout = min(timeout, self._deadline_at - now)
        if frontier.buffered == 0 and not frontier.finished:
            if self.subscription.ready:
                # Starving, woken by a notification when there is something to lease.
                timeout = min(timeout, _SLOW_POLL)
            else:
                # Starving and deaf: look again soon, as others' commits queue new
                # requests; less often the longer nothing comes.
                timeout = min(timeout, self._poll)
                self._poll = min(_POLL_MAX, self._poll * 2)
        with trio.move_on_after(max(0.0, timeout)):
            await self._wake.wait()
        self._wake = trio.Event()
        if frontier.commits and len(frontier.commits) < self.batch // 4:
            await trio.sleep(_GATHER)

    def _want(self) -> int:
        if self.stopping:
            return 0
        buffered = self.frontier.buffered
        return self.batch - buffered if buffered <= self.frontier.low_water else 0

    async def finish(self) -> None:
        """Commit what is left and give back every lease still held (requests not started,
        retries waiting): another worker, or the next run, takes them."""
        try:
            with trio.fail_after(_CALL_TIMEOUT):
                self.stopping = True
                await self._round()  # the last commits and counters
                await self.client.run(
                    RELEASE, [self.keys.meta], [self.keys.prefix, self.worker, "leave"]
                )
        except (RedisError, trio.TooSlowError) as exc:
            log.warning(
                "worker %s: could not give back its leases (%s); they return to the queue "
                "when its heartbeat expires (%g s)",
                self.worker,
                exc or "no reply in time",
                self.ttl,
            )
        finally:
            await self.client.aclose()

    # -- one round -------------------------------------------------------------------

    async def _round(self) -> None:
        frontier = self.frontier
        prefix, meta = self.keys.prefix, self.keys.meta
        loose, commits, items = frontier.loose, frontier.commits, frontier.loose_items
        frontier.loose, frontier.commits, frontier.loose_items = [], [], []
        quiet = not (loose or commits or items)
        commands: list[list[Arg]] = []
        if loose:
            args: list[Arg] = [prefix]
            for fingerprint, stored in loose:
                args += (fingerprint, stored)
            commands.append(PUSH.command([meta], args))
        if items:
            commands.extend(["XADD", self.keys.items, "*", "i", line] for line in items)
        commit_at = len(commands)
        if commits:
            args = _commit_args(prefix, self.worker, commits, self._resent)
            commands.append(COMMIT.command([meta], args))
        if self._resync and not self._register:
            # A lease reply lost with a connection: give back what this worker never saw.
            commands.append(
                RELEASE.command([meta], [prefix, self.worker, "keep", *frontier.lease_ids()])
            )
        sessions_at = len(commands)
        if self.sessions is not None:
            commands.extend(self.sessions.commands())
        sessions_end = throttled_at = len(commands)
        if self.throttled is not None:
            commands.append(self.throttled.command())
        errors = self._errors() - self._errors_sent
        if errors:
            commands.append(["HINCRBY", self.keys.stats, "errors", errors])
            commands.append(["HINCRBY", self.keys.stats, f"w:{self.worker}:errors", errors])
        want = self._want()
        registering = self._register
        commands.append(
            LEASE.command(
                [meta],
                [
                    prefix,
                    self.worker,
                    int(self.ttl * 1000),
                    want,
                    "1" if self._register else "0",
                    # No cap per host: shared per-host caps would set it (see LEASE).
                    max(1, want),
                    self.max_pages,
                    self.max_items,
                    int(self.max_seconds * 1000),
                    "1" if want and not frontier.buffered else "0",
                ],
            )
        )
        lease_at = len(commands) - 1
        if registering:
            # The run's deadline, which this very lease call may have set, and Redis's
            # clock to tell how far it is: only when joining, so no cost per page.
            commands += (["GET", self.keys.deadline], ["TIME"])
        try:
            replies = await self.client.pipeline(commands)
        except BaseException:
            # Unknown whether they were applied: send them again (pushes are deduplicated;
            # a commit applied already is refused the second time, and only counted).
            frontier.loose[:0] = loose
            frontier.commits[:0] = commits
            self._resent.update(rid for rid, _ in commits)
            frontier.loose_items[:0] = items
            raise
        self._resync = False
        self._errors_sent += errors
        if self._resent:
            self._resent.clear()
        self._heartbeat_at = trio.current_time() + self.ttl / 3
        if commits:
            self._committed(replies[commit_at])
        if registering:
            self._deadline(replies[-2], replies[-1])
        if self.throttled is not None:
            self.throttled.update(replies[throttled_at])
        self._leased(replies[lease_at], quiet)
        if self.sessions is not None:
            await self.sessions.replies(replies[sessions_at:sessions_end])

    def _deadline(self, deadline: Any, clock: Any) -> None:
        if not isinstance(deadline, bytes):
            self._deadline_at = None
            return
        now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
        self._deadline_at = trio.current_time() + max(0, int(deadline) - now_ms) / 1000

    def _committed(self, reply: Any) -> None:
        _pages, _items, late, *refused = reply
        if late:
            log.info(
                "worker %s: %d page(s) sent again were committed already (the first "
                "reply was lost with the connection)",
                self.worker,
                late,
            )
        if refused:
            log.warning(
                "worker %s: %d page(s) not committed: their leases had expired and went to "
                "another worker, which fetches them again",
                self.worker,
                len(refused),
            )

    def _leased(self, reply: Any, quiet: bool) -> None:
        alive, queued, leased, stop, *pairs = reply
        self.queued, self.leased = int(queued), int(leased)
        frontier = self.frontier
        if not alive:
            dropped = frontier.drop_buffered()
            log.warning(
                "worker %s: its leases expired while it could not reach Redis; dropped %d "
                "requests not started (others fetch them) and joins again",
                self.worker,
                dropped,
            )
            self._register = True
            return
        self._register = False
        if pairs:
            self._poll = _POLL_FIRST
            self._refilled(frontier.add_leased(pairs))
        if stop and not self._stop_seen:
            self._stop_seen = True
            self._deadline_at = None
            self.stopping = True
            reason = _LIMITS.get(stop, "stopped")
            log.info(
                "worker %s: %s; finishing the pages in flight",
                self.worker,
                "crawl stop requested" if reason == "stopped" else f"the crawl reached {reason}",
            )
            self._stop(reason)
        if quiet and not self.queued and not self.leased and frontier.idle():
            # Nothing waits and no page is leased to anyone: the crawl is over.
            if not frontier.finished:
                frontier.finished = True
                self._refilled(())
        elif frontier.finished and (self.queued or self.leased):
            frontier.finished = False


def _commit_args(
    prefix: str, worker: str, commits: list[tuple[bytes, Any]], resent: set[bytes]
) -> list[Arg]:
    args: list[Arg] = [prefix, worker, "0" if resent else "1"]
    for rid, outcome in commits:
        children, items = outcome.children, outcome.items
        args += (rid, len(children), len(items), "1" if rid in resent else "0")
        for fingerprint, stored in children:
            args += (fingerprint, stored)
        args.extend(items)
    return args


def _ignore(*_args: Any) -> None:
    pass


def _zero() -> int:
    return 0
