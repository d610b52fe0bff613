"""What the pool needs from a connection, whatever protocol it speaks.

The pool keeps HTTP/1.1 and HTTP/2 connections side by side (one idle list
for both, one eviction rule, one keep-alive expiry), so it must only ever ask
of a connection what both kinds can answer. Writing that down as a
structural ``Protocol`` lets mypy prove that each connection class still
answers it, at no cost when the pool runs: nothing here is checked with
``isinstance`` on the request path, and neither class inherits from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from ._config import Timeout
from ._models import Request, Response

__all__ = ["IDEMPOTENT", "ConnectionPermits", "OriginKey", "PooledConnection"]

#: (scheme, host, port as written in the URL or None): what a connection serves.
OriginKey = tuple[str, str, int | None]

#: Methods the pool may send again when a connection failed before any of the
#: response arrived, whatever the protocol.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@runtime_checkable  # for tests only; the pool never asks isinstance() of it
class PooledConnection(Protocol):
    """One connection the pool lends out, takes back, keeps idle and closes.

    ``idle_since`` is set by the pool when the connection goes idle, and
    ``pool_origin`` is the pool's own record of its origin, so that checking
    a connection in needs no lookup; ``pool_permit`` the ``ConnectionPermits``
    token it was opened under (None without permits).
    """

    origin: OriginKey
    idle_since: float
    is_closed: bool
    pool_origin: Any
    pool_permit: object

    @property
    def on_release(self) -> Callable[[Self], None]:
        """Called once a request (a stream, for HTTP/2) has given its slot back."""
        ...

    def can_handle_request(self, origin: OriginKey) -> bool:
        """Whether this connection serves ``origin``."""
        ...

    def is_idle(self) -> bool:
        """Open and carrying no request."""
        ...

    def is_available(self) -> bool:
        """May take one more request now (HTTP/2: one more stream)."""
        ...

    def has_expired(self, now: float, keepalive_expiry: float | None) -> bool:
        """Idle for at least ``keepalive_expiry`` seconds at ``now``."""
        ...

    def is_readable(self) -> bool:
        """The liveness probe before reuse: True if the server dropped it while idle."""
        ...

    def close(self) -> None:
        """Close at once, without awaiting (safe under cancellation)."""
        ...

    async def handle_request(self, request: Request, timeouts: Timeout, end: float) -> Response:
        """Send ``request`` and return its response, whole by trio time ``end``."""
        ...


if TYPE_CHECKING:
    # mypy --strict proves here that both connection classes fit the interface.
    from ._http2 import HTTP2Connection
    from ._http11 import HTTP11Connection

    def _both_fit(h1: HTTP11Connection, h2: HTTP2Connection) -> list[PooledConnection]:
        return [h1, h2]


@runtime_checkable  # for tests only; the pool never asks isinstance() of it
class ConnectionPermits(Protocol):
    """A cap on open connections per host that holds beyond one pool (several processes).

    The pool asks ``acquire(host, cap)`` before it opens a connection to
    ``host`` (a host name, all ports), after its own per-host and global caps
    have let it: the permit is one more cap, never a replacement. ``cap`` is
    the pool's own cap for that host, so every process may pass its own
    configuration. ``acquire`` may wait; the pool gives it at most the pool
    timeout, then fails the request with ``PoolTimeout``. Whatever it returns
    is the permit, handed back once to ``release`` when that connection
    closes for any reason (idle expiry, an error, the server, the pool's
    close, a failed or cancelled connect). ``release`` is synchronous because
    the pool closes connections without awaiting: an implementation that
    must talk to a server queues the release for a task of its own.
    """

    async def acquire(self, host: str, cap: int) -> object:
        """Wait for a permit to open one more connection to ``host``; return it."""
        ...

    def release(self, permit: object) -> None:
        """Give back a permit ``acquire`` returned: its connection is closed."""
        ...
