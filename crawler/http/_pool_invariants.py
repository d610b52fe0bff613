"""The pool's invariant as code: recount the bookkeeping from the connections.

The counters are updated step by step on many paths (checkout, check-in,
waiting, HTTP/1.1 and HTTP/2), so a path that loses or double-counts a slot
would otherwise show only later, as a request that waits forever. This
recounts everything from the connections themselves, which costs time in
proportion to the pool: it backs ``ConnectionPool._check_invariants``, which
tests call after every pool test, and is never on the request path. It lives
apart from ``_pool`` so that the pool module holds only what runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._http11 import HTTP11Connection
from ._interfaces import PooledConnection
from ._pool_state import Origin

if TYPE_CHECKING:
    from ._pool import ConnectionPool

__all__ = ["invariant_errors"]


def invariant_errors(pool: ConnectionPool) -> list[str]:
    """Every place where ``pool``'s counters disagree with its connections."""
    errors: list[str] = []
    h1_idle = _h1_idle(pool, errors)
    h1_busy: dict[Origin, int] = {}
    for conn in pool._conns:
        origin = conn.pool_origin
        if pool._origins.get(origin.pool_key) is not origin:
            errors.append(f"{conn!r} belongs to no origin of the pool")
        if conn not in h1_idle:
            h1_busy[origin] = h1_busy.get(origin, 0) + 1
    h2_per_origin = pool._h2.invariant_errors(pool._origins.values(), errors)
    h2_idle = {conn for conn in pool._h2.conns if conn.active == 0}
    listed = set(pool._idle_all)
    if listed != set(h1_idle) | h2_idle:
        errors.append(f"idle list {listed} != idle connections {set(h1_idle) | h2_idle}")
    if pool._max_idle is not None and len(listed) > pool._max_idle:
        errors.append(f"{len(listed)} idle > max_keepalive_connections {pool._max_idle}")
    total = 0
    for host in pool._hosts.values():
        count = 0
        for origin in host.origins:
            busy = h1_busy.get(origin, 0)
            if origin.active < busy:
                errors.append(f"{origin.label}: active {origin.active} < {busy} checked out")
            count += origin.active + len(origin.idle) + h2_per_origin.get(origin, 0)
        if host.count != count:
            errors.append(f"{host.name}: count {host.count}, connections and slots {count}")
        if host.blocked != (host in pool._blocked):
            errors.append(f"{host.name}: blocked flag disagrees with the blocked queue")
        total += host.count
    if pool._total != total:
        errors.append(f"pool total {pool._total}, hosts' counts add up to {total}")
    if pool._max is not None and pool._total > pool._max:
        errors.append(f"{pool._total} connections > max_connections {pool._max}")
    if len(set(map(id, pool._blocked))) != len(pool._blocked):
        errors.append("a host is queued twice as blocked")
    if pool._blocked and listed:
        errors.append(f"hosts wait for the global cap while {len(listed)} connections idle")
    for idle in listed:
        host = idle.pool_origin.host
        if host.waiters:
            errors.append(f"{host.name}: requests wait for a slot while {idle!r} is idle")
    _check_proxies(pool, h2_per_origin, errors)
    _check_permits(pool, errors)
    return errors


def _check_permits(pool: ConnectionPool, errors: list[str]) -> None:
    """With ``ConnectionPermits``, every open connection holds one permit; without, none."""
    with_permits = pool._permits is not None
    conns: list[PooledConnection] = [*pool._conns, *pool._h2.conns]
    for conn in conns:
        if (conn.pool_permit is not None) != with_permits:
            held = "holds no" if with_permits else "holds a"
            errors.append(f"{conn!r} is open and {held} connection permit")


def _check_proxies(
    pool: ConnectionPool, h2_per_origin: dict[Origin, int], errors: list[str]
) -> None:
    """Each proxy's count is its origins' connections, within the cap, and no connection
    through a proxy that hosts wait for is idle."""
    for proxy, slots in pool._proxy_slots.items():
        count = sum(o.active + len(o.idle) + h2_per_origin.get(o, 0) for o in slots.origins)
        if slots.count != count:
            errors.append(f"{proxy.label}: count {slots.count}, connections and slots {count}")
        if slots.count > slots.cap:
            errors.append(f"{proxy.label}: {slots.count} connections > cap {slots.cap}")
        if any(o.slots is not slots for o in slots.origins):
            errors.append(f"{proxy.label}: an origin of it counts elsewhere")
        if slots.blocked and any(c.pool_origin.slots is slots for c in pool._idle_all):
            errors.append(f"{proxy.label}: hosts wait for it while a connection through it idles")


def _h1_idle(pool: ConnectionPool, errors: list[str]) -> dict[HTTP11Connection, Origin]:
    """The idle HTTP/1.1 connections as the origins list them, each checked once."""
    idle: dict[HTTP11Connection, Origin] = {}
    for origin in pool._origins.values():
        for conn in origin.idle:
            if conn in idle:
                errors.append(f"{conn!r} is idle twice")
            idle[conn] = origin
            if conn.pool_origin is not origin or conn not in pool._conns:
                errors.append(f"idle {conn!r} of {origin.label} is not its open connection")
    return idle
