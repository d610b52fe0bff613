"""The connection pool: origin -> connections, global and per-host caps, keep-alive.

Bookkeeping is synchronous and O(1) per request. Each origin (scheme, host,
port) keeps a deque of its idle connections; each host (the name, whatever the
port) keeps a count of its connections, its cap and a FIFO queue of requests
waiting for it. Reuse takes the most recently used idle connection (the one
least likely to have been closed by the server). A finished connection goes
straight to the first waiter of its host if there is one, so nobody rescans
the pool and nobody jumps the queue.

A host that has room under its own cap but waits because the global cap is
full joins ``_blocked``; a slot freed anywhere (or an idle connection of
another host, which is closed to make room) goes to the first blocked host.
So a slow or capped host never holds up others.

Connections are closed synchronously (closing the socket needs no await), so
no bookkeeping step can be interrupted by cancellation half-way and nothing
needs a shield. The only awaits are the wait for a slot, connecting, and the
exchange itself; each is wrapped so that cancellation or a timeout gives back
what was taken.

This module is the HTTP/1.1 path and what both protocols share: connection
slots, the idle list of both kinds (``_idle_all``, oldest first: one rule
closes either to make room, on keep-alive expiry or beyond
``max_keepalive_connections``) and the queues of requests waiting for a
slot. HTTP/2 streams are ``_pool_h2``'s business; it reaches the counters
only through ``_try_reserve``, ``_wait``, ``_unreserve``, ``_release_slot``
and ``_expire``. ``_check_invariants`` states what the counters must agree
with.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping

import trio

from ._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Limits, Timeout
from ._exceptions import (
    PoolTimeout,
    ReadError,
    RemoteProtocolError,
    WriteError,
    total_timeout,
)
from ._http11 import EXPECT_CONTINUE_MIN, HTTP11Connection
from ._interfaces import IDEMPOTENT, ConnectionPermits, OriginKey, PooledConnection
from ._models import Request, Response
from ._network import IOWatchdog, open_stream
from ._pool_h2 import HTTP2Pool
from ._pool_invariants import invariant_errors
from ._pool_state import Host, Origin, ProxySlots, Waiter, check_cap, origin_key
from ._proxy import PROXY, Proxy, ProxyRoutes
from ._tls import VerifyTypes, create_ssl_context

__all__ = ["ConnectionPool"]

log = logging.getLogger(__name__)

_INF = float("inf")
_TRUST_IDLE_FOR = 1.0  # seconds; see ConnectionPool._take_idle
_RETRYABLE = (ReadError, WriteError, RemoteProtocolError)
_ALPN = ("h2", "http/1.1")


class ConnectionPool:
    """Sends requests over pooled keep-alive connections (the Transport protocol).

    ``limits.max_connections`` caps the whole pool; ``max_connections_per_host``
    (or a per-host override from ``host_limits`` / ``set_host_limit``) caps
    each host name: the politeness guarantee no code path can bypass, whatever
    proxy a request goes through. ``max_connections_per_proxy`` caps each proxy.

    With ``http2``, an ``ssl.SSLContext`` given as ``verify`` is changed: its
    ALPN protocols are set to ``h2`` and ``http/1.1``, without which no server
    would ever choose HTTP/2.

    HTTP/1.1 request bodies of at least ``expect_continue`` bytes (``None``:
    never) are announced with ``Expect: 100-continue``, so that a server that
    refuses them (413, 417, 401...) can say so before they are sent.

    ``permits`` adds a cap beyond this pool (see ``ConnectionPermits``): a
    permit is taken before each new connection is opened, after the pool's
    own caps allowed it, and given back when that connection closes. Reusing
    an idle connection takes none.
    """

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: VerifyTypes = True,
        http2: bool = False,
        http2_prior_knowledge: bool = False,
        host_limits: Mapping[str, int] | None = None,
        clock: Callable[[], float] | None = None,
        expect_continue: int | None = EXPECT_CONTINUE_MIN,
        proxy_routes: ProxyRoutes | None = None,
        permits: ConnectionPermits | None = None,
    ) -> None:
        if expect_continue is not None and expect_continue < 0:
            raise ValueError(f"expect_continue must be >= 0 or None, got {expect_continue!r}")
        self._expect_min: float = _INF if expect_continue is None else expect_continue
        self._http2 = http2
        if http2 and isinstance(verify, ssl.SSLContext):
            # As httpx does: a context of the caller's offers HTTP/2 only if told to,
            # and it is the one object every TLS connection uses.
            verify.set_alpn_protocols(list(_ALPN))
        self._h2_prior_knowledge = http2_prior_knowledge
        self._h2_context: ssl.SSLContext | None = None
        self._making_room = False
        self._limits = limits
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._timeout = timeout
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._clock = clock or trio.current_time
        # Whether the next connection to stay idle should start the keep-alive sweeper
        # (see _sweep): never with an injected clock, whose time the sweeper cannot
        # sleep on; false while one runs.
        self._sweep_next = clock is None and self._expiry is not None
        self._sweep_scope: trio.CancelScope | None = None
        self._host_limits: dict[str, int] = {}
        for name, cap in (host_limits or {}).items():
            check_cap(name, cap)
            self._host_limits[name.lower()] = cap
        self._routes = proxy_routes
        self._permits = permits
        self._proxy_cap = limits.max_connections_per_proxy
        self._proxy_slots: dict[Proxy, ProxySlots] = {}
        # Direct origins under their OriginKey, proxied ones under (*key, proxy).
        self._origins: dict[tuple[object, ...], Origin] = {}
        self._hosts: dict[str, Host] = {}
        self._blocked: deque[Host] = deque()
        # Idle connections of both protocols; insertion order = oldest first.
        self._idle_all: dict[PooledConnection, None] = {}
        self._conns: set[HTTP11Connection] = set()
        self._watchdog = IOWatchdog(self._conns)
        self._total = 0  # open or opening connections
        self._closed = False
        self._h2 = HTTP2Pool(self)
        # Bound once: HTTP/2 requests pay no more lookups than a method of ours.
        self._handle_h2 = self._h2.handle_request

    # -- public API --------------------------------------------------------------

    async def handle_request(self, request: Request) -> Response:
        if self._closed:
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool is closed"
            )
        url = request.url
        key = (url.scheme, url.host, url.port)
        if self._routes is None and PROXY not in request.extensions:
            origin = self._origins.get(key)
            if origin is None:
                origin = self._new_origin(request, None)
        else:
            origin = self._routed_origin(request, key)
        timeouts = request.timeout or self._timeout
        total = timeouts.total
        end = _INF if total is None else trio.current_time() + total
        if origin.h2 is not None:
            return await self._handle_h2(origin.h2, request, timeouts, end)
        idempotent = request.method in IDEMPOTENT
        conn = self._take_idle(origin, idempotent) if not origin.host.waiters else None
        if conn is None:
            conn = await self._acquire_before(end, origin, request, timeouts, fresh=False)
        try:
            return await conn.handle_request(request, timeouts, end)
        except _RETRYABLE:
            # A keep-alive connection the server had already dropped: nothing
            # of the response arrived, so a safe request can go out again.
            if conn.requests_served == 1 or conn.response_started:
                raise
            if not idempotent:
                raise
        conn = await self._acquire_before(end, origin, request, timeouts, fresh=True)
        return await conn.handle_request(request, timeouts, end)

    async def aclose(self) -> None:
        """Close every connection; waiting and later requests fail with RuntimeError."""
        self._closed = self._h2.closed = True
        self._sweep_next = False
        if self._sweep_scope is not None:
            self._sweep_scope.cancel()
        while self._idle_all:
            self._close_idle(next(iter(self._idle_all)))
        # Active connections are closed under their users, whose pending I/O
        # fails and checks them in (which forgets them, the pool being closed).
        for conn in list(self._conns):
            conn.close()
        self._h2.close_all()
        self._watchdog.close()
        for host in self._hosts.values():
            while host.waiters:
                host.waiters.popleft().event.set()
            for origin in host.origins:
                if origin.h2 is not None:
                    origin.h2.wake_all()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def set_host_limit(self, host: str, max_connections: int) -> None:
        """Cap connections to ``host`` (a host name, all ports) from now on."""
        check_cap(host, max_connections)
        name = host.lower()
        self._host_limits[name] = max_connections
        state = self._hosts.get(name)
        if state is not None:
            state.cap = max_connections
            # Idle connections beyond a lowered cap close now, not when a request next
            # needs room; the global slots they free may serve other hosts.
            while state.count > max_connections:
                idle = self._idle_in_host(state)
                if idle is None:
                    break
                self._close_idle(idle)
            self._slot_freed(state)
            for origin in state.origins:
                if origin.h2 is not None:
                    self._h2.serve(origin.h2)

    def close_expired(self) -> None:
        """Close the idle connections past keep-alive expiry now.

        The pool does so by itself, without traffic, when their keep-alive
        expires; this is for a pool made with an injected ``clock``, which it
        cannot sleep on (tests), and checks expiry only when a connection is
        checked in or out.
        """
        if self._expiry is not None and self._idle_all:
            self._expire(self._clock())

    def close_idle(self, host: str, idle_for: float = 0.0) -> int:
        """Close ``host``'s connections that have been idle for ``idle_for`` seconds or
        more (every port and proxy, both protocols); return how many. One in use is
        never touched.

        With ``permits`` shared by several processes, an idle connection holds a
        permit that another process may be refused: closing it gives the permit
        back now instead of at keep-alive expiry. ``idle_for`` spares the
        connections of a burst of requests, idle only between two of them.
        """
        state = self._hosts.get(host.lower())
        if state is None or not self._idle_all:
            return 0
        cutoff = self._clock() - idle_for
        closed = 0
        for origin in state.origins:
            idle = origin.idle  # oldest first
            while idle and idle[0].idle_since <= cutoff:
                self._close_idle(idle[0])
                closed += 1
            if origin.h2 is not None:
                for conn in [c for c in origin.h2.conns if c in self._idle_all]:
                    if conn.idle_since <= cutoff:
                        self._close_idle(conn)
                        closed += 1
        if closed:
            self._slot_freed(state)
        return closed

    def connection_counts(self) -> dict[str, tuple[int, int]]:
        """``"scheme://host:port"`` -> (active, idle) connections, for progress displays.

        An origin on HTTP/2 appears as ``"scheme://host:port h2xN"`` (N connections)
        -> (active streams, idle connections).
        """
        counts = {
            o.label: (o.active, len(o.idle)) for o in self._origins.values() if o.active or o.idle
        }
        if self._h2.conns:
            self._h2.add_counts(counts)
        return counts

    @property
    def num_idle(self) -> int:
        return len(self._idle_all)

    @property
    def num_active(self) -> int:
        return self._total - len(self._idle_all)

    def __repr__(self) -> str:
        text = f"<ConnectionPool [{self.num_active} active, {self.num_idle} idle"
        if self._http2 or self._h2_prior_knowledge:
            text += ", " + self._h2.describe()
        return text + "]>"

    # -- checkout ----------------------------------------------------------------

    def _take_idle(self, origin: Origin, idempotent: bool) -> HTTP11Connection | None:
        """Pop a live idle connection of ``origin``, dropping dead ones on the way.

        The liveness poll is a system call, ~10% of a request's CPU at full
        speed, so a connection that was idle for less than ``_TRUST_IDLE_FOR``
        is not polled before an idempotent request: servers drop idle
        connections after seconds, and a request that meets one anyway fails
        before any byte of response and is resent once on a fresh connection.
        """
        idle = origin.idle
        if not idle:
            return None
        now = self._clock()
        expiry = self._expiry
        idle_all = self._idle_all
        while idle:
            conn = idle.pop()
            del idle_all[conn]
            trusted = idempotent and now - conn.idle_since < _TRUST_IDLE_FOR
            if conn.has_expired(now, expiry) or (not trusted and conn.is_readable()):
                self._forget(conn)
                continue
            origin.active += 1
            if self._blocked:
                self._serve_blocked()
            return conn
        if self._blocked:
            self._serve_blocked()
        return None

    def _try_reserve(self, origin: Origin) -> bool:
        """Take a connection slot for ``origin`` at once, if nobody is queued for its host
        and both caps allow (closing an idle connection elsewhere to make room)."""
        host = origin.host
        if host.waiters:
            return False
        if host.count >= host.cap:
            self._make_room_in_host(host)
        slots = origin.slots
        if slots is not None and not self._proxy_room(slots):
            return False
        if host.count < host.cap and self._make_global_room():
            self._reserve(origin)
            return True
        return False

    async def _acquire_before(
        self, end: float, origin: Origin, request: Request, timeouts: Timeout, *, fresh: bool
    ) -> HTTP11Connection:
        """``_acquire_slow``, given up with TotalTimeout at ``end`` (only then a cancel scope)."""
        if end == _INF:
            return await self._acquire_slow(origin, request, timeouts, fresh=fresh)
        with trio.move_on_at(end):
            return await self._acquire_slow(origin, request, timeouts, fresh=fresh)
        raise total_timeout(request, timeouts.total)

    async def _acquire_slow(
        self, origin: Origin, request: Request, timeouts: Timeout, *, fresh: bool
    ) -> HTTP11Connection:
        """Get a slot for ``origin`` (waiting if need be) and open a connection in it."""
        if not self._try_reserve(origin):
            conn = await self._wait(origin, request, timeouts, fresh)
            if conn is not None:
                return conn
        try:
            stream, permit = await self._open_stream(origin, request, timeouts)
            return self._new_h1(origin, stream, permit)
        except BaseException:
            self._unreserve(origin)
            raise

    async def _wait(
        self, origin: Origin, request: Request, timeouts: Timeout, fresh: bool
    ) -> HTTP11Connection | None:
        """Queue for ``origin``'s host; return an idle connection, or None for a new slot."""
        host = origin.host
        waiter = Waiter(origin, fresh)
        host.waiters.append(waiter)
        if host.count < host.cap:
            self._serve_host(host)
        pool_t = timeouts.pool
        try:
            with trio.move_on_after(float("inf") if pool_t is None else pool_t):
                await waiter.event.wait()
        except BaseException:
            self._abandon(waiter)
            raise
        if self._closed:
            self._abandon(waiter)
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
            )
        if not waiter.assigned:
            self._abandon(waiter)
            raise PoolTimeout(
                f"Timed out after {pool_t} s waiting for a connection to {origin.label} "
                f"for {request.url} ({host.count} of at most {host.cap} open to {host.name}, "
                f"{self._total} open in the pool)",
                request=request,
            )
        return waiter.conn

    def _abandon(self, waiter: Waiter) -> None:
        """A waiter gave up (timeout, cancellation): give back whatever it was given."""
        if not waiter.assigned:
            with contextlib.suppress(ValueError):
                waiter.origin.host.waiters.remove(waiter)
            return
        waiter.assigned = False
        conn = waiter.conn
        if conn is not None:
            waiter.conn = None
            self._checkin(conn)
        else:
            self._unreserve(waiter.origin)

    async def _open_stream(
        self, origin: Origin, request: Request, timeouts: Timeout
    ) -> tuple[trio.abc.Stream, object]:
        """Connect for ``origin`` (its slot is taken): the stream and its permit, if any."""
        permits = self._permits
        if permits is None:
            return await self._connect(origin, request, timeouts), None
        permit = await self._acquire_permit(permits, origin, request, timeouts)
        try:
            return await self._connect(origin, request, timeouts), permit
        except BaseException:
            permits.release(permit)
            raise

    async def _acquire_permit(
        self, permits: ConnectionPermits, origin: Origin, request: Request, timeouts: Timeout
    ) -> object:
        """The permit for one more connection to ``origin``'s host, within the pool timeout."""
        host = origin.host
        pool_t = timeouts.pool
        with trio.move_on_after(_INF if pool_t is None else pool_t):
            return await permits.acquire(host.name, host.cap)
        raise PoolTimeout(
            f"Timed out after {pool_t} s waiting for a permit from {permits!r} to open a "
            f"connection to {origin.label} for {request.url} (at most {host.cap} open to "
            f"{host.name} across everything sharing those permits; {host.count} in this pool)",
            request=request,
        )

    def _release_permit(self, conn: PooledConnection) -> None:
        """``conn`` is closed: its permit goes back, once."""
        permit = conn.pool_permit
        conn.pool_permit = None
        if self._permits is not None:
            self._permits.release(permit)

    async def _connect(
        self, origin: Origin, request: Request, timeouts: Timeout
    ) -> trio.abc.Stream:
        scheme, hostname, _ = origin.key
        context = None
        if scheme == "https":
            if origin.h2 is not None:
                context = self._h2_context
                if context is None:
                    context = self._h2_context = create_ssl_context(self._verify, alpn=_ALPN)
            else:
                context = self._ssl_context
                if context is None:
                    context = self._ssl_context = create_ssl_context(self._verify)
        stream = await open_stream(
            request, hostname, origin.port, context, timeouts.connect, origin.proxy
        )
        if self._closed:
            await trio.aclose_forcefully(stream)
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
            )
        return stream

    def _new_h1(self, origin: Origin, stream: trio.abc.Stream, permit: object) -> HTTP11Connection:
        proxy = origin.proxy
        forward = proxy is not None and proxy.forwards and origin.key[0] == "http"
        conn = HTTP11Connection(
            origin.key,
            stream,
            self._checkin,
            host_header=origin.host_header,
            watchdog=self._watchdog,
            expect_continue_min=self._expect_min,
            target_prefix=b"http://" + origin.host_header if forward else b"",
            proxy_authorization=proxy.authorization if forward and proxy else None,
        )
        conn.pool_origin = origin
        conn.pool_permit = permit
        self._conns.add(conn)
        return conn

    # -- slot bookkeeping (all synchronous) ----------------------------------------
    #
    # A slot is one open or opening connection, counted in its host's count and
    # in _total (and in origin.active while an HTTP/1.1 one is checked out or
    # being opened). _reserve takes one; _unreserve gives back a checked-out
    # one, _forget an idle one, _release_slot an HTTP/2 one. (The two counter
    # lines are repeated rather than shared: a call costs more than they do.)

    def _reserve(self, origin: Origin) -> None:
        origin.active += 1
        origin.host.count += 1
        self._total += 1
        if origin.slots is not None:
            origin.slots.count += 1

    def _unreserve(self, origin: Origin) -> None:
        origin.active -= 1
        host = origin.host
        host.count -= 1
        self._total -= 1
        slots = origin.slots
        if slots is not None:
            slots.count -= 1
        self._slot_freed(host)
        if slots is not None and slots.blocked:
            self._serve_proxy(slots)

    def _release_slot(self, origin: Origin) -> None:
        """An HTTP/2 connection has closed: its slot goes to whoever waits for one,
        unless the pool closed it to make room, which promised the slot already."""
        host = origin.host
        host.count -= 1
        self._total -= 1
        slots = origin.slots
        if slots is not None:
            slots.count -= 1
        if not self._making_room:
            self._slot_freed(host)
            if slots is not None and slots.blocked:
                self._serve_proxy(slots)

    def _checkin(self, conn: HTTP11Connection) -> None:
        """A connection comes back from a request: reuse, hand over, keep or close it."""
        origin: Origin = conn.pool_origin
        host = origin.host
        if conn.is_closed or self._closed:
            self._drop(conn)
            return
        if host.waiters:
            waiter = host.waiters[0]
            if waiter.origin is origin and not waiter.fresh:
                host.waiters.popleft()  # still checked out, now to the waiter
                waiter.conn = conn
                waiter.assigned = True
                waiter.event.set()
                return
            self._drop(conn)
            return
        if (
            self._blocked
            or (self._max_idle is not None and len(self._idle_all) >= self._max_idle)
            or (origin.slots is not None and origin.slots.blocked)
        ):
            self._drop(conn)
            return
        origin.active -= 1
        now = self._clock()
        conn.idle_since = now
        origin.idle.append(conn)
        self._idle_all[conn] = None
        if self._expiry is not None:
            self._expire(now)

    def _drop(self, conn: HTTP11Connection) -> None:
        """Close a checked-out connection and give its slot to whoever waits."""
        conn.close()
        self._conns.discard(conn)
        if conn.pool_permit is not None:
            self._release_permit(conn)
        self._unreserve(conn.pool_origin)

    def _expire(self, now: float) -> None:
        """Close idle connections past keep-alive expiry, oldest first; start the sweeper
        if some stay idle and none runs (one flag test per check-in)."""
        expiry = self._expiry
        idle_all = self._idle_all
        while idle_all:
            conn = next(iter(idle_all))
            if not conn.has_expired(now, expiry):
                if self._sweep_next:
                    self._sweep_next = False
                    trio.lowlevel.spawn_system_task(self._sweep, name="keep-alive sweeper")
                return
            self._close_idle(conn)

    async def _sweep(self) -> None:
        """Close idle connections as their keep-alive expires, without traffic: a server
        sees them closed on time, and a permit an idle connection holds goes back.

        One task per pool, started by the first connection to stay idle and ended when
        none is (the next one starts it again): it sleeps until the oldest idle
        connection expires, so a busy pool wakes it about once per expiry period and
        requests pay nothing for it. A system task, because the pool has no nursery:
        it is used without ``async with`` (the engine, ``Client`` created outside one),
        and the task must not outlive the trio run; ``aclose`` cancels it.
        """
        idle_all = self._idle_all
        expiry = self._expiry
        assert expiry is not None
        failed = False
        try:
            with trio.CancelScope() as self._sweep_scope:
                now = trio.current_time()
                while True:
                    self._expire(now)
                    if not idle_all or self._closed:
                        break
                    deadline = next(iter(idle_all)).idle_since + expiry
                    if deadline <= now:  # not expired though past it (an HTTP/2 stream)
                        deadline = now + expiry
                    await trio.sleep_until(deadline)
                    now = trio.current_time()
        except Exception:
            # A bug must not crash the trio run (a system task's error would): it is
            # logged, and expiry goes back to being checked at check-in only.
            failed = True
            log.exception("keep-alive sweeper of %r failed", self)
        finally:
            self._sweep_scope = None
            self._sweep_next = not (self._closed or failed)

    def _close_idle(self, conn: PooledConnection) -> None:
        """Close an idle connection of either protocol; its slot is the caller's to give."""
        if isinstance(conn, HTTP11Connection):
            self._remove_idle(conn)
            self._forget(conn)
            return
        del self._idle_all[conn]
        making_room, self._making_room = self._making_room, True
        try:
            conn.close()
        finally:
            self._making_room = making_room

    def _remove_idle(self, conn: HTTP11Connection) -> None:
        del self._idle_all[conn]
        idle = conn.pool_origin.idle
        if idle[0] is conn:
            idle.popleft()
        else:
            idle.remove(conn)

    def _forget(self, conn: HTTP11Connection) -> None:
        """Close ``conn`` (already out of the idle lists) and free its slot."""
        conn.close()
        self._conns.discard(conn)
        if conn.pool_permit is not None:
            self._release_permit(conn)
        origin: Origin = conn.pool_origin
        origin.host.count -= 1
        self._total -= 1
        if origin.slots is not None:
            origin.slots.count -= 1

    def _make_global_room(self) -> bool:
        """True if one more connection fits, closing the oldest idle one if need be."""
        if self._max is None or self._total < self._max:
            return True
        if not self._idle_all:
            return False
        self._close_idle(next(iter(self._idle_all)))
        return True

    def _make_room_in_host(self, host: Host) -> None:
        """Close idle connections of ``host`` (other ports, or stale ones passed over
        for a retry) until a new one fits under its cap."""
        while host.count >= host.cap:
            conn = self._idle_in_host(host)
            if conn is None:
                return
            self._close_idle(conn)

    def _idle_in_host(self, host: Host) -> PooledConnection | None:
        return self._idle_in(host.origins)

    def _idle_in(self, origins: list[Origin]) -> PooledConnection | None:
        """The oldest idle connection of the first of ``origins`` that has one."""
        idle_all = self._idle_all
        for origin in origins:
            if origin.idle:
                return origin.idle[0]
            if origin.h2 is not None:
                conn = origin.h2.first_idle(idle_all)
                if conn is not None:
                    return conn
        return None

    def _slot_freed(self, host: Host) -> None:
        if self._closed:
            return
        if host.waiters:
            self._serve_host(host)
        if self._blocked:
            self._serve_blocked()

    def _serve_host(self, host: Host) -> None:
        """Grant new-connection slots to ``host``'s waiters while both caps allow."""
        waiters = host.waiters
        while waiters and host.count < host.cap:
            slots = waiters[0].origin.slots
            if slots is not None and not self._proxy_room(slots):
                if host not in slots.blocked:
                    slots.blocked.append(host)
                return
            if not self._make_global_room():
                if not host.blocked:
                    host.blocked = True
                    self._blocked.append(host)
                return
            waiter = waiters.popleft()
            self._reserve(waiter.origin)
            waiter.assigned = True
            waiter.event.set()

    def _proxy_room(self, slots: ProxySlots) -> bool:
        """True if one more connection through this proxy fits, closing idle ones
        through it if need be."""
        while slots.count >= slots.cap:
            conn = self._idle_in(slots.origins)
            if conn is None:
                return False
            self._close_idle(conn)
        return True

    def _serve_proxy(self, slots: ProxySlots) -> None:
        """A connection through a full proxy closed: its slot goes to the hosts waiting
        for one, in order (a host still short of it queues again at the back)."""
        blocked = slots.blocked
        for _ in range(len(blocked)):
            if self._closed or slots.count >= slots.cap:
                return
            self._serve_host(blocked.popleft())

    def _serve_blocked(self) -> None:
        blocked = self._blocked
        while blocked and (self._max is None or self._total < self._max):
            host = blocked.popleft()
            host.blocked = False
            self._serve_host(host)

    # -- setup -------------------------------------------------------------------

    def _routed_origin(self, request: Request, key: OriginKey) -> Origin:
        """The origin record for ``request`` when a proxy may be involved: the one the
        request names in its ``proxy`` extension (None: direct), else the routes'."""
        extensions = request.extensions
        if PROXY in extensions:
            proxy: Proxy | None = extensions[PROXY]
        elif self._routes is not None:
            proxy = self._routes.proxy_for(*key)
        else:
            proxy = None
        origin = self._origins.get(key if proxy is None else (*key, proxy))
        if origin is None:
            origin = self._new_origin(request, proxy)
        return origin

    def _new_origin(self, request: Request, proxy: Proxy | None) -> Origin:
        key = origin_key(request)
        scheme, name, _ = key
        host = self._hosts.get(name)
        if host is None:
            cap = self._host_limits.get(name, self._limits.max_connections_per_host)
            host = self._hosts[name] = Host(name, cap)
        origin = Origin(key, host, proxy)
        if proxy is not None and self._proxy_cap is not None:
            slots = self._proxy_slots.get(proxy)
            if slots is None:
                slots = self._proxy_slots[proxy] = ProxySlots(self._proxy_cap)
            origin.slots = slots
            slots.origins.append(origin)
        if scheme == "http" and proxy is not None and proxy.forwards:
            pass  # a forward proxy speaks HTTP/1.1 with us for plain http
        elif self._h2_prior_knowledge if scheme == "http" else self._http2:
            origin.h2 = self._h2.new_origin(origin)
        host.origins.append(origin)
        self._origins[origin.pool_key] = origin
        return origin

    def _check_invariants(self) -> list[str]:
        """What breaks the pool's invariant (``[]``: it holds). Tests only: it recounts.

        A host's ``count`` is its origins' ``active`` + idle + HTTP/2 connections;
        ``_total`` is the hosts' counts summed, within ``max_connections``;
        ``_idle_all`` is exactly the idle connections of both kinds, within
        ``max_keepalive_connections``; nobody waits while an idle one could go.
        """
        return invariant_errors(self)
