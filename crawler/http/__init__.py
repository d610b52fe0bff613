"""The HTTP client: usable on its own, with the semantics httpx users know."""

from ._config import Limits as Limits
from ._config import Timeout as Timeout
from ._exceptions import *  # noqa: F403
from ._exceptions import __all__ as _exception_names
from ._headers import Headers as Headers
from ._models import AsyncByteStream as AsyncByteStream
from ._models import ByteStream as ByteStream
from ._models import Request as Request
from ._models import Response as Response
from ._transports import MockTransport as MockTransport
from ._transports import Transport as Transport
from ._urls import URL as URL

__all__ = [
    *_exception_names,
    "URL",
    "AsyncByteStream",
    "ByteStream",
    "Headers",
    "Limits",
    "MockTransport",
    "Request",
    "Response",
    "Timeout",
    "Transport",
]
