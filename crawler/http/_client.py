"""Client: the httpx-like front of the HTTP layer.

The client itself only builds requests (base URL, default headers, auth,
timeouts) and manages a lifecycle; everything else is a chain of transports
it composes once:

    RedirectMiddleware → CookieMiddleware → DecompressMiddleware → ConnectionPool

A ``transport=`` given by the caller replaces the pool at the bottom, so
mocks and shared pools get the same redirect, cookie and decoding behaviour.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, TypedDict, Unpack
from urllib.parse import unquote

from ._auth import AuthTypes, BasicAuth, build_auth
from ._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Limits, Timeout
from ._cookie_middleware import EXPLICIT_COOKIES, CookieMiddleware, check_cookies
from ._cookies import Cookies
from ._decompress import DecompressMiddleware
from ._exceptions import UnsupportedProtocol
from ._headers import Headers, HeaderTypes
from ._http11 import EXPECT_CONTINUE_MIN
from ._models import Request, Response
from ._mounts import MountRouter
from ._pool import ConnectionPool
from ._proxy import Proxy, ProxyRoutes
from ._redirects import FOLLOW_REDIRECTS, RedirectMiddleware
from ._tls import VerifyTypes
from ._transports import Transport
from ._urls import URL, QueryParams
from ._version import __version__

__all__ = ["DEFAULT_MAX_RESPONSE_SIZE", "USE_CLIENT_DEFAULT", "Client"]

DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024


USER_AGENT = f"crawler/{__version__}"
DEFAULT_HEADERS = (
    ("User-Agent", USER_AGENT),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
)


class _UseClientDefault(enum.Enum):
    """Marks a per-request argument left unset, where ``None`` has a meaning of its own."""

    token = 0

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = _UseClientDefault.token
_Unset = _UseClientDefault

CookieArg = Cookies | Mapping[str, str]
TimeoutArg = Timeout | float | None


class RequestOptions(TypedDict, total=False):
    """Per-request arguments of the verb methods, as ``Client.request`` takes them."""

    params: QueryParams | None
    headers: HeaderTypes | None
    cookies: CookieArg | None
    auth: AuthTypes | _Unset | None
    follow_redirects: bool | _Unset
    timeout: TimeoutArg | _Unset
    extensions: dict[str, Any] | None


class BodyRequestOptions(RequestOptions, total=False):
    """``RequestOptions`` plus a body: raw ``content``, form ``data`` or ``json``."""

    content: bytes | str | None
    data: Any
    json: Any


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def _as_timeout(value: TimeoutArg) -> Timeout:
    return value if isinstance(value, Timeout) else Timeout(value)


def _with_trailing_slash(url: URL) -> URL:
    return url if url.path.endswith("/") else url.copy_with(path=url.path + "/")


def _jar_from(cookies: CookieArg | None) -> Cookies:
    """A new jar holding ``cookies``, checked as one request's cookies are.

    ``Cookies`` checks names and values given as a mapping, but copies a jar's
    ``Cookie`` objects as they are, and those may have been made by hand.
    """
    if isinstance(cookies, Cookies):
        check_cookies(((c.name, c.value) for c in cookies.jar), "given to the client")
    elif cookies:
        check_cookies(cookies.items(), "given to the client")
    return Cookies(cookies)


def _proxy_routes(proxy: str | URL | Proxy | None, trust_env: bool) -> ProxyRoutes | None:
    try:
        return ProxyRoutes.for_client(proxy, trust_env)
    except ValueError as exc:
        if proxy is not None:
            raise
        raise ValueError(f"{exc} (Client(trust_env=False) ignores the environment)") from None


class Client:
    """An HTTP client with connection pooling, cookies, redirects and decompression.

    Use it as ``async with Client() as client:``; a client used without
    ``async with`` opens on its first request and must be closed with
    ``await client.aclose()``. Request methods read the whole body (bounded
    by ``max_response_size``); :meth:`stream` leaves it to the caller.

    Request bodies of at least ``expect_continue`` bytes (1 MiB; ``None``:
    never) go out over HTTP/1.1 only after the server's ``100 Continue`` (or
    a second without an answer), so a refusal costs no upload.

    ``proxy`` (``"http://user:pass@proxy:3128"``) sends every request through
    that proxy; without it, and with ``trust_env`` (the default), the
    environment's ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
    ``NO_PROXY`` decide, read once here. A request's ``"proxy"`` extension
    (a ``Proxy``, or None for a direct connection) overrides both.

    ``mounts`` maps URL patterns to transports, as in httpx:
    ``{"http://": a, "all://example.com": b, "all://*.internal": None}``; the
    most specific pattern covering a request's origin wins (one with a port,
    then the longer host, then the longer scheme), ``None`` and unmatched
    origins use the client's own transport. Redirects, cookies and decoding
    apply whatever transport a request takes.
    """

    def __init__(
        self,
        *,
        base_url: URL | str | None = None,
        headers: HeaderTypes | None = None,
        auth: AuthTypes | None = None,
        cookies: CookieArg | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        follow_redirects: bool = True,
        max_redirects: int = 20,
        verify: VerifyTypes = True,
        http2: bool = False,
        http2_prior_knowledge: bool = False,
        transport: Transport | None = None,
        max_response_size: int | None = DEFAULT_MAX_RESPONSE_SIZE,
        expect_continue: int | None = EXPECT_CONTINUE_MIN,
        proxy: str | URL | Proxy | None = None,
        trust_env: bool = True,
        mounts: Mapping[str, Transport | None] | None = None,
    ) -> None:
        if max_response_size is not None and max_response_size < 0:
            raise ValueError(f"max_response_size must be >= 0 or None, got {max_response_size!r}")
        self._base_url = self._check_base_url(base_url)
        self._headers = Headers(DEFAULT_HEADERS)
        self._headers.update_from(headers)
        self._auth = build_auth(auth)
        self._cookies = _jar_from(cookies)
        self.timeout = _as_timeout(timeout)
        self.follow_redirects = follow_redirects
        self.max_response_size = max_response_size
        if transport is None:
            transport = ConnectionPool(
                proxy_routes=_proxy_routes(proxy, trust_env),
                limits=limits,
                timeout=self.timeout,
                verify=verify,
                http2=http2,
                http2_prior_knowledge=http2_prior_knowledge,
                expect_continue=expect_continue,
            )
        elif proxy is not None:
            raise ValueError(
                "Client(proxy=...) configures the connection pool, which transport= replaces: "
                "give the proxy to that transport instead"
            )
        self._bottom = transport
        routed: Transport = MountRouter(transport, mounts) if mounts else transport
        self._transport: Transport = RedirectMiddleware(
            CookieMiddleware(DecompressMiddleware(routed), self._cookies),
            max_redirects=max_redirects,
        )
        self._state = _State.UNOPENED

    @staticmethod
    def _check_base_url(base_url: URL | str | None) -> URL | None:
        if base_url is None or base_url == "":
            return None
        url = URL(base_url)
        if not url.is_absolute:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {str(url)!r}")
        return _with_trailing_slash(url)

    # -- configuration ---------------------------------------------------------

    @property
    def base_url(self) -> URL | None:
        return self._base_url

    @base_url.setter
    def base_url(self, value: URL | str | None) -> None:
        self._base_url = self._check_base_url(value)

    @property
    def headers(self) -> Headers:
        """Headers sent with every request (per-request headers override them)."""
        return self._headers

    @headers.setter
    def headers(self, value: HeaderTypes) -> None:
        headers = Headers(DEFAULT_HEADERS)
        headers.update_from(value)
        self._headers = headers

    @property
    def cookies(self) -> Cookies:
        """The client's jar; assigning replaces its contents (the middleware keeps the same jar)."""
        return self._cookies

    @cookies.setter
    def cookies(self, value: CookieArg | None) -> None:
        replacement = _jar_from(value)
        self._cookies.clear()
        self._cookies.update(replacement)

    @property
    def auth(self) -> Any:
        return self._auth

    @auth.setter
    def auth(self, value: AuthTypes | None) -> None:
        self._auth = build_auth(value)

    @property
    def transport(self) -> Transport:
        """The bottom transport: the connection pool, or the one passed as ``transport=``."""
        return self._bottom

    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    # -- building requests -----------------------------------------------------

    def _merge_url(self, url: URL | str) -> URL:
        """Join a relative URL to ``base_url`` by appending its path, as httpx does.

        ``base_url="https://h/api"`` and ``"/users"`` give ``https://h/api/users``:
        the base path is always kept, unlike RFC 3986 resolution.
        """
        merged = url if isinstance(url, URL) else URL(url)
        base = self._base_url
        if base is None or merged.is_absolute:
            return merged
        path = base.path + merged.path.lstrip("/")
        return base.copy_with(path=path, query=merged.query, fragment=merged.fragment)

    def build_request(
        self,
        method: str,
        url: URL | str,
        *,
        params: QueryParams | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieArg | None = None,
        content: bytes | str | None = None,
        data: Any = None,
        json: Any = None,
        timeout: TimeoutArg | _Unset = USE_CLIENT_DEFAULT,
        extensions: dict[str, Any] | None = None,
    ) -> Request:
        merged = self._headers.copy()
        if headers:
            merged.update_from(headers)
        ext = dict(extensions) if extensions else {}
        if cookies:
            values = cookies.items() if isinstance(cookies, Cookies | Mapping) else cookies
            ext[EXPLICIT_COOKIES] = dict(values)
        return Request(
            method,
            self._merge_url(url),
            params=params,
            headers=merged,
            content=content,
            data=data,
            json=json,
            timeout=self.timeout if timeout is USE_CLIENT_DEFAULT else _as_timeout(timeout),
            extensions=ext,
        )

    # -- sending ---------------------------------------------------------------

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        auth: AuthTypes | _Unset | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | _Unset = USE_CLIENT_DEFAULT,
    ) -> Response:
        """Send ``request`` through the middleware chain.

        The body is read before returning unless ``stream=True``, in which
        case the caller must ``aclose()`` the response (or use :meth:`stream`).
        """
        if self._state is _State.CLOSED:
            raise RuntimeError("Cannot send a request, as the client has been closed")
        self._state = _State.OPENED
        url = request.url
        if url.scheme not in ("http", "https") or not url.host:
            raise UnsupportedProtocol(
                f"Request URL {str(url)!r} is not an absolute http:// or https:// URL"
                + ("" if self._base_url else " (and the client has no base_url)"),
                request=request,
            )
        if request.timeout is None:
            request.timeout = self.timeout
        if follow_redirects is USE_CLIENT_DEFAULT:
            request.extensions.setdefault(FOLLOW_REDIRECTS, self.follow_redirects)
        else:
            request.extensions[FOLLOW_REDIRECTS] = follow_redirects
        apply_auth = self._auth if auth is USE_CLIENT_DEFAULT else build_auth(auth)
        if apply_auth is None and url.userinfo:
            apply_auth = BasicAuth(unquote(url.username), unquote(url.password))
        if apply_auth is not None:
            request = apply_auth(request)
        started = time.perf_counter()
        response = await self._transport.handle_request(request)
        response.max_size = self.max_response_size
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        response.elapsed = timedelta(0, time.perf_counter() - started)  # (days, seconds)
        return response

    async def request(
        self, method: str, url: URL | str, **options: Unpack[BodyRequestOptions]
    ) -> Response:
        """Build and send one request; the body is read before it returns."""
        request, auth, follow = self._build(method, url, options)
        return await self.send(request, auth=auth, follow_redirects=follow)

    @asynccontextmanager
    async def stream(
        self, method: str, url: URL | str, **options: Unpack[BodyRequestOptions]
    ) -> AsyncIterator[Response]:
        """Yield the response with its body unread; it is closed (connection released) on exit."""
        request, auth, follow = self._build(method, url, options)
        response = await self.send(request, stream=True, auth=auth, follow_redirects=follow)
        try:
            yield response
        finally:
            await response.aclose()

    def _build(
        self, method: str, url: URL | str, options: BodyRequestOptions
    ) -> tuple[Request, AuthTypes | _Unset | None, bool | _Unset]:
        """The request, and the two options that belong to sending rather than building."""
        request = self.build_request(
            method,
            url,
            params=options.get("params"),
            headers=options.get("headers"),
            cookies=options.get("cookies"),
            content=options.get("content"),
            data=options.get("data"),
            json=options.get("json"),
            timeout=options.get("timeout", USE_CLIENT_DEFAULT),
            extensions=options.get("extensions"),
        )
        auth = options.get("auth", USE_CLIENT_DEFAULT)
        return request, auth, options.get("follow_redirects", USE_CLIENT_DEFAULT)

    async def get(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return await self.request("GET", url, **options)

    async def head(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return await self.request("HEAD", url, **options)

    async def options(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return await self.request("OPTIONS", url, **options)

    async def delete(self, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return await self.request("DELETE", url, **options)

    async def post(self, url: URL | str, **options: Unpack[BodyRequestOptions]) -> Response:
        return await self.request("POST", url, **options)

    async def put(self, url: URL | str, **options: Unpack[BodyRequestOptions]) -> Response:
        return await self.request("PUT", url, **options)

    async def patch(self, url: URL | str, **options: Unpack[BodyRequestOptions]) -> Response:
        return await self.request("PATCH", url, **options)

    # -- lifecycle -------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            await self._transport.aclose()

    async def __aenter__(self) -> Client:
        if self._state is not _State.UNOPENED:
            if self._state is _State.OPENED:
                raise RuntimeError("Cannot open a client instance more than once")
            raise RuntimeError("Cannot reopen a client instance, once it has been closed")
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        active = getattr(self._bottom, "num_active", 0)
        idle = getattr(self._bottom, "num_idle", 0)
        return f"<Client [{active} active, {idle} idle]>"
