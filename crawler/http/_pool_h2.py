"""The HTTP/2 side of the pool: shared connections and requests waiting for a stream.

Why apart from ``_pool``: HTTP/1.1 lends a whole connection per request,
HTTP/2 lends a stream of a shared one, and the two sets of bookkeeping have
little in common beyond the connection slots they both take. Kept here, the
pool reads as the HTTP/1.1 path plus the accounting both protocols share,
and this module as the HTTP/2 path; HTTP/1.1 origins never reach it (the
pool tests one attribute per request).

An HTTP/2 connection takes one connection slot of its host and of the pool
(``host.count``, ``_total``) like any other, and sits in the pool's idle list
(not in its origin's deque) while it has no streams: requests share it, up to
min(server's SETTINGS_MAX_CONCURRENT_STREAMS, the host's cap) streams at once.
The first request to an origin opens the connection (and learns the protocol
by ALPN); the others wait in the origin's FIFO queue until it is there, so a
burst opens one connection.

``HTTP2Pool`` is owned by the ``ConnectionPool``. It shares the pool's idle
list, reads its queue of blocked hosts, and changes the slot counters only
through the few pool methods it binds in ``__init__`` (bound once, so a call
costs what it cost when this code was part of the pool).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import trio

from ._config import Timeout
from ._exceptions import PoolTimeout, total_timeout
from ._h2_errors import ConnectionLost, StreamUnprocessed
from ._http11 import HTTP11Connection
from ._interfaces import IDEMPOTENT
from ._models import Request, Response
from ._pool_state import Origin

if TYPE_CHECKING:
    # Imported when the first HTTP/2 connection opens: h2 and hpack cost a crawl that
    # never meets an HTTP/2 server about 1.3 MB of memory.
    from ._http2 import HTTP2Connection
    from ._pool import ConnectionPool

__all__ = ["HTTP2Pool"]

_INF = float("inf")
#: How many times one request may be sent again after HTTP/2 streams that the
#: server did not process (GOAWAY, REFUSED_STREAM) or a connection that died.
_H2_RETRIES = 3


class H2Origin:
    """The HTTP/2 side of an origin: its connections and the requests waiting for a stream.

    ``conn`` takes new streams; older ones (after GOAWAY or expiry) only
    finish theirs. ``streams`` counts the origin's granted streams across all
    of them: the per-host cap applies to it.
    """

    __slots__ = ("conn", "connecting", "conns", "origin", "streams", "waiters")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.conn: HTTP2Connection | None = None
        self.conns: list[HTTP2Connection] = []
        self.connecting = False  # someone is opening a connection for this origin
        self.streams = 0
        self.waiters: deque[_StreamWaiter] = deque()

    def first_idle(self, idle: Iterable[object]) -> HTTP2Connection | None:
        """The first of this origin's connections listed in ``idle`` (a set or dict)."""
        for conn in self.conns:
            if conn in idle:
                return conn
        return None

    def wake_all(self) -> None:
        """Wake every waiter unassigned: the pool is closed."""
        while self.waiters:
            self.waiters.popleft().event.set()


