"""A pool that is always closed and checked, the pool invariants, and the hang guard.

``pool_errors`` recounts the pool's bookkeeping from the connections
themselves: the counters are updated step by step on many paths (checkout,
check-in, waiting, HTTP/1.1 and HTTP/2), so a path that loses or
double-counts a slot would otherwise show only later, as a request that
waits forever. Pool tests call it after every test through ``pool_for``, and
after the steps that matter through ``assert_consistent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from crawler.http._http2 import HTTP2Connection
from crawler.http._http11 import HTTP11Connection
from crawler.http._pool import ConnectionPool

GUARD = 10  # seconds: a hang guard, never a synchronisation


@asynccontextmanager
async def pool_for(**kwargs: object) -> AsyncIterator[ConnectionPool]:
    """A pool closed at the end, whose invariants hold when the test body is done."""
    pool = ConnectionPool(**kwargs)  # type: ignore[arg-type]
    try:
        yield pool
        assert_consistent(pool)
    finally:
        await pool.aclose()
    assert not pool._idle_all and not pool._h2_conns, "connections left open after aclose()"


def assert_consistent(pool: ConnectionPool) -> None:
    errors = pool_errors(pool)
    assert not errors, "pool invariants broken:\n  " + "\n  ".join(errors)


def pool_errors(pool: ConnectionPool) -> list[str]:
    """Every place where the pool's counters disagree with its connections."""
    errors: list[str] = []
    h1_idle = _h1_idle(pool, errors)
    h1_busy: dict[Any, int] = {}
    for conn in pool._conns:
        origin = conn.pool_origin
        if pool._origins.get(origin.key) is not origin:
            errors.append(f"{conn!r} belongs to no origin of the pool")
        if conn not in h1_idle:
            h1_busy[origin] = h1_busy.get(origin, 0) + 1
    h2_per_origin = _h2_connections(pool, errors)
    h2_idle = {conn for conn in pool._h2_conns if conn.active == 0}
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
    for conn in listed:
        host = conn.pool_origin.host
        if host.waiters:
            errors.append(f"{host.name}: requests wait for a slot while {conn!r} is idle")
    return errors


def _h1_idle(pool: ConnectionPool, errors: list[str]) -> dict[HTTP11Connection, Any]:
    """The idle HTTP/1.1 connections as the origins list them, each checked once."""
    idle: dict[HTTP11Connection, Any] = {}
    for origin in pool._origins.values():
        for conn in origin.idle:
            if conn in idle:
                errors.append(f"{conn!r} is idle twice")
            idle[conn] = origin
            if conn.pool_origin is not origin or conn not in pool._conns:
                errors.append(f"idle {conn!r} of {origin.label} is not its open connection")
    return idle


def _h2_connections(pool: ConnectionPool, errors: list[str]) -> dict[Any, int]:
    """HTTP/2 connections per origin, checking each is listed by exactly one origin."""
    per_origin: dict[Any, int] = {}
    seen: set[HTTP2Connection] = set()
    states = {id(conn.pool_state): conn.pool_state for conn in pool._h2_conns}
    states.update((id(o.h2), o.h2) for o in pool._origins.values() if o.h2 is not None)
    for state in states.values():
        origin = state.origin
        for conn in state.conns:
            if conn in seen:
                errors.append(f"{conn!r} is listed twice")
            seen.add(conn)
            if conn.is_closed or conn not in pool._h2_conns or conn.pool_state is not state:
                errors.append(f"{conn!r} of {origin.label} is closed or not the pool's")
            if conn.active < 0:
                errors.append(f"{conn!r} has {conn.active} streams granted")
        per_origin[origin] = per_origin.get(origin, 0) + len(state.conns)
        streams = sum(conn.active for conn in state.conns)
        if state.streams != streams:
            errors.append(f"{origin.label}: {state.streams} streams counted, {streams} granted")
        if state.conn is not None and state.conn not in state.conns:
            errors.append(f"{origin.label}: its current connection is not among its connections")
    if seen != pool._h2_conns:
        errors.append(f"HTTP/2 connections {pool._h2_conns} != the origins' lists {seen}")
    return per_origin
