"""Global politeness: what one crawl process shares with the others through Redis.

The engine builds one ``SharedPoliteness`` when ``frontier_url`` is set: its
``permits`` go to the connection pool (the per-host caps of all workers
together) and its ``delays`` to each spider's politeness (download_delay and
Retry-After across workers). Both need a background task, started by
``start`` in the engine's nursery and ended by ``aclose`` once the pool is
closed, so that the last leases are given back rather than left to expire.
"""

from __future__ import annotations

import trio

from ._delays import RedisDelays
from ._permits import RedisPermits, key_prefix, worker_id
from ._redis import RedisClient

__all__ = ["SharedPoliteness"]


class SharedPoliteness:
    """Connection permits and request slots per host, shared by the workers of one crawl.

    ``spider`` and ``crawl_id`` name the crawl (its keys are under
    ``crawl:{<spider>/<crawl_id>}:``, with the shared frontier's); workers
    share caps and delays only when both are the same.
    """

    def __init__(
        self, url: str, spider: str, crawl_id: str = "", *, lease_ttl: float = 30.0
    ) -> None:
        self.prefix = key_prefix(spider, crawl_id or spider)
        self.client = RedisClient(url)
        self.worker = worker_id()
        self.permits = RedisPermits(self.client, self.prefix, ttl=lease_ttl, worker=self.worker)
        self.delays = RedisDelays(self.client, self.prefix)

    def __repr__(self) -> str:
        return f"<SharedPoliteness {self.prefix} at {self.client.target}>"

    async def start(self, nursery: trio.Nursery) -> None:
        """Check that Redis answers (a clear error now rather than stalls later), then
        run the lease renewals and the batched releases and pauses in ``nursery``."""
        await self.client.execute("PING")
        await nursery.start(self.permits.run)
        await nursery.start(self.delays.run)

    async def aclose(self) -> None:
        """Give back every lease and send the last pauses (call after the pool is closed)."""
        with trio.CancelScope(shield=True):
            await self.permits.aclose()
            with trio.move_on_after(5.0):
                await self.delays.flush()
            await self.client.aclose()
