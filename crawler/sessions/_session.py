"""Sessions: one cookie jar, default headers and auth per spider and account.

Every spider gets a ``"default"`` session and may open more by name
(``Request(url, session="alice")``) to crawl as several accounts at once.
All sessions of all spiders send through the engine's one connection pool,
so connections are shared and the per-host cap holds across them; cookies,
headers and auth never are: each session's client holds its own.

A session also carries its login state, which the crawler drives: whether
it has logged in, whether a login is running right now (the session's other
requests wait for it instead of going out logged out), and a generation
number that tells a response sent before the last login from one sent after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Unpack

import trio

from .._redact import redact_url
from ..http import (
    DEFAULT_TIMEOUT,
    AuthTypes,
    BodyRequestOptions,
    Client,
    CookieArg,
    Cookies,
    Headers,
    HeaderTypes,
    RequestOptions,
    TimeoutArg,
    Transport,
)
from ..http import Response as HTTPResponse
from ..request import Request
from ..response import Response
from ._forms import FormError, fill_form

__all__ = ["SESSION_OWN", "LoginFailed", "Session", "SharedSessionError"]

#: HTTP request extension set on the requests a session sends itself (``request``,
#: ``get``, ``post``, ``submit_form``: a login, typically), redirect hops included,
#: so that a transport under the session's client can tell them from the crawl's.
SESSION_OWN = "session_own"


class LoginFailed(Exception):
    """Logging in did not work: where (URL), what came back (status), what was missing.

    The URL is shown without its query or user info, and no field value is
    ever part of the message, so it can be logged as it is.
    """

    def __init__(self, url: str, status: int | None, missing: str) -> None:
        self.url = redact_url(url)
        self.status = status
        self.missing = missing
        got = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Login failed at {self.url} ({got}): {missing}")


class SharedSessionError(Exception):
    """A session shared by the workers of a crawl could not be shared: another worker's
    login was not over in time, or Redis could not be reached. The message names the
    session (never a cookie value)."""


class Session:
    """One account's view of the web: a cookie jar, default headers and auth.

    ``await session.get(url)`` / ``post`` / ``request`` send through the
    shared pool with this session's cookies, follow redirects, and are
    counted in the crawl's stats. ``submit_form`` fills and submits a form
    (a login form, typically). ``cookies``, ``headers`` and ``auth`` may be
    read and changed at any time; the crawl's requests of this session use
    them from then on.
    """

    __slots__ = (
        "_logged_in",
        "_login_done",
        "_login_task",
        "_on_exchange",
        "client",
        "generation",
        "login_required",
        "name",
        "relogins",
    )

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        headers: HeaderTypes | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_response_size: int | None = None,
        on_exchange: Callable[[HTTPResponse], None] | None = None,
    ) -> None:
        self.name = name
        self.client = Client(
            headers=headers,
            timeout=timeout,
            # The crawl's own requests are redirected through the scheduler;
            # ``request()`` below asks for redirects to be followed.
            follow_redirects=False,
            transport=transport,
            max_response_size=max_response_size,
        )
        self._on_exchange = on_exchange
        #: Set by the crawler when the spider has a ``login`` hook.
        self.login_required = False
        self._logged_in = False
        #: Bumped by each completed login; requests remember the one they went out under.
        self.generation = 0
        #: Re-logins since a response last came back logged in (bounded by max_relogins).
        self.relogins = 0
        self._login_done: trio.Event | None = None
        self._login_task: trio.lowlevel.Task | None = None

    # -- state -----------------------------------------------------------------

    @property
    def cookies(self) -> Cookies:
        return self.client.cookies

    @cookies.setter
    def cookies(self, value: CookieArg | None) -> None:
        self.client.cookies = value

    @property
    def headers(self) -> Headers:
        """Sent with every request of this session (a request's own headers win)."""
        return self.client.headers

    @headers.setter
    def headers(self, value: HeaderTypes) -> None:
        self.client.headers = value

    @property
    def auth(self) -> Any:
        return self.client.auth

    @auth.setter
    def auth(self, value: AuthTypes | None) -> None:
        self.client.auth = value

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    @property
    def logging_in(self) -> bool:
        return self._login_done is not None

    @property
    def blocked(self) -> bool:
        """Whether a crawl request must wait before going out: a login is due or running."""
        return self._login_done is not None or (self.login_required and not self._logged_in)

    def mark_logged_in(self, generation: int | None = None) -> None:
        """Count the session as logged in (after a login, or cookies restored from a
        checkpoint): no login runs before its requests until one comes back logged out.
        ``generation``: the login's number when it comes from elsewhere (the login the
        workers of a shared crawl share); otherwise the next one."""
        self._logged_in = True
        self.generation = self.generation + 1 if generation is None else generation

    def begin_login(self) -> None:
        """A login starts: the session's other requests wait until ``end_login``."""
        if self._login_done is not None:
            raise RuntimeError(f"session {self.name!r} is already logging in")
        self._login_done = trio.Event()
        self._login_task = trio.lowlevel.current_task()

    def end_login(self, ok: bool, generation: int | None = None) -> None:
        done = self._login_done
        self._login_done = None
        self._login_task = None
        if ok:
            self.mark_logged_in(generation)
        if done is not None:
            done.set()

    def _inside_login(self) -> bool:
        """Whether the current task is the login's (or one it started in a nursery)."""
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            if task is self._login_task:
                return True
            nursery = task.parent_nursery
            task = nursery.parent_task if nursery is not None else None
        return False

    async def wait_login(self) -> None:
        """Return once no login of this session is running."""
        done = self._login_done
        if done is not None:
            await done.wait()

    # -- sending ---------------------------------------------------------------

    async def request(
        self, method: str, url: str, **options: Unpack[BodyRequestOptions]
    ) -> Response:
        """Send one request as this session and return the final response, body read.

        Redirects are followed unless ``follow_redirects=False``. During a login,
        only the login itself gets through: other callers wait for it to end, so
        nothing is sent with half-set cookies.
        """
        done = self._login_done
        if done is not None and not self._inside_login():
            await done.wait()
        options.setdefault("follow_redirects", True)
        options["extensions"] = {**(options.get("extensions") or {}), SESSION_OWN: True}
        response = await self.client.request(method, url, **options)
        if self._on_exchange is not None:
            self._on_exchange(response)
        crawl_request = Request(str(response.url), method=method, session=self.name)
        return Response.from_http(response, crawl_request)

    async def get(self, url: str, **options: Unpack[RequestOptions]) -> Response:
        return await self.request("GET", url, **options)

    async def post(self, url: str, **options: Unpack[BodyRequestOptions]) -> Response:
        return await self.request("POST", url, **options)

    async def submit_form(
        self,
        response: HTTPResponse,
        selector: str | None = None,
        fields: Mapping[str, Any] | None = None,
        *,
        expect: str | None = None,
        submit: str | None = None,
    ) -> Response:
        """Fill the form of ``response`` found by ``selector`` (default: the first form),
        keeping its hidden inputs such as CSRF tokens, submit it as a browser would,
        follow the redirect that usually follows a login, and return the final page.

        With ``expect`` (a CSS selector), a final page where nothing matches
        raises :class:`LoginFailed`; so does a page without the form.
        """
        page_url = str(response.url)
        try:
            form = fill_form(
                response.content, page_url, fields or {}, selector=selector, submit=submit
            )
        except FormError as exc:
            # Its message names the page: without the query, like every URL shown here.
            missing = str(exc).replace(page_url, redact_url(page_url))
            raise LoginFailed(page_url, response.status_code, missing) from None
        headers = form.headers
        headers["Referer"] = page_url
        if form.method == "POST":
            origin = response.url
            headers["Origin"] = f"{origin.scheme}://{origin.netloc}"
        result = await self.request(
            form.method, form.url, content=form.body or None, headers=headers
        )
        if expect is not None and result.css_first(expect) is None:
            raise LoginFailed(
                str(result.url),
                result.status_code,
                f"nothing matches {expect!r} on the page after submitting the form",
            )
        return result

    async def aclose(self) -> None:
        await self.client.aclose()

    def __repr__(self) -> str:
        state = (
            "logging in" if self.logging_in else "logged in" if self._logged_in else "not logged in"
        )
        return f"<Session {self.name!r}: {len(self.cookies)} cookies, {state}>"
