"""The Spider base class that users subclass."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
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

    settings: Settings
    logger: logging.Logger

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"crawler.spider.{self.name or type(self).__name__}")

    def start_requests(self) -> Iterable[Request] | AsyncIterator[Request]:
        for url in self.start_urls:
            yield Request(url, callback=self.parse)

    def parse(self, response: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")
