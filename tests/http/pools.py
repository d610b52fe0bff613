"""A pool that is always closed, and the hang guard the pool tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crawler.http._pool import ConnectionPool

GUARD = 10  # seconds: a hang guard, never a synchronisation


@asynccontextmanager
async def pool_for(**kwargs: object) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(**kwargs)  # type: ignore[arg-type]
    try:
        yield pool
    finally:
        await pool.aclose()