class _StreamWaiter:
    """A request waiting for a stream: given a connection, or the job of opening one."""

    __slots__ = ("assigned", "conn", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.assigned = False
        self.conn: HTTP2Connection | None = None


class HTTP2Pool:
    """Streams of shared HTTP/2 connections, in the slots of the pool that owns it."""

    __slots__ = (
        "_blocked",
        "_clock",
        "_expire",
        "_expiry",
        "_fallback",
        "_idle_all",
        "_max_idle",
        "_new_h1",
        "_open_stream",
        "_release_permit",
        "_release_slot",
        "_try_reserve",
        "_unreserve",
        "_wait",
        "closed",
        "conns",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.conns: set[HTTP2Connection] = set()
        self.closed = False  # set by the pool's aclose()
        # Shared with the pool: one idle list for both protocols, oldest first.
        self._idle_all = pool._idle_all
        # Read only, to decide as the pool's check-in does whether to keep a
        # connection idle (a call into the pool would cost more than the test).
        self._blocked = pool._blocked
        self._max_idle = pool._max_idle
        self._clock = pool._clock
        self._expiry = pool._expiry
        # The pool's slot accounting, the only way in to its counters.
        self._try_reserve = pool._try_reserve
        self._wait = pool._wait
        self._unreserve = pool._unreserve
        self._release_slot = pool._release_slot
        self._release_permit = pool._release_permit
        self._expire = pool._expire
        self._open_stream = pool._open_stream
        self._new_h1 = pool._new_h1
        self._fallback = pool.handle_request

    def new_origin(self, origin: Origin) -> H2Origin:
        """The HTTP/2 state of an origin that may speak it (until ALPN says otherwise)."""
        return H2Origin(origin)

    async def handle_request(
        self, state: H2Origin, request: Request, timeouts: Timeout, end: float
    ) -> Response:
        retries = 0
        while True:
            if end == _INF:
                conn = await self._acquire(state, request, timeouts)
            else:
                with trio.move_on_at(end) as scope:
                    conn = await self._acquire(state, request, timeouts)
                if scope.cancelled_caught:  # whatever was taken has been given back
                    raise total_timeout(request, timeouts.total)
            if conn is None:  # the origin turned out to speak HTTP/1.1
                return await self._fallback(request)
            if type(conn) is HTTP11Connection:  # we opened it, and ALPN said HTTP/1.1
                return await conn.handle_request(request, timeouts, end)
            conn = cast("HTTP2Connection", conn)
            try:
                return await conn.handle_request(request, timeouts, end)
            except StreamUnprocessed:
                # Not processed by the server: safe to send again, whatever the method.
                if retries >= _H2_RETRIES:
                    raise
            except ConnectionLost as exc:
                if (
                    not exc.before_response
                    or request.method not in IDEMPOTENT
                    or retries >= _H2_RETRIES
                ):
                    raise
            retries += 1
            if self.closed:
                raise RuntimeError(
                    f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
                )

    async def _acquire(
        self, state: H2Origin, request: Request, timeouts: Timeout
    ) -> HTTP2Connection | HTTP11Connection | None:
        """A connection with a stream granted, a new HTTP/1.1 connection, or None (use HTTP/1.1)."""
        if not state.waiters:
            conn = self._grant(state)
            if conn is not None:
                return conn
            if state.conn is None and not state.connecting:
                state.connecting = True
                return await self._connect(state, request, timeouts)
        waiter = _StreamWaiter()
        state.waiters.append(waiter)
        pool_t = timeouts.pool
        try:
            with trio.move_on_after(float("inf") if pool_t is None else pool_t):
                await waiter.event.wait()
        except BaseException:
            self._abandon(state, waiter)
            raise
        if self.closed:
            self._abandon(state, waiter)
            raise RuntimeError(
                f"Cannot send {request.method} {request.url}: the ConnectionPool was closed"
            )
        if not waiter.assigned:
            self._abandon(state, waiter)
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
        return await self._connect(state, request, timeouts)

    def _grant(self, state: H2Origin) -> HTTP2Connection | None:
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

    async def _connect(
        self, state: H2Origin, request: Request, timeouts: Timeout
    ) -> HTTP2Connection | HTTP11Connection | None:
        """Open the origin's connection (``state.connecting`` is set by the caller)."""
        origin = state.origin
        try:
            if not self._try_reserve(origin):
                await self._wait(origin, request, timeouts, fresh=True)
            try:
                stream, permit = await self._open_stream(origin, request, timeouts)
            except BaseException:
                self._unreserve(origin)
                raise
        except BaseException:
            state.connecting = False
            self.serve(state)
            raise
        state.connecting = False
        if isinstance(stream, trio.SSLStream) and stream.selected_alpn_protocol() != "h2":
            # The server chose HTTP/1.1: so be it for this origin from now on.
            # The slot reserved (in origin.active too) becomes that connection's.
            origin.h2 = None
            self.serve(state)
            return self._new_h1(origin, stream, permit)
        origin.active -= 1  # origin.active counts HTTP/1.1 connections only
        from ._http2 import HTTP2Connection

        conn = HTTP2Connection(
            origin.key,
            stream,
            authority=origin.host_header,
            on_release=self._released,
            on_change=self._changed,
            on_closed=self._conn_closed,
            write_timeout=timeouts.write,
            label=origin.label,
        )
        conn.pool_origin = origin
        conn.pool_permit = permit
        conn.pool_state = state
        self.conns.add(conn)
        state.conns.append(conn)
        state.conn = conn
        state.streams += 1
        conn.active += 1
        self.serve(state)
        return conn

    def serve(self, state: H2Origin) -> None:
        """Hand out streams (or the job of connecting) to the origin's waiters, in order."""
        waiters = state.waiters
        if self.closed:
            return
        if state.origin.h2 is not state:
            while waiters:
                waiter = waiters.popleft()
                waiter.assigned = True
                waiter.event.set()
            return
        while waiters:
            conn = self._grant(state)
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

    def _abandon(self, state: H2Origin, waiter: _StreamWaiter) -> None:
        """A waiter gave up: give back the stream or the connecting job it was given."""
        if not waiter.assigned:
            with contextlib.suppress(ValueError):
                state.waiters.remove(waiter)
            return
        waiter.assigned = False
        conn = waiter.conn
        if conn is not None:
            waiter.conn = None
            self._released(conn)
        elif state.origin.h2 is state:
            state.connecting = False
            self.serve(state)

    # -- callbacks from the connections --------------------------------------------

    def _released(self, conn: HTTP2Connection) -> None:
        """A stream is over (or a granted one was never used)."""
        state: H2Origin = conn.pool_state
        conn.active -= 1
        state.streams -= 1
        if conn.active == 0:
            conn.idle_since = self._clock()
            if conn is not state.conn and not conn.is_closed:
                conn.retire()
        self.serve(state)
        if conn.active == 0 and not conn.is_closed:
            self._idle(conn)

    def _idle(self, conn: HTTP2Connection) -> None:
        """Keep a connection whose streams are over, or close it (``_conn_closed`` then
        gives its slot to whoever waits for one)."""
        if (
            self._blocked
            or conn.pool_origin.host.waiters
            or (conn.pool_origin.slots is not None and conn.pool_origin.slots.blocked)
            or self.closed
            or (self._max_idle is not None and len(self._idle_all) >= self._max_idle)
        ):
            conn.close()
            return
        self._idle_all[conn] = None
        if self._expiry is not None:
            self._expire(conn.idle_since)

    def _changed(self, conn: HTTP2Connection) -> None:
        """GOAWAY or new server settings: stop using it, or use more of it."""
        state: H2Origin = conn.pool_state
        if conn is state.conn and not conn.is_available():
            state.conn = None
        self.serve(state)

    def _conn_closed(self, conn: HTTP2Connection) -> None:
        state: H2Origin = conn.pool_state
        self.conns.discard(conn)
        self._idle_all.pop(conn, None)
        with contextlib.suppress(ValueError):
            state.conns.remove(conn)
        if state.conn is conn:
            state.conn = None
        if conn.pool_permit is not None:
            self._release_permit(conn)
        self._release_slot(state.origin)
        self.serve(state)

    # -- for the pool's reports and its invariant check ------------------------------

    def add_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        """``"scheme://host:port h2xN"`` -> (active streams, idle connections)."""
        for conn in self.conns:
            state: H2Origin = conn.pool_state
            label = f"{state.origin.label} h2x{len(state.conns)}"
            if label not in counts:
                idle = sum(1 for c in state.conns if c.active == 0)
                counts[label] = (state.streams, idle)

    def describe(self) -> str:
        streams = sum(conn.active for conn in self.conns)
        return f"HTTP/2: {len(self.conns)} connections, {streams} streams"

    def close_all(self) -> None:
        """Close every connection (``closed`` is already set: nobody is served)."""
        for conn in list(self.conns):
            conn.close()

    def invariant_errors(self, origins: Iterable[Origin], errors: list[str]) -> dict[Origin, int]:
        """HTTP/2 connections per origin, checking each is listed by exactly one origin
        and that the stream counts add up; appends what is wrong to ``errors``."""
        per_origin: dict[Origin, int] = {}
        seen: set[HTTP2Connection] = set()
        states = {id(conn.pool_state): conn.pool_state for conn in self.conns}
        states.update((id(o.h2), o.h2) for o in origins if o.h2 is not None)
        for state in states.values():
            origin = state.origin
            for conn in state.conns:
                if conn in seen:
                    errors.append(f"{conn!r} is listed twice")
                seen.add(conn)
                if conn.is_closed or conn not in self.conns or conn.pool_state is not state:
                    errors.append(f"{conn!r} of {origin.label} is closed or not the pool's")
                if conn.active < 0:
                    errors.append(f"{conn!r} has {conn.active} streams granted")
            per_origin[origin] = per_origin.get(origin, 0) + len(state.conns)
            streams = sum(conn.active for conn in state.conns)
            if state.streams != streams:
                errors.append(f"{origin.label}: {state.streams} streams counted, {streams} granted")
            if state.conn is not None and state.conn not in state.conns:
                errors.append(
                    f"{origin.label}: its current connection is not among its connections"
                )
        if seen != self.conns:
            errors.append(f"HTTP/2 connections {self.conns} != the origins' lists {seen}")
        return per_origin
