"""The Frontier protocol: where requests wait, grouped by host.

The scheduler owns the live, in-memory state (in-flight counts, delays, retry
timers); the frontier owns only what must survive a restart: the queued
requests, the seen set, and the requests handed out (``pop``) until they are
``done`` or ``defer``-red for a retry, so that a durable frontier can hand
them out again after a crash. Keeping the interface this small is what lets a
durable SQLite frontier, and later a shared multi-machine one, drop in.

Requests are grouped by host because the scheduler asks "give me the next
request for this host" once it knows the host may be contacted; priority
(higher first, FIFO within a priority) holds within a host. A frontier that
also has ``head_priority(host)`` (the priority of the host's next request,
0 when it has none) lets the scheduler order hosts by it, so priority holds
across hosts too; one without it has its hosts served round-robin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from ..request import Request

__all__ = ["Frontier", "MemoryFrontier", "SqliteFrontier"]


@runtime_checkable
class Frontier(Protocol):
    """Where requests wait between the scheduler and the workers; see the module's text."""

    def push(self, request: Request, host: str) -> None:
        """Queue ``request`` under ``host`` (already deduplicated by the caller)."""
        ...

    def pop(self, host: str) -> Request | None:
        """The next request for ``host`` (highest priority, oldest first), or None."""
        ...

    def done(self, request: Request) -> None:
        """``request`` (from ``pop``) is fully handled; a durable frontier drops it for good."""
        ...

    def defer(self, request: Request, host: str, delay: float) -> None:
        """``request`` (from ``pop``) will be pushed again after ``delay`` seconds (a retry);
        a durable frontier keeps it meanwhile, so a restart does not lose it."""
        ...

    def pending(self, host: str) -> int:
        """How many requests wait for ``host``."""
        ...

    def hosts(self) -> Iterable[str]:
        """Hosts that have requests waiting (used to rebuild state on resume)."""
        ...

    def add_seen(self, method: str, url: str, body: bytes = b"") -> bool:
        """Record a request as seen; True if it was new."""
        ...

    def __len__(self) -> int:
        """Requests waiting, over all hosts."""
        ...

    def close(self) -> None:
        """Release resources (files, connections); the frontier is unusable after."""
        ...


# The implementations import the protocol's module: import them once it is defined.
from .memory import MemoryFrontier as MemoryFrontier  # noqa: E402
from .sqlite import SqliteFrontier as SqliteFrontier  # noqa: E402
