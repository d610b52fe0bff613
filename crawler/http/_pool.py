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

HTTP/2 (``http2=True`` for TLS origins, ``http2_prior_knowledge=True`` for
plain ones) lives beside this on its own path: an origin that may speak it has
an ``_H2Origin`` with one shared connection, a stream count and a FIFO queue
of requests waiting for a stream. HTTP/1.1 origins never touch it; the only
cost to them is one attribute test per request. An HTTP/2 connection without
streams is idle like an HTTP/1.1 one between requests: it is listed with
them, oldest first, so the same code closes it to make room under either cap,
for keep-alive expiry or beyond ``max_keepalive_connections``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Mapping

import trio

from ._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Limits, Timeout
from ._exceptions import (
    PoolTimeout,
    ReadError,
    RemoteProtocolError,
    UnsupportedProtocol,
    WriteError,
    total_timeout,
)
from ._http2 import ConnectionLost, HTTP2Connection, StreamUnprocessed
from ._http11 import EXPECT_CONTINUE_MIN, HTTP11Connection
from ._models import Request, Response
from ._network import IOWatchdog, open_stream
from ._tls import VerifyTypes, create_ssl_context

__all__ = ["ConnectionPool"]

_INF = float("inf")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_TRUST_IDLE_FOR = 1.0  # seconds; see ConnectionPool._take_idle
_DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRYABLE = (ReadError, WriteError, RemoteProtocolError)
_ALPN = ("h2", "http/1.1")
#: How many times one request may be sent again after HTTP/2 streams that the
#: server did not process (GOAWAY, REFUSED_STREAM) or a connection that died.
_H2_RETRIES = 3

OriginKey = tuple[str, str, int | None]


class _Host:
    """Connections to one host name, whatever the scheme or port."""

    __slots__ = ("blocked", "cap", "count", "name", "origins", "waiters")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.count = 0  # open or opening connections, active and idle
        self.waiters: deque[_Waiter] = deque()
        self.origins: list[_Origin] = []
        self.blocked = False  # queued in ConnectionPool._blocked


class _Origin:
    __slots__ = ("active", "h2", "host", "host_header", "idle", "key", "label", "port")

    def __init__(self, key: OriginKey, host: _Host) -> None:
        scheme, hostname, port = key
        self.key = key
        self.host = host
        self.port = port if port is not None else _DEFAULT_PORTS[scheme]
        name = f"[{hostname}]" if ":" in hostname else hostname
        self.label = f"{scheme}://{name}:{self.port}"
        self.host_header = (name if port is None else f"{name}:{port}").encode("ascii")
        self.idle: deque[HTTP11Connection] = deque()
        self.active = 0  # checked out or being opened
        # Set while this origin may speak HTTP/2; None for HTTP/1.1 (the fast path).
        self.h2: _H2Origin | None = None


class _H2Origin:
    """The HTTP/2 side of an origin: its connections and the requests waiting for a stream.

    ``conn`` takes new streams; older ones (after GOAWAY or expiry) only
    finish theirs. ``streams`` counts the origin's granted streams across all
    of them: the per-host cap applies to it.
    """

    __slots__ = ("conn", "connecting", "conns", "origin", "streams", "waiters")

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.conn: HTTP2Connection | None = None
        self.conns: list[HTTP2Connection] = []
        self.connecting = False  # someone is opening a connection for this origin
        self.streams = 0
        self.waiters: deque[_StreamWaiter] = deque()


