"""The HTTP client: usable on its own, with the semantics httpx users know.

This module is the HTTP layer's one public door: the crawl engine, and any
user code, imports only the names listed here; the ``_`` modules behind it may
change shape at any time (a test enforces this).
"""

from ._auth import AuthTypes as AuthTypes
from ._auth import BasicAuth as BasicAuth
from ._auth import BearerAuth as BearerAuth
from ._client import BodyRequestOptions as BodyRequestOptions
from ._client import Client as Client
from ._client import CookieArg as CookieArg
from ._client import RequestOptions as RequestOptions
from ._client import TimeoutArg as TimeoutArg
from ._config import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._config import Limits as Limits
from ._config import Timeout as Timeout
from ._cookie_middleware import CookieMiddleware as CookieMiddleware
from ._cookies import MAX_COOKIE_SIZE as MAX_COOKIE_SIZE
from ._cookies import MAX_COOKIES as MAX_COOKIES
from ._cookies import MAX_COOKIES_PER_DOMAIN as MAX_COOKIES_PER_DOMAIN
from ._cookies import Cookie as Cookie
from ._cookies import Cookies as Cookies
from ._cookies import check_cookie as check_cookie
from ._decompress import DecompressMiddleware as DecompressMiddleware
from ._exceptions import *  # noqa: F403
from ._exceptions import __all__ as _exception_names
from ._headers import Headers as Headers
from ._headers import HeaderTypes as HeaderTypes
from ._headers import check_header as check_header
from ._interfaces import ConnectionPermits as ConnectionPermits
from ._models import AsyncByteStream as AsyncByteStream
from ._models import ByteStream as ByteStream
from ._models import Request as Request
from ._models import Response as Response
from ._pool import ConnectionPool as ConnectionPool
from ._proxy import PROXY as PROXY
from ._proxy import NoProxy as NoProxy
from ._proxy import Proxy as Proxy
from ._proxy import ProxyRoutes as ProxyRoutes
from ._redirect_rule import REDIRECT_STATUSES as REDIRECT_STATUSES
from ._redirect_rule import RedirectStep as RedirectStep
from ._redirect_rule import redirect_step as redirect_step
from ._redirects import RedirectMiddleware as RedirectMiddleware
from ._transports import MockTransport as MockTransport
from ._transports import Transport as Transport
from ._urls import URL as URL

__all__ = [
    *_exception_names,
    "DEFAULT_TIMEOUT",
    "MAX_COOKIES",
    "MAX_COOKIES_PER_DOMAIN",
    "MAX_COOKIE_SIZE",
    "PROXY",
    "REDIRECT_STATUSES",
    "URL",
    "AsyncByteStream",
    "AuthTypes",
    "BasicAuth",
    "BearerAuth",
    "BodyRequestOptions",
    "ByteStream",
    "Client",
    "ConnectionPermits",
    "ConnectionPool",
    "Cookie",
    "CookieArg",
    "CookieMiddleware",
    "Cookies",
    "DecompressMiddleware",
    "HeaderTypes",
    "Headers",
    "Limits",
    "MockTransport",
    "NoProxy",
    "Proxy",
    "ProxyRoutes",
    "RedirectMiddleware",
    "RedirectStep",
    "Request",
    "RequestOptions",
    "Response",
    "Timeout",
    "TimeoutArg",
    "Transport",
    "check_cookie",
    "check_header",
    "redirect_step",
]
