"""One exception tree for the HTTP layer.

Every error raised by the client is an ``HTTPError``; anything that went wrong
while sending a request is a ``RequestError`` that carries the request, so a
message can always say *where* it happened. Library errors (h11, h2, ssl,
OSError) are translated at the boundary and never leak out raw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Request, Response

__all__ = [
    "CloseError",
    "ConnectError",
    "ConnectTimeout",
    "CookieError",
    "DecodingError",
    "HTTPError",
    "HTTPStatusError",
    "InvalidURL",
    "LocalProtocolError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "RequestError",
    "ResponseNotRead",
    "ResponseTooLarge",
    "StreamClosed",
    "StreamConsumed",
    "StreamError",
    "TimeoutException",
    "TooManyRedirects",
    "TotalTimeout",
    "TransportError",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]


class HTTPError(Exception):
    """Base class of every error the HTTP layer raises."""


class RequestError(HTTPError):
    """Sending a request failed; ``request`` says which one."""

    def __init__(self, message: str, *, request: Request | None = None) -> None:
        super().__init__(message)
        self._request = request

    @property
    def request(self) -> Request:
        if self._request is None:
            raise RuntimeError("The .request property has not been set.")
        return self._request

    @request.setter
    def request(self, request: Request) -> None:
        self._request = request


class TransportError(RequestError):
    """The transport could not complete the exchange."""


class TimeoutException(TransportError):
    """A connect, read, write or pool wait took longer than its timeout."""


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    """No connection slot became free within the pool timeout."""


class TotalTimeout(TimeoutException):
    """The whole request (waiting, connecting, sending, reading the body) ran past
    ``Timeout.total``: what the per-wait timeouts cannot catch, such as a server
    that trickles a byte at a time."""


def total_timeout(request: Request, total: float | None) -> TotalTimeout:
    """The TotalTimeout for ``request``, worded the same wherever it is noticed."""
    return TotalTimeout(
        f"{request.method} {request.url} took longer than its total timeout of {total} s",
        request=request,
    )


class NetworkError(TransportError):
    """The connection failed.

    ``reason`` says what went wrong without the URL, for a summary that names the
    URL itself: "connection refused to 127.0.0.1:1 (ECONNREFUSED)"; by default the
    whole message.
    """

    def __init__(self, message: str, *, request: Request | None = None, reason: str = "") -> None:
        super().__init__(message, request=request)
        self.reason = reason or message


class ConnectError(NetworkError):
    """Connection refused, DNS failure, TLS handshake failure..."""


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class CloseError(NetworkError):
    pass


class ProxyError(TransportError):
    """The proxy refused to open a tunnel (``CONNECT`` answered with ``status_code``,
    e.g. 407 for missing or wrong credentials; a SOCKS5 proxy's refusal with
    ``reply_code``, e.g. 4 host unreachable) or answered with garbage.

    ``proxy`` names the proxy with any credentials redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        request: Request | None = None,
        proxy: str = "",
        status_code: int | None = None,
        reply_code: int | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.proxy = proxy
        self.status_code = status_code
        self.reply_code = reply_code


class ProtocolError(TransportError):
    pass


class LocalProtocolError(ProtocolError):
    """We were asked to send something that is not valid HTTP (CR/LF in a header...)."""


class RemoteProtocolError(ProtocolError):
    """The server sent something that is not valid HTTP, or hung up mid-message."""


class UnsupportedProtocol(TransportError):
    """The URL scheme is not http or https."""


class DecodingError(RequestError):
    """The body arrived as framed but cannot be decoded: a compressed stream that is
    corrupt or cut short, or more Content-Encodings stacked than we undo.

    Not a ``TransportError``: the exchange itself completed, and asking again would
    most likely bring the same bytes, so the crawl engine does not retry it.
    """


class TooManyRedirects(RequestError):
    pass


class ResponseTooLarge(RequestError):
    """The decoded body grew past ``max_response_size`` (a gzip bomb, a runaway stream)."""


class InvalidURL(HTTPError, ValueError):
    """The URL could not be parsed or contains characters that are never allowed."""


class CookieError(HTTPError, ValueError):
    """A cookie could not be set as asked (bad name, value or domain)."""


class HTTPStatusError(HTTPError):
    """Raised by ``Response.raise_for_status()`` for 4xx and 5xx responses."""

    def __init__(self, message: str, *, request: Request, response: Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class StreamError(RuntimeError):
    """A response body was used in a way its streaming state does not allow."""


class StreamConsumed(StreamError):
    def __init__(self) -> None:
        super().__init__("The response body has already been consumed.")


class StreamClosed(StreamError):
    def __init__(self) -> None:
        super().__init__("The response stream has been closed.")


class ResponseNotRead(StreamError):
    def __init__(self) -> None:
        super().__init__(
            "The response body has not been read: call `await response.aread()` first."
        )
