"""Logging a spider's sessions in, and in again when the site logs them out.

The rules: one login per session at a time (the session's other requests
wait for it rather than go out logged out or fail), a logged-out response
is sent again after the login, and re-logins are bounded by
``max_relogins``. A login that fails stops the whole crawl: scraping login
pages as if they were content would be worse than stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .._redact import redact_url, scrub
from ..response import Response
from ..spider import Spider
from ._session import LoginFailed, Session, SharedSessionError

if TYPE_CHECKING:
    from ..http import Response as HTTPResponse
    from ..request import Request

__all__ = ["SESSION_GENERATION", "LoginShare", "Logins", "has_login"]

log = logging.getLogger("crawler.engine")

#: HTTP request extension: the session generation a crawl request went out under.
SESSION_GENERATION = "session_generation"


class LoginShare(Protocol):
    """Where the workers of a shared crawl keep one login per session (Redis): a worker
    logs in only when no newer login than the one it saw is stored there."""

    async def claim(self, session: Session, seen: int) -> int | None:
        """The generation of a login newer than ``seen``, its cookies loaded into the
        session's jar; or None once this worker holds the right to log in."""
        ...

    def holding(self, session: Session) -> AbstractAsyncContextManager[None]:
        """Keeps the right to log in while the login runs, and gives it back after."""
        ...

    async def publish(self, session: Session) -> int:
        """Stores the session's cookies after a login; the login's new generation."""
        ...


def has_login(spider: Spider) -> bool:
    return type(spider).login is not Spider.login


class Logins:
    """Runs ``spider.login`` for the sessions of one crawl; ``on_failure`` stops the crawl."""

    def __init__(
        self,
        spider: Spider,
        spider_name: str,
        *,
        max_relogins: int,
        on_failure: Callable[[str], None],
        secrets: Iterable[str] = (),
    ) -> None:
        self.spider = spider
        self.name = spider_name
        self.enabled = has_login(spider)
        self.max_relogins = max_relogins
        self._on_failure = on_failure
        self._secrets = [s for s in secrets if s]
        #: Why the crawl stopped, once a login failed.
        self.error: str | None = None
        #: In a crawl shared through Redis: the login the workers share.
        self.share: LoginShare | None = None

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self._on_failure(message)

    async def before_start(self, sessions: Iterable[Session]) -> bool:
        """Log in the sessions that must be logged in before the start requests."""
        for session in sessions:
            if not session.logged_in and not await self.log_in(session):
                return False
        return True

    async def ready(self, session: Session) -> bool:
        """Wait until ``session`` may send (logging it in first if needed); False if it
        cannot, because a login failed."""
        if session.logging_in:
            await session.wait_login()
        elif not session.logged_in:
            await self.log_in(session)
        return self.error is None and session.logged_in

    async def log_in(self, session: Session, stale: int | None = None) -> bool:
        """Run the spider's login for ``session``, or wait for the one already running.
        ``stale``: the generation a logged-out response was sent under (a shared crawl
        then takes any newer login another worker made instead of logging in)."""
        if self.error is not None:
            return False
        if session.logging_in:
            await session.wait_login()
            return self.error is None and session.logged_in
        session.begin_login()
        ok = False
        generation: int | None = None
        try:
            if self.share is None:
                await self._login(session)
            else:
                seen = session.generation if stale is None else stale
                generation = await self._shared_login(self.share, session, seen)
            ok = True
        except LoginFailed as exc:
            self._fail(f"session {session.name!r} could not log in: {self._clean(str(exc))}")
        except SharedSessionError as exc:
            self._fail(self._clean(str(exc)))
        except Exception as exc:
            self._fail(
                f"login() of session {session.name!r} raised {type(exc).__name__}: "
                f"{self._clean(str(exc)) or '(no message)'}"
            )
        finally:
            session.end_login(ok, generation)
        return ok

    async def _login(self, session: Session) -> None:
        log.info("spider %s: logging in (session %r)", self.name, session.name)
        await self.spider.login(session)

    async def _shared_login(self, share: LoginShare, session: Session, seen: int) -> int:
        """Take the login another worker made after ``seen``, or make it for all."""
        loaded = await share.claim(session, seen)
        if loaded is not None:
            log.info(
                "spider %s: session %r: using the login another worker made (generation %d)",
                self.name,
                session.name,
                loaded,
            )
            return loaded
        async with share.holding(session):
            await self._login(session)
            return await share.publish(session)

    def _clean(self, text: str) -> str:
        return scrub(text, self._secrets)

    def logged_out(
        self,
        request: Request,
        response: HTTPResponse,
        unseen: Callable[[list[str]], list[str]] | None,
    ) -> bool:
        """The spider's verdict on ``response``; a check that raises counts as logged in."""
        page = Response.from_http(response, request, unseen)
        try:
            return bool(self.spider.logged_out(page))
        except Exception:
            log.exception(
                "spider %s: logged_out() failed on %s", self.name, redact_url(request.url)
            )
            return False

    async def recover(self, session: Session, response: HTTPResponse) -> bool:
        """``response`` came back logged out: log in again (once for all the requests
        that noticed) and say whether to send the request again."""
        if self.error is not None:
            return False
        if session.logging_in:
            await session.wait_login()
            return self.error is None and session.logged_in
        request: Any = response.request
        sent_under = request.extensions.get(SESSION_GENERATION) if request is not None else None
        if sent_under is not None and sent_under != session.generation:
            return session.logged_in  # logged in again since it was sent: just resend
        url = redact_url(str(response.url))
        if session.relogins >= self.max_relogins:
            self._fail(
                f"session {session.name!r} is still logged out after "
                f"{session.relogins} re-login(s) (max_relogins = {self.max_relogins}): "
                f"HTTP {response.status_code} from {url}"
            )
            return False
        session.relogins += 1
        log.info(
            "spider %s: session %r was logged out (HTTP %d from %s): logging in again",
            self.name,
            session.name,
            response.status_code,
            url,
        )
        return await self.log_in(session, sent_under)
