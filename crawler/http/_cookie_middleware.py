"""CookieMiddleware: send the jar's cookies, store the ones servers set.

It sits inside RedirectMiddleware, so every hop of a redirect chain both
stores its Set-Cookie headers and gets a Cookie header computed for its own
URL: a login that answers "302 + Set-Cookie" works as in a browser.
"""

from __future__ import annotations

from ._cookies import Cookies, parse_cookie_header
from ._models import Request, Response
from ._transports import Transport

__all__ = ["EXPLICIT_COOKIES", "CookieMiddleware"]

# Request extension holding the cookies given for one request (``cookies=``,
# or a Cookie header set by hand). They win over jar cookies of the same name,
# and RedirectMiddleware drops them when a redirect leaves the origin.
EXPLICIT_COOKIES = "cookies"
_HEADER_TAKEN = "cookies_from_header"
_HEADER_SET = "cookie_header_set"


class CookieMiddleware:
    """A transport adding a Cookie header from ``cookies`` and storing Set-Cookie into it."""

    def __init__(self, transport: Transport, cookies: Cookies | None = None) -> None:
        self.transport = transport
        self.cookies = cookies if cookies is not None else Cookies()

    async def handle_request(self, request: Request) -> Response:
        extensions = request.extensions
        explicit = extensions.get(EXPLICIT_COOKIES)
        if not extensions.get(_HEADER_TAKEN):
            # A hand-written Cookie header is read once and kept as explicit
            # cookies, so a resend of this request object (a retry) does not
            # mistake the header built here for the caller's.
            extensions[_HEADER_TAKEN] = True
            given = request.headers.get_list("cookie")
            if given:
                explicit = {**(explicit or {}), **parse_cookie_header("; ".join(given))}
                extensions[EXPLICIT_COOKIES] = explicit
        header = self.cookies.cookie_header(request.url, explicit)
        if header is not None:
            request.headers["Cookie"] = header
            extensions[_HEADER_SET] = True
        elif extensions.get(_HEADER_SET) and "cookie" in request.headers:
            del request.headers["cookie"]  # left by an earlier pass, stale now
        response = await self.transport.handle_request(request)
        self.cookies.extract_cookies(response)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
