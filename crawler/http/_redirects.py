"""RedirectMiddleware: follow 3xx responses the way browsers and httpx do.

Each hop is a fresh Request built from the previous one. Credentials never
cross origins: Authorization, Proxy-Authorization and explicit cookies are
dropped when the redirect changes scheme, host or port (so an https to http
downgrade on the same host drops them too), and the Cookie header is always
rebuilt by the cookie middleware underneath for the new URL. The body of
each intermediate response is read (up to a small cap) so that its
connection goes back to the pool for reuse instead of being closed.
"""

from __future__ import annotations

from ._cookie_middleware import EXPLICIT_COOKIES
from ._exceptions import (
    DecodingError,
    RemoteProtocolError,
    ResponseTooLarge,
    TooManyRedirects,
    TransportError,
    UnsupportedProtocol,
)
from ._models import Request, Response
from ._redirect_rule import redirect_step
from ._transports import Transport
from ._urls import URL

__all__ = ["FOLLOW_REDIRECTS", "RedirectMiddleware"]

# Request extension: False to get the 3xx response itself.
FOLLOW_REDIRECTS = "follow_redirects"
# A redirect body bigger than this is not worth reading to keep the connection.
MAX_REDIRECT_BODY = 64 * 1024


class RedirectMiddleware:
    """A transport that follows redirects from the one it wraps, at most ``max_redirects``."""

    def __init__(self, transport: Transport, *, max_redirects: int = 20) -> None:
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects!r}")
        self.transport = transport
        self.max_redirects = max_redirects

    async def handle_request(self, request: Request) -> Response:
        response = await self.transport.handle_request(request)
        if not response.is_redirect or not request.extensions.get(FOLLOW_REDIRECTS, True):
            return response
        first = request
        history: list[Response] = []
        while response.is_redirect:
            try:
                if len(history) >= self.max_redirects:
                    raise TooManyRedirects(
                        f"Exceeded {self.max_redirects} redirects: {first.url} led through "
                        f"a chain of {len(history) + 1} URLs, the last being {request.url}",
                        request=request,
                    )
                next_request = self._next_request(request, response)
                await self._drain(response)
            except BaseException:
                await response.aclose()
                raise
            response.history = list(history)
            history.append(response)
            request = next_request
            response = await self.transport.handle_request(request)
        response.history = history
        return response

    @staticmethod
    async def _drain(response: Response) -> None:
        """Read a small redirect body so its connection can be reused; close a big or broken one."""
        limit = response.max_size
        response.max_size = MAX_REDIRECT_BODY
        try:
            await response.aread()
        except (ResponseTooLarge, DecodingError, TransportError):
            pass  # the redirect is known from its head; only reuse is lost
        finally:
            response.max_size = limit
            await response.aclose()

    def _next_request(self, request: Request, response: Response) -> Request:
        location = response.headers["location"]
        try:
            url = request.url.join(location)
        except ValueError as exc:  # URL.join can let urllib's ValueError through
            raise RemoteProtocolError(
                f"Invalid Location {location!r} in a redirect from {request.url}: {exc}",
                request=request,
            ) from None
        if url.scheme not in ("http", "https"):
            raise UnsupportedProtocol(
                f"Refusing to follow the redirect from {request.url} to {location!r}: "
                "only http and https URLs are followed",
                request=request,
            )
        if not url.host:
            raise RemoteProtocolError(
                f"Location {location!r} in a redirect from {request.url} has no host",
                request=request,
            )
        if request.url.fragment and not url.fragment:
            url = URL(f"{url}#{request.url.fragment}")
        step = redirect_step(
            request.method, response.status_code, same_origin=url.origin == request.url.origin
        )
        headers = request.headers.copy()
        extensions = dict(request.extensions)
        # The cookie middleware underneath builds the Cookie header again for the new URL.
        for name in ("cookie", "host"):
            if name in headers:
                del headers[name]
        if step.cross_origin:
            extensions.pop(EXPLICIT_COOKIES, None)
        for name in [name for name in headers if step.dropped(name)]:
            del headers[name]
        content = b"" if step.drops_body else request.content
        return Request(
            step.method,
            url,
            headers=headers,
            content=content or None,
            timeout=request.timeout,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        await self.transport.aclose()
