"""What a durable job needs from the crawl it checkpoints, and nothing more.

A checkpoint reads the crawl's counters, the pipelines' positions, the hosts
being throttled and the sessions' cookies, and a resume puts them back. The
job sees the crawl only through this protocol (the engine's Crawler
implements it), so the crawl's scheduler, pipelines and sessions can change
shape without the job reaching into them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..engine._stats import Stats
    from ..http import Cookies
    from ..request import Request

__all__ = ["CrawlState"]


class CrawlState(Protocol):
    """The crawl as a job checkpoints and restores it."""

    @property
    def aborted(self) -> bool:
        """Cancelled: what it holds now is no consistent state to save."""
        ...

    @property
    def finish_reason(self) -> str:
        """Why the crawl ended (``finished``, ``max_pages``, ``shutdown``...)."""
        ...

    @property
    def stats(self) -> Stats:
        """The live counters, restored in place on resume."""
        ...

    def refresh_stats(self) -> Stats:
        """The counters with the items and queue size brought up to date."""
        ...

    async def open_pipelines(self) -> None:
        """Open the item pipelines (exporters cut back to their resume offsets)."""
        ...

    async def stage_pipelines(self) -> tuple[list[tuple[str, Any]], list[Callable[[], None]]]:
        """Each pipeline's name and checkpoint state, and the fsyncs that make them durable."""
        ...

    def item_counters(self) -> tuple[int, Mapping[str, int]]:
        """Items scraped, and dropped by reason."""
        ...

    def restore_item_counters(self, scraped: int, dropped: Mapping[str, int]) -> None: ...

    def retry_later(self, request: Request, delay: float) -> None:
        """Queue a retry that was waiting for its backoff when the job stopped."""
        ...

    def throttles(self) -> dict[str, float]:
        """The hosts being slowed down, and by how much."""
        ...

    def restore_throttles(self, throttles: dict[str, float]) -> None: ...

    def session_states(self) -> list[tuple[str, list[dict[str, Any]], bool]]:
        """Each session's name, cookies and whether it is logged in."""
        ...

    def restore_session(self, name: str, cookies: Cookies | None, logged_in: bool) -> None: ...
