"""MemoryFrontier: per-host priority queues and a seen set, all in this process."""

from __future__ import annotations

from collections.abc import Iterable
from heapq import heappop, heappush
from itertools import count

from ..request import Request
from ._fingerprint import SeenFilter

__all__ = ["MemoryFrontier"]

_Entry = tuple[int, int, Request]


class MemoryFrontier:
    """One heap per host keyed by (-priority, sequence): priority first, then FIFO."""

    __slots__ = ("_counter", "_queues", "_seen", "_size")

    def __init__(self, seen: SeenFilter | None = None) -> None:
        self._queues: dict[str, list[_Entry]] = {}
        self._counter = count()
        self._seen = seen if seen is not None else SeenFilter()
        self._size = 0

    def push(self, request: Request, host: str) -> None:
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        heappush(queue, (-request.priority, next(self._counter), request))
        self._size += 1

    def pop(self, host: str) -> Request | None:
        queue = self._queues.get(host)
        if not queue:
            return None
        self._size -= 1
        request = heappop(queue)[2]
        if not queue:
            del self._queues[host]
        return request

    def done(self, request: Request) -> None:
        pass

    def defer(self, request: Request, host: str, delay: float) -> None:
        pass

    def head_priority(self, host: str) -> int:
        queue = self._queues.get(host)
        return -queue[0][0] if queue else 0

    def pending(self, host: str) -> int:
        queue = self._queues.get(host)
        return len(queue) if queue else 0

    def hosts(self) -> Iterable[str]:
        return list(self._queues)

    def add_seen(self, method: str, url: str, body: bytes = b"") -> bool:
        return self._seen.add_url(method, url, body)

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        self._queues.clear()
        self._size = 0
