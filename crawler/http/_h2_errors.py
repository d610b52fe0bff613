"""The errors an HTTP/2 stream fails with that the pool acts on (sends again or not).

Apart from ``_http2`` so that the pool can name them without importing h2 and hpack,
which only a crawl that meets an HTTP/2 server needs (about 1.3 MB of memory).
"""

from __future__ import annotations

from ._exceptions import ReadError, RemoteProtocolError
from ._models import Request

__all__ = ["ConnectionLost", "StreamUnprocessed"]


class StreamUnprocessed(RemoteProtocolError):
    """The server did not process this stream (GOAWAY above its last stream id,
    REFUSED_STREAM, no room for a new stream): it may be sent again on another
    connection whatever its method."""


class ConnectionLost(ReadError):
    """The connection died under a stream; ``before_response`` says whether any
    of the response had arrived (only then is an idempotent request resent)."""

    def __init__(self, message: str, *, request: Request, before_response: bool) -> None:
        super().__init__(message, request=request)
        self.before_response = before_response