class _StreamWaiter:
    """A request waiting for a stream: given a connection, or the job of opening one."""

    __slots__ = ("assigned", "conn", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.assigned = False
        self.conn: HTTP2Connection | None = None


class _Waiter:
    """A request waiting for a connection: given either an idle one or a new slot."""

    __slots__ = ("assigned", "conn", "event", "fresh", "origin")

    def __init__(self, origin: _Origin, fresh: bool) -> None:
        self.origin = origin
        self.fresh = fresh
        self.event = trio.Event()
        self.assigned = False
        self.conn: HTTP11Connection | None = None


class ConnectionPool:
    """Sends requests over pooled keep-alive connections (the Transport protocol).

    ``limits.max_connections`` caps the whole pool; ``max_connections_per_host``
    (or a per-host override from ``host_limits`` / ``set_host_limit``) caps
    each host name: the politeness guarantee no code path can bypass.

    HTTP/1.1 request bodies of at least ``expect_continue`` bytes (``None``:
    never) are announced with ``Expect: 100-continue``, so that a server that
    refuses them (413, 417, 401...) can say so before they are sent.
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
    ) -> None:
        if expect_continue is not None and expect_continue < 0:
            raise ValueError(f"expect_continue must be >= 0 or None, got {expect_continue!r}")
        self._expect_min: float = _INF if expect_continue is None else expect_continue
        self._http2 = http2
        self._h2_prior_knowledge = http2_prior_knowledge
        self._h2_context: ssl.SSLContext | None = None
        self._h2_conns: set[HTTP2Connection] = set()
        self._making_room = False
        self._limits = limits
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._timeout = timeout
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._clock = clock or trio.current_time
        self._host_limits: dict[str, int] = {}
        for name, cap in (host_limits or {}).items():
            self._check_cap(name, cap)
            self._host_limits[name.lower()] = cap
        self._origins: dict[OriginKey, _Origin] = {}
        self._hosts: dict[str, _Host] = {}
        self._blocked: deque[_Host] = deque()
        # Idle connections of both protocols; insertion order = oldest first.
        self._idle_all: dict[HTTP11Connection | HTTP2Connection, None] = {}
        self._conns: set[HTTP11Connection] = set()
        self._watchdog = IOWatchdog(self._conns)
        self._total = 0  # open or opening connections
        self._closed = False

    # -- public API --------------------------------------------------------------

    async def handle_request(self, request: Request) -> Response:
        if self._closed:
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool is closed"
            )
        url = request.url
        key = (url.scheme, url.host, url.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._new_origin(request)
        timeouts = request.timeout or self._timeout
        total = timeouts.total
        end = _INF if total is None else trio.current_time() + total
        if origin.h2 is not None:
            return await self._handle_h2(origin.h2, request, timeouts, end)
        idempotent = request.method in _IDEMPOTENT
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
        self._closed = True
        while self._idle_all:
            self._close_idle(next(iter(self._idle_all)))
        # Active connections are closed under their users, whose pending I/O
        # fails and checks them in (which forgets them, the pool being closed).
        for conn in list(self._conns):
            conn.close()
        for h2conn in list(self._h2_conns):
            h2conn.close()
        self._watchdog.close()
        for host in self._hosts.values():
            while host.waiters:
                host.waiters.popleft().event.set()
            for origin in host.origins:
                if origin.h2 is not None:
                    while origin.h2.waiters:
                        origin.h2.waiters.popleft().event.set()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def set_host_limit(self, host: str, max_connections: int) -> None:
        """Cap connections to ``host`` (a host name, all ports) from now on."""
        self._check_cap(host, max_connections)
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
                    self._h2_serve(origin.h2)

    def connection_counts(self) -> dict[str, tuple[int, int]]:
        """``"scheme://host:port"`` -> (active, idle) connections, for progress displays.

        An origin on HTTP/2 appears as ``"scheme://host:port h2xN"`` (N connections)
        -> (active streams, idle connections).
        """
        counts = {
            o.label: (o.active, len(o.idle)) for o in self._origins.values() if o.active or o.idle
        }
        if self._h2_conns:
            for conn in self._h2_conns:
                state: _H2Origin = conn.pool_state
                label = f"{state.origin.label} h2x{len(state.conns)}"
                if label not in counts:
                    idle = sum(1 for c in state.conns if c.active == 0)
                    counts[label] = (state.streams, idle)
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
            streams = sum(conn.active for conn in self._h2_conns)
            text += f", HTTP/2: {len(self._h2_conns)} connections, {streams} streams"
        return text + "]>"

    # -- checkout ----------------------------------------------------------------

    def _take_idle(self, origin: _Origin, idempotent: bool) -> HTTP11Connection | None:
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

    def _try_reserve(self, origin: _Origin) -> bool:
        """Take a connection slot for ``origin`` at once, if nobody is queued for its host
        and both caps allow (closing an idle connection elsewhere to make room)."""
        host = origin.host
        if host.waiters:
            return False
        if host.count >= host.cap:
            self._make_room_in_host(host)
        if host.count < host.cap and self._make_global_room():
            self._reserve(origin)
            return True
        return False

    async def _acquire_before(
        self, end: float, origin: _Origin, request: Request, timeouts: Timeout, *, fresh: bool
    ) -> HTTP11Connection:
        """``_acquire_slow``, given up with TotalTimeout at ``end`` (only then a cancel scope)."""
        if end == _INF:
            return await self._acquire_slow(origin, request, timeouts, fresh=fresh)
        with trio.move_on_at(end):
            return await self._acquire_slow(origin, request, timeouts, fresh=fresh)
        raise total_timeout(request, timeouts.total)

    async def _acquire_slow(
        self, origin: _Origin, request: Request, timeouts: Timeout, *, fresh: bool
    ) -> HTTP11Connection:
        """Get a slot for ``origin`` (waiting if need be) and open a connection in it."""
        if not self._try_reserve(origin):
            conn = await self._wait(origin, request, timeouts, fresh)
            if conn is not None:
                return conn
        try:
            return await self._connect(origin, request, timeouts)
        except BaseException:
            self._unreserve(origin)
            raise

    async def _wait(
        self, origin: _Origin, request: Request, timeouts: Timeout, fresh: bool
    ) -> HTTP11Connection | None:
        """Queue for ``origin``'s host; return an idle connection, or None for a new slot."""
        host = origin.host
        waiter = _Waiter(origin, fresh)
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

    def _abandon(self, waiter: _Waiter) -> None:
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

    async def _connect(
        self, origin: _Origin, request: Request, timeouts: Timeout
    ) -> HTTP11Connection:
        stream = await self._open_stream(origin, request, timeouts)
        return self._new_h1(origin, stream)

    async def _open_stream(
        self, origin: _Origin, request: Request, timeouts: Timeout
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
        stream = await open_stream(request, hostname, origin.port, context, timeouts.connect)
        if self._closed:
            await trio.aclose_forcefully(stream)
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
            )
        return stream

    def _new_h1(self, origin: _Origin, stream: trio.abc.Stream) -> HTTP11Connection:
        conn = HTTP11Connection(
            origin.key,
            stream,
            self._checkin,
            host_header=origin.host_header,
            watchdog=self._watchdog,
            expect_continue_min=self._expect_min,
        )
        conn.pool_origin = origin
        self._conns.add(conn)
        return conn

    # -- slot bookkeeping (all synchronous) ----------------------------------------

    def _reserve(self, origin: _Origin) -> None:
        origin.active += 1
        origin.host.count += 1
        self._total += 1

    def _unreserve(self, origin: _Origin) -> None:
        origin.active -= 1
        host = origin.host
        host.count -= 1
        self._total -= 1
        self._slot_freed(host)

    def _checkin(self, conn: HTTP11Connection) -> None:
        """A connection comes back from a request: reuse, hand over, keep or close it."""
        origin: _Origin = conn.pool_origin
        origin.active -= 1
        host = origin.host
        if conn.is_closed or self._closed:
            self._forget(conn)
            self._slot_freed(host)
            return
        if host.waiters:
            waiter = host.waiters[0]
            if waiter.origin is origin and not waiter.fresh:
                host.waiters.popleft()
                origin.active += 1
                waiter.conn = conn
                waiter.assigned = True
                waiter.event.set()
                return
            self._forget(conn)
            self._slot_freed(host)
            return
        if self._blocked or (self._max_idle is not None and len(self._idle_all) >= self._max_idle):
            self._forget(conn)
            if self._blocked:
                self._serve_blocked()
            return
        now = self._clock()
        conn.idle_since = now
        origin.idle.append(conn)
        self._idle_all[conn] = None
        if self._expiry is not None:
            self._expire(now)

    def _expire(self, now: float) -> None:
        """Close idle connections past keep-alive expiry, oldest first."""
        expiry = self._expiry
        idle_all = self._idle_all
        while idle_all:
            conn = next(iter(idle_all))
            if not conn.has_expired(now, expiry):
                return
            self._close_idle(conn)

    def _close_idle(self, conn: HTTP11Connection | HTTP2Connection) -> None:
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
        conn.pool_origin.host.count -= 1
        self._total -= 1

    def _make_global_room(self) -> bool:
        """True if one more connection fits, closing the oldest idle one if need be."""
        if self._max is None or self._total < self._max:
            return True
        if not self._idle_all:
            return False
        self._close_idle(next(iter(self._idle_all)))
        return True

    def _make_room_in_host(self, host: _Host) -> None:
        """Close idle connections of ``host`` (other ports, or stale ones passed over
        for a retry) until a new one fits under its cap."""
        while host.count >= host.cap:
            conn = self._idle_in_host(host)
            if conn is None:
                return
            self._close_idle(conn)

    def _idle_in_host(self, host: _Host) -> HTTP11Connection | HTTP2Connection | None:
        idle_all = self._idle_all
        for origin in host.origins:
            if origin.idle:
                return origin.idle[0]
            state = origin.h2
            if state is not None:
                for conn in state.conns:
                    if conn in idle_all:
                        return conn
        return None

    def _slot_freed(self, host: _Host) -> None:
        if self._closed:
            return
        if host.waiters:
            self._serve_host(host)
        if self._blocked:
            self._serve_blocked()

    def _serve_host(self, host: _Host) -> None:
        """Grant new-connection slots to ``host``'s waiters while both caps allow."""
        waiters = host.waiters
        while waiters and host.count < host.cap:
            if not self._make_global_room():
                if not host.blocked:
                    host.blocked = True
                    self._blocked.append(host)
                return
            waiter = waiters.popleft()
            self._reserve(waiter.origin)
            waiter.assigned = True
            waiter.event.set()

    def _serve_blocked(self) -> None:
        blocked = self._blocked
        while blocked and (self._max is None or self._total < self._max):
            host = blocked.popleft()
            host.blocked = False
            self._serve_host(host)

    # -- HTTP/2 ------------------------------------------------------------------
    #
    # An HTTP/2 connection takes one connection slot of its host and of the pool
    # (host.count, _total) like any other, and sits in _idle_all (not in its
    # origin's deque) while it has no streams: requests share it, up to
    # min(server's SETTINGS_MAX_CONCURRENT_STREAMS, the host's cap) streams at
    # once. The first request to an origin opens the connection (and learns the
    # protocol by ALPN); the others wait in the origin's FIFO queue until it is
    # there, so a burst opens one connection.

    async def _handle_h2(
        self, state: _H2Origin, request: Request, timeouts: Timeout, end: float
    ) -> Response:
        retries = 0
        while True:
            if end == _INF:
                conn = await self._h2_acquire(state, request, timeouts)
            else:
                with trio.move_on_at(end) as scope:
                    conn = await self._h2_acquire(state, request, timeouts)
                if scope.cancelled_caught:  # whatever was taken has been given back
                    raise total_timeout(request, timeouts.total)
            if conn is None:  # the origin turned out to speak HTTP/1.1
                return await self.handle_request(request)
            if type(conn) is HTTP11Connection:  # we opened it, and ALPN said HTTP/1.1
                return await conn.handle_request(request, timeouts, end)
            assert isinstance(conn, HTTP2Connection)
            try:
                return await conn.handle_request(request, timeouts, end)
            except StreamUnprocessed:
                # Not processed by the server: safe to send again, whatever the method.
                if retries >= _H2_RETRIES:
                    raise
            except ConnectionLost as exc:
                if (
                    not exc.before_response
                    or request.method not in _IDEMPOTENT
                    or retries >= _H2_RETRIES
                ):
                    raise
            retries += 1
            if self._closed:
                raise RuntimeError(
                    f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
                )

    async def _h2_acquire(
        self, state: _H2Origin, request: Request, timeouts: Timeout
    ) -> HTTP2Connection | HTTP11Connection | None:
        """A connection with a stream granted, a new HTTP/1.1 connection, or None (use HTTP/1.1)."""
        if not state.waiters:
            conn = self._h2_grant(state)
            if conn is not None:
                return conn
            if state.conn is None and not state.connecting:
                state.connecting = True
                return await self._h2_connect(state, request, timeouts)
        waiter = _StreamWaiter()
        state.waiters.append(waiter)
        pool_t = timeouts.pool
        try:
            with trio.move_on_after(float("inf") if pool_t is None else pool_t):
                await waiter.event.wait()
        except BaseException:
            self._h2_abandon(state, waiter)
            raise
        if self._closed:
            self._h2_abandon(state, waiter)
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
            )
        if not waiter.assigned:
            self._h2_abandon(state, waiter)
            conn = state.conn
            raise PoolTimeout(
                f"Timed out after {pool_t} s waiting for an HTTP/2 stream to "
                f"{state.origin.label} for {request.url} ({state.streams} streams open, "
                f"at most {state.origin.host.cap} for {state.origin.host.name}"
                + (f", {conn.max_streams} allowed by the server" if conn is not None else "")
                + ")",
                request=request,
            )
        if waiter.conn is not None:
            return waiter.conn
        if state.origin.h2 is not state:
            return None
        return await self._h2_connect(state, request, timeouts)

    def _h2_grant(self, state: _H2Origin) -> HTTP2Connection | None:
        """Take a stream on the origin's current connection if both caps allow."""
        conn = state.conn
        if conn is None:
            return None
        if not conn.is_available() or conn.has_expired(self._clock(), self._expiry):
            state.conn = None
            conn.retire()
            return None
        if state.streams >= state.origin.host.cap or conn.active >= conn.max_streams:
            return None
        if conn.active == 0:
            self._idle_all.pop(conn, None)
        state.streams += 1
        conn.active += 1
        return conn

    async def _h2_connect(
        self, state: _H2Origin, request: Request, timeouts: Timeout
    ) -> HTTP2Connection | HTTP11Connection | None:
        """Open the origin's connection (``state.connecting`` is set by the caller)."""
        origin = state.origin
        try:
            if not self._try_reserve(origin):
                await self._wait(origin, request, timeouts, fresh=True)
            try:
                stream = await self._open_stream(origin, request, timeouts)
            except BaseException:
                self._unreserve(origin)
                raise
        except BaseException:
            state.connecting = False
            self._h2_serve(state)
            raise
        state.connecting = False
        origin.active -= 1  # origin.active counts HTTP/1.1 connections only
        if isinstance(stream, trio.SSLStream) and stream.selected_alpn_protocol() != "h2":
            # The server chose HTTP/1.1: so be it for this origin from now on.
            origin.active += 1
            origin.h2 = None
            self._h2_serve(state)
            return self._new_h1(origin, stream)
        conn = HTTP2Connection(
            origin.key,
            stream,
            authority=origin.host_header,
            on_release=self._h2_released,
            on_change=self._h2_changed,
            on_closed=self._h2_closed,
            write_timeout=timeouts.write,
            label=origin.label,
        )
        conn.pool_origin = origin
        conn.pool_state = state
        self._h2_conns.add(conn)
        state.conns.append(conn)
        state.conn = conn
        state.streams += 1
        conn.active += 1
        self._h2_serve(state)
        return conn

    def _h2_serve(self, state: _H2Origin) -> None:
        """Hand out streams (or the job of connecting) to the origin's waiters, in order."""
        waiters = state.waiters
        if self._closed:
            return
        if state.origin.h2 is not state:
            while waiters:
                waiter = waiters.popleft()
                waiter.assigned = True
                waiter.event.set()
            return
        while waiters:
            conn = self._h2_grant(state)
            if conn is not None:
                waiter = waiters.popleft()
                waiter.conn = conn
            elif state.conn is None and not state.connecting:
                waiter = waiters.popleft()
                state.connecting = True
            else:
                return
            waiter.assigned = True
            waiter.event.set()

    def _h2_abandon(self, state: _H2Origin, waiter: _StreamWaiter) -> None:
        """A waiter gave up: give back the stream or the connecting job it was given."""
        if not waiter.assigned:
            with contextlib.suppress(ValueError):
                state.waiters.remove(waiter)
            return
        waiter.assigned = False
        conn = waiter.conn
        if conn is not None:
            waiter.conn = None
            self._h2_released(conn)
        elif state.origin.h2 is state:
            state.connecting = False
            self._h2_serve(state)

    def _h2_released(self, conn: HTTP2Connection) -> None:
        """A stream is over (or a granted one was never used)."""
        state: _H2Origin = conn.pool_state
        conn.active -= 1
        state.streams -= 1
        if conn.active == 0:
            conn.idle_since = self._clock()
            if conn is not state.conn and not conn.is_closed:
                conn.retire()
        self._h2_serve(state)
        if conn.active == 0 and not conn.is_closed:
            self._h2_idle(conn)

    def _h2_idle(self, conn: HTTP2Connection) -> None:
        """Keep a connection whose streams are over, or close it, as ``_checkin`` does."""
        host = conn.pool_origin.host
        if (
            self._blocked
            or host.waiters
            or self._closed
            or (self._max_idle is not None and len(self._idle_all) >= self._max_idle)
        ):
            conn.close()  # _h2_closed gives its slot to whoever waits for one
            return
        self._idle_all[conn] = None
        if self._expiry is not None:
            self._expire(conn.idle_since)

    def _h2_changed(self, conn: HTTP2Connection) -> None:
        """GOAWAY or new server settings: stop using it, or use more of it."""
        state: _H2Origin = conn.pool_state
        if conn is state.conn and not conn.is_available():
            state.conn = None
        self._h2_serve(state)

    def _h2_closed(self, conn: HTTP2Connection) -> None:
        state: _H2Origin = conn.pool_state
        self._h2_conns.discard(conn)
        self._idle_all.pop(conn, None)
        with contextlib.suppress(ValueError):
            state.conns.remove(conn)
        if state.conn is conn:
            state.conn = None
        host = state.origin.host
        host.count -= 1
        self._total -= 1
        if not self._making_room:  # else the slot is already promised to the caller
            self._slot_freed(host)
        self._h2_serve(state)

    # -- setup -------------------------------------------------------------------

    def _new_origin(self, request: Request) -> _Origin:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            if not url.scheme:
                message = f"Request URL {url} is missing an 'http://' or 'https://' scheme"
            else:
                message = f"Unsupported URL scheme {url.scheme!r} in {url}: use http or https"
            raise UnsupportedProtocol(message, request=request)
        if not url.host:
            raise UnsupportedProtocol(f"Request URL {url} has no host", request=request)
        host = self._hosts.get(url.host)
        if host is None:
            cap = self._host_limits.get(url.host, self._limits.max_connections_per_host)
            host = self._hosts[url.host] = _Host(url.host, cap)
        origin = _Origin((url.scheme, url.host, url.port), host)
        if self._h2_prior_knowledge if url.scheme == "http" else self._http2:
            origin.h2 = _H2Origin(origin)
        host.origins.append(origin)
        self._origins[origin.key] = origin
        return origin

    @staticmethod
    def _check_cap(host: str, cap: int) -> None:
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise ValueError(f"max_connections for host {host!r} must be an int >= 1, got {cap!r}")
