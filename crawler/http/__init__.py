"""The HTTP client: usable on its own, with the semantics httpx users know."""

from ._auth import BasicAuth as BasicAuth
from ._auth import BearerAuth as BearerAuth
from ._client import Client as Client
from ._config import Limits as Limits
from ._config import Timeout as Timeout
from ._cookie_middleware import CookieMiddleware as CookieMiddleware
from ._cookies import MAX_COOKIE_SIZE as MAX_COOKIE_SIZE
from ._cookies import MAX_COOKIES as MAX_COOKIES
from ._cookies import MAX_COOKIES_PER_DOMAIN as MAX_COOKIES_PER_DOMAIN
from ._cookies import Cookie as Cookie
from ._cookies import Cookies as Cookies
from ._decompress import DecompressMiddleware as DecompressMiddleware
from ._exceptions import *  # noqa: F403
from ._exceptions import __all__ as _exception_names
from ._headers import Headers as Headers
from ._models import AsyncByteStream as AsyncByteStream
from ._models import ByteStream as ByteStream
from ._models import Request as Request
from ._models import Response as Response
from ._redirects import RedirectMiddleware as RedirectMiddleware
from ._transports import MockTransport as MockTransport
from ._transports import Transport as Transport
from ._urls import URL as URL

__all__ = [
    *_exception_names,
    "MAX_COOKIES",
    "MAX_COOKIES_PER_DOMAIN",
    "MAX_COOKIE_SIZE",
    "URL",
    "AsyncByteStream",
    "BasicAuth",
    "BearerAuth",
    "ByteStream",
    "Client",
    "Cookie",
    "CookieMiddleware",
    "Cookies",
    "DecompressMiddleware",
    "Headers",
    "Limits",
    "MockTransport",
    "RedirectMiddleware",
    "Request",
    "Response",
    "Timeout",
    "Transport",
]
