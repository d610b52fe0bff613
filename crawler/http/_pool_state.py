"""The records the pool keeps per host, per origin and per waiting request.

Apart from ``_pool`` so that both protocol paths (``_pool`` for HTTP/1.1,
``_pool_h2`` for HTTP/2) can use them without importing each other. They
hold state only: every change to their counters is made by the pool's slot
accounting, and ``ConnectionPool._check_invariants`` says what the counters
must agree with. The checks made before a host or origin is created are here
too, next to what they guard.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from ._exceptions import UnsupportedProtocol
from ._http11 import HTTP11Connection
from ._interfaces import OriginKey
from ._models import Request

if TYPE_CHECKING:
    from ._pool_h2 import H2Origin
    from ._proxy import Proxy

__all__ = ["DEFAULT_PORTS", "Host", "Origin", "ProxySlots", "Waiter", "check_cap", "origin_key"]

DEFAULT_PORTS = {"http": 80, "https": 443}


class Host:
    """Connections to one host name, whatever the scheme or port."""

    __slots__ = ("blocked", "cap", "count", "name", "origins", "waiters")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.count = 0  # open or opening connections, active and idle
        self.waiters: deque[Waiter] = deque()
        self.origins: list[Origin] = []
        self.blocked = False  # queued in ConnectionPool._blocked


class ProxySlots:
    """Connections through one proxy, under ``Limits.max_connections_per_proxy``.

    A host whose first waiter needs a slot of a full proxy waits in ``blocked``
    until one of that proxy's connections closes (none of them stays idle
    meanwhile: the pool closes them as they come back).
    """

    __slots__ = ("blocked", "cap", "count", "origins")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0  # open or opening connections through the proxy
        self.blocked: deque[Host] = deque()
        self.origins: list[Origin] = []


class Origin:
    """One (scheme, host, port), reached directly or through one proxy: its idle
    HTTP/1.1 connections and how to name it.

    ``pool_key`` is its key in the pool's table: the origin key, with the proxy
    appended when there is one (connections through different proxies, or
    none, are never mixed). ``host`` is the origin's host whatever the proxy,
    so the per-host cap counts every connection to the site.
    """

    __slots__ = (
        "active",
        "h2",
        "host",
        "host_header",
        "idle",
        "key",
        "label",
        "pool_key",
        "port",
        "proxy",
        "slots",
    )

    def __init__(self, key: OriginKey, host: Host, proxy: Proxy | None = None) -> None:
        scheme, hostname, port = key
        self.key = key
        self.proxy = proxy
        self.pool_key: tuple[object, ...] = key if proxy is None else (*key, proxy)
        self.host = host
        self.port = port if port is not None else DEFAULT_PORTS[scheme]
        name = f"[{hostname}]" if ":" in hostname else hostname
        self.label = f"{scheme}://{name}:{self.port}"
        if proxy is not None:
            self.label += f" via {proxy.label}"
        # The proxy's connection count, when the pool caps it; None otherwise.
        self.slots: ProxySlots | None = None
        self.host_header = (name if port is None else f"{name}:{port}").encode("ascii")
        self.idle: deque[HTTP11Connection] = deque()
        self.active = 0  # HTTP/1.1 connections checked out or being opened
        # Set while this origin may speak HTTP/2; None for HTTP/1.1 (the fast path).
        self.h2: H2Origin | None = None


class Waiter:
    """A request waiting for a connection: given either an idle one or a new slot."""

    __slots__ = ("assigned", "conn", "event", "fresh", "origin")

    def __init__(self, origin: Origin, fresh: bool) -> None:
        self.origin = origin
        self.fresh = fresh
        self.event = trio.Event()
        self.assigned = False
        self.conn: HTTP11Connection | None = None


def origin_key(request: Request) -> OriginKey:
    """Where ``request`` goes, refusing a URL the pool cannot open a connection for."""
    url = request.url
    if url.scheme not in DEFAULT_PORTS:
        if not url.scheme:
            message = f"Request URL {url} is missing an 'http://' or 'https://' scheme"
        else:
            message = f"Unsupported URL scheme {url.scheme!r} in {url}: use http or https"
        raise UnsupportedProtocol(message, request=request)
    if not url.host:
        raise UnsupportedProtocol(f"Request URL {url} has no host", request=request)
    return (url.scheme, url.host, url.port)


def check_cap(host: str, cap: int) -> None:
    """Refuse a per-host cap that is not a whole number of connections, at least one."""
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValueError(f"max_connections for host {host!r} must be an int >= 1, got {cap!r}")
