"""A concurrent web-crawl and scraping engine on trio, and the HTTP client under it.

What a spider, a pipeline or a script needs is importable from here:
``Spider``, ``CloseSpider``, ``CrawlSpider`` with its ``Rule`` and ``LinkExtractor``
(and the ``Link`` it finds), ``Request``, ``Response`` (and the ``Selector`` and
``SelectorList`` its ``css()`` and ``xpath()`` return), ``Session``, ``Pipeline``,
``DropItem``, ``Middleware``, ``DropRequest``, ``Signals``, ``Extension``, ``Settings``,
the engine's entry points, and the HTTP client's public names.

``crawler.Request`` and ``crawler.Response`` are the crawl-level ones that
spiders use; the HTTP-level ones stay ``crawler.http.Request`` and
``crawler.http.Response``, and the HTTP layer's typing helpers (option
dictionaries, type aliases, ``check_header``) stay in ``crawler.http``. Every
other public name of ``crawler.http`` is re-exported here by name (a star
import would hand type checkers the HTTP-level Request and Response).
"""

from .engine import ComponentError as ComponentError
from .engine import Crawler as Crawler
from .engine import CustomStats as CustomStats
from .engine import DropRequest as DropRequest
from .engine import Engine as Engine
from .engine import Extension as Extension
from .engine import HttpCache as HttpCache
from .engine import HttpCacheError as HttpCacheError
from .engine import Middleware as Middleware
from .engine import SignalName as SignalName
from .engine import Signals as Signals
from .engine import Stats as Stats
from .engine import crawl as crawl
from .engine import run_crawl as run_crawl
from .http import MAX_COOKIE_SIZE as MAX_COOKIE_SIZE
from .http import MAX_COOKIES as MAX_COOKIES
from .http import MAX_COOKIES_PER_DOMAIN as MAX_COOKIES_PER_DOMAIN
from .http import URL as URL
from .http import AsyncByteStream as AsyncByteStream
from .http import BasicAuth as BasicAuth
from .http import BearerAuth as BearerAuth
from .http import ByteStream as ByteStream
from .http import Client as Client
from .http import CloseError as CloseError
from .http import ConnectError as ConnectError
from .http import ConnectionPermits as ConnectionPermits
from .http import ConnectionPool as ConnectionPool
from .http import ConnectTimeout as ConnectTimeout
from .http import Cookie as Cookie
from .http import CookieError as CookieError
from .http import CookieMiddleware as CookieMiddleware
from .http import Cookies as Cookies
from .http import DecodingError as DecodingError
from .http import DecompressMiddleware as DecompressMiddleware
from .http import Headers as Headers
from .http import HTTPError as HTTPError
from .http import HTTPStatusError as HTTPStatusError
from .http import InvalidURL as InvalidURL
from .http import Limits as Limits
from .http import LocalProtocolError as LocalProtocolError
from .http import MockTransport as MockTransport
from .http import NetworkError as NetworkError
from .http import PoolTimeout as PoolTimeout
from .http import ProtocolError as ProtocolError
from .http import Proxy as Proxy
from .http import ProxyError as ProxyError
from .http import ReadError as ReadError
from .http import ReadTimeout as ReadTimeout
from .http import RedirectMiddleware as RedirectMiddleware
from .http import RemoteProtocolError as RemoteProtocolError
from .http import RequestError as RequestError
from .http import ResponseNotRead as ResponseNotRead
from .http import ResponseTooLarge as ResponseTooLarge
from .http import StreamClosed as StreamClosed
from .http import StreamConsumed as StreamConsumed
from .http import StreamError as StreamError
from .http import Timeout as Timeout
from .http import TimeoutException as TimeoutException
from .http import TooManyRedirects as TooManyRedirects
from .http import TotalTimeout as TotalTimeout
from .http import Transport as Transport
from .http import TransportError as TransportError
from .http import UnsupportedProtocol as UnsupportedProtocol
from .http import WriteError as WriteError
from .http import WriteTimeout as WriteTimeout
from .http import __all__ as _http_names
from .linkextractor import IGNORED_EXTENSIONS as IGNORED_EXTENSIONS
from .linkextractor import Link as Link
from .linkextractor import LinkExtractor as LinkExtractor
from .pipelines import DropItem as DropItem
from .pipelines import Pipeline as Pipeline
from .request import Request as Request
from .response import Response as Response
from .rules import CrawlSpider as CrawlSpider
from .rules import Rule as Rule
from .selector import Selector as Selector
from .selector import SelectorError as SelectorError
from .selector import SelectorList as SelectorList
from .sessions import FormError as FormError
from .sessions import LoginFailed as LoginFailed
from .sessions import Session as Session
from .sessions import SharedSessionError as SharedSessionError
from .settings import Settings as Settings
from .settings import SettingsError as SettingsError
from .sitemap import SitemapError as SitemapError
from .sitemap import SitemapReader as SitemapReader
from .sitemap import SitemapSpider as SitemapSpider
from .spider import CloseSpider as CloseSpider
from .spider import Spider as Spider

# Names of crawler.http that belong to the HTTP layer alone: crawl-level types of the
# same name, and helpers for writing typed code against the client.
_HTTP_ONLY = frozenset(
    {
        "DEFAULT_TIMEOUT",
        "AuthTypes",
        "BodyRequestOptions",
        "CookieArg",
        "HeaderTypes",
        "NoProxy",
        "PROXY",
        "ProxyRoutes",
        "REDIRECT_STATUSES",
        "RedirectStep",
        "Request",
        "RequestOptions",
        "Response",
        "TimeoutArg",
        "check_cookie",
        "check_header",
        "redirect_step",
    }
)

__all__ = [
    *(name for name in _http_names if name not in _HTTP_ONLY),
    "IGNORED_EXTENSIONS",
    "CloseSpider",
    "ComponentError",
    "CrawlSpider",
    "Crawler",
    "CustomStats",
    "DropItem",
    "DropRequest",
    "Engine",
    "Extension",
    "FormError",
    "HttpCache",
    "HttpCacheError",
    "Link",
    "LinkExtractor",
    "LoginFailed",
    "Middleware",
    "Pipeline",
    "Request",
    "Response",
    "Rule",
    "Selector",
    "SelectorError",
    "SelectorList",
    "Session",
    "Settings",
    "SettingsError",
    "SharedSessionError",
    "SignalName",
    "Signals",
    "SitemapError",
    "SitemapReader",
    "SitemapSpider",
    "Spider",
    "Stats",
    "crawl",
    "run_crawl",
]
