"""The Spider base class that users subclass."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urljoin, urlsplit

from .request import Request

if TYPE_CHECKING:
    from .engine import Crawler, CustomStats
    from .sessions._session import Session
    from .settings import Settings

__all__ = ["CloseSpider", "Spider"]


class CloseSpider(Exception):
    """Raised from a callback (or errback) to stop the crawl gracefully.

    Nothing new is sent, requests in flight finish and their callbacks run,
    pipelines close, and ``reason`` becomes the crawl's ``finish_reason`` (and
    the argument of ``Spider.closed``): a spider that sees it is done (a last
    page, a ban page, enough of something) says so without an error.
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class Spider:
    """Subclass it, set ``name`` and ``start_urls``, and write ``parse``.

    ``options`` declares spider-specific settings with their defaults (and so
    their types): they may then be set in ``[spiders.NAME]``, in
    ``custom_settings`` or with ``-s`` and are read as ``self.settings[key]``.

    A spider behind a login defines ``async def login(self, session)``; see
    docs/sessions.md.
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
    #: The login page: by default a response redirected to it (or served from it)
    #: means the session was logged out. A path (``"/login"``) is resolved against
    #: each response's URL, so a spider whose site comes from settings needs no
    #: property: a resumed crawl checks responses before any ``login()`` has run.
    login_url: str = ""
    #: Sessions logged in before the start requests; others log in on first use.
    login_sessions: ClassVar[tuple[str, ...]] = ("default",)
    #: Set by the crawler running this spider.
    _session_factory: Callable[[str], Session] | None = None
    #: The crawler running this spider (its ``signals``, ``schedule()``, ``settings``).
    crawler: Crawler
    #: Counters of the spider's own: ``self.stats.inc("key")``, ``set``, ``max``.
    stats: CustomStats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Make the spider for ``crawler``. Override it (calling this one) to connect
        handlers to ``crawler.signals`` before the crawl starts."""
        spider = cls()
        spider.settings = crawler.settings
        spider.crawler = crawler
        spider.stats = crawler.custom_stats
        return spider

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"crawler.spider.{self.name or type(self).__name__}")

    def start_requests(self) -> Iterable[Request] | AsyncIterator[Request]:
        return (Request(url, callback=self.parse) for url in self.start_urls)

    def parse(self, response: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")

    def session(self, name: str = "default") -> Session:
        """The session ``name`` of this spider (made on first use): cookies, headers, auth."""
        factory = self._session_factory
        if factory is None:
            raise RuntimeError(
                f"{type(self).__name__}.session(): sessions exist only while the spider "
                "runs in a crawl"
            )
        return factory(name)

    async def login(self, session: Session) -> None:
        """Log ``session`` in; the default does nothing and no login ever runs.

        Runs before the start requests (which wait for it) for each session of
        ``login_sessions``, before the first request of any other session, and
        again when a response of the session comes back logged out. Raise
        :class:`crawler.LoginFailed` (``submit_form(..., expect=...)`` does) when
        it did not work: the crawl then stops with a failure.
        """

    def logged_out(self, response: Any) -> bool:
        """Whether ``response`` shows its session was logged out.

        The default: the response redirects to ``login_url`` (resolved against
        the response's URL when it is a path) or was served from it, unless
        ``login_url`` itself was asked for. Queries and fragments are ignored,
        so ``/login?next=/orders`` counts.
        """
        if not self.login_url:
            return False
        url = str(response.url)
        login_url = urljoin(url, self.login_url)  # a path means: on this response's site
        crawl_request = getattr(response, "crawl_request", None)
        if crawl_request is not None and _same_page(crawl_request.url, login_url):
            return False
        if 300 <= response.status_code < 400:
            location = response.headers.get("location")
            if location and _same_page(urljoin(url, location), login_url):
                return True
        return _same_page(url, login_url)

    def closed(self, reason: str) -> Awaitable[None] | None:
        """Called once when this spider's crawl ends, before its pipelines close.

        ``reason`` is the stats' ``finish_reason`` (finished, max_pages,
        shutdown, ...). May be ``async``; what it raises is logged, not fatal.
        """
        return None


def _same_page(a: str, b: str) -> bool:
    """Same scheme, host, port and path (a trailing slash aside); query and fragment ignored."""
    try:
        x, y = urlsplit(a), urlsplit(b)
        x_port, y_port = x.port, y.port
    except ValueError:
        return False
    scheme = x.scheme.lower()
    default = 443 if scheme == "https" else 80
    return (
        scheme == y.scheme.lower()
        and (x.hostname or "") == (y.hostname or "")
        and (x_port or default) == (y_port or default)
        and (x.path.rstrip("/") or "/") == (y.path.rstrip("/") or "/")
    )
