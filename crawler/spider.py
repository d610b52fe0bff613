"""The Spider base class that users subclass."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .request import Request

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Spider"]


class Spider:
    """Subclass it, set ``name`` and ``start_urls``, and write ``parse``.

    ``options`` declares spider-specific settings with their defaults (and so
    their types): they may then be set in ``[spiders.NAME]``, in
    ``custom_settings`` or with ``-s`` and are read as ``self.settings[key]``.
    """

    name: ClassVar[str] = ""
    start_urls: ClassVar[list[str]] = []
    allowed_domains: ClassVar[list[str]] = []
    custom_settings: ClassVar[dict[str, Any]] = {}
    options: ClassVar[dict[str, Any]] = {}

    #: Error statuses (>= 400) that still reach the callback instead of counting as failures.
    handle_httpstatus_list: ClassVar[tuple[int, ...]] = ()

    settings: Settings
    logger: logging.Logger
    #: Base URL of the bundled demo site, set when ``serve_demo_site`` is on.
    demo_url: str = ""

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"crawler.spider.{self.name or type(self).__name__}")

    def start_requests(self) -> Iterable[Request] | AsyncIterator[Request]:
        return (Request(url, callback=self.parse) for url in self.start_urls)

    def parse(self, response: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")

    def closed(self, reason: str) -> Awaitable[None] | None:
        """Called once when this spider's crawl ends, before its pipelines close.

        ``reason`` is the stats' ``finish_reason`` (finished, max_pages,
        shutdown, ...). May be ``async``; what it raises is logged, not fatal.
        """
        return None
