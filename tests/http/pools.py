"""A pool that is always closed and checked, the pool invariants, a request through a
pool, and the hang guard.

The pool states its own invariant (``ConnectionPool._check_invariants``
recounts its bookkeeping from the connections themselves). Pool tests check
it after every test through ``pool_for``, and after the steps that matter
through ``assert_consistent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crawler.http import Request
from crawler.http._pool import ConnectionPool
from tests.servers import serve_h11

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
    assert not pool._idle_all and not pool._h2.conns, "connections left open after aclose()"


async def get(
    pool: ConnectionPool, url: str, method: str = "GET", **kw: object
) -> tuple[int, bytes, str]:
    response = await pool.handle_request(Request(method, url, **kw))  # type: ignore[arg-type]
    body = await response.aread()
    return response.status_code, body, response.http_version


async def assert_healthy(pool: ConnectionPool) -> None:
    """The pool holds nothing checked out and still serves a normal request."""
    assert pool.num_active == 0
    async with serve_h11() as good:
        status, body, _ = await get(pool, good.url + "/after")
    assert (status, body) == (200, b"ok /after")
    assert pool.num_active == 0


def assert_consistent(pool: ConnectionPool) -> None:
    errors = pool_errors(pool)
    assert not errors, "pool invariants broken:\n  " + "\n  ".join(errors)


def pool_errors(pool: ConnectionPool) -> list[str]:
    """Every place where the pool's counters disagree with its connections."""
    return pool._check_invariants()
