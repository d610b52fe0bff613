"""CookieMiddleware: send the jar's cookies, store the ones servers set.

It sits inside RedirectMiddleware, so every hop of a redirect chain both
stores its Set-Cookie headers and gets a Cookie header computed for its own
URL: a login that answers "302 + Set-Cookie" works as in a browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._cookies import Cookies, parse_cookie_header
from ._exceptions import CookieError
from ._models import Request, Response
from ._transports import Transport

__all__ = ["EXPLICIT_COOKIES", "CookieMiddleware", "check_cookies"]

# Request extension holding the cookies given for one request (``cookies=``,
# or a Cookie header set by hand). They win over jar cookies of the same name,
# and RedirectMiddleware drops them when a redirect leaves the origin.
EXPLICIT_COOKIES = "cookies"
_HEADER_TAKEN = "cookies_from_header"
_HEADER_SET = "cookie_header_set"

# What a cookie from the caller must be to stay one cookie in the Cookie header
# (the rules of Cookies.set): a name that is a token, so no "=", ";", spaces or
# controls, and a value without ";" or controls. RFC 6265 lets a value be
# quoted, but the quotes belong to the value and protect nothing: servers split
# the header at every ";". fullmatch, as "$" would let a final "\n" through.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[;\x00-\x1f\x7f]")


def check_cookies(cookies: Iterable[tuple[str, str]], where: str) -> None:
    """Refuse a cookie that would add another to the Cookie header, or split it.

    For cookies the caller gives (per request, or to a client): servers' cookies
    are filtered as they are parsed. Checked as they will be written, so
    ``str()`` of each; a value is never repeated in the error, it may be a secret.
    """
    for name, value in cookies:
        name, value = str(name), str(value)
        if _NAME.fullmatch(name) is None:
            raise CookieError(
                f"Invalid cookie name {name!r} {where}: a cookie name must be a "
                "non-empty token (no '=', ';', spaces or control characters)"
            )
        bad = _BAD_VALUE.search(value)
        if bad is not None:
            raise CookieError(
                f"Invalid value for cookie {name!r} {where}: it holds {bad.group()!r} "
                "(a value may hold no ';' or control character, quoted or not)"
            )


class CookieMiddleware:
    """A transport adding a Cookie header from ``cookies`` and storing Set-Cookie into it."""

    def __init__(self, transport: Transport, cookies: Cookies | None = None) -> None:
        self.transport = transport
        self.cookies = cookies if cookies is not None else Cookies()

    async def handle_request(self, request: Request) -> Response:
        extensions = request.extensions
        explicit = extensions.get(EXPLICIT_COOKIES)
        if not extensions.get(_HEADER_TAKEN):
            # Once per request (redirect hops and resends skip this block).
            if explicit:
                check_cookies(explicit.items(), f"given for {request.url}")
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
