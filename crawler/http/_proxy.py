"""Proxies: which one a URL goes through, and what the pool needs to speak to it.

A ``Proxy`` is parsed once (when a client or a crawl is configured), so the
pool reads only precomputed fields: where to connect, the label to show, and
the ``Proxy-Authorization`` value. Credentials live in that one field and in
nothing that is ever printed: the label and the repr say ``***`` instead.

``ProxyRoutes`` answers "which proxy for this URL?" with httpx's rules: one
proxy for everything (``Client(proxy=...)``), or the environment's
``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` with ``NO_PROXY`` exceptions.
The answer depends only on the origin, so it is cached per origin: the pool
asks once per request and pays one dict lookup.
"""

from __future__ import annotations

import ipaddress
import os
from base64 import b64encode
from collections.abc import Mapping
from urllib.parse import unquote

from ._exceptions import InvalidURL
from ._urls import URL

__all__ = ["PROXY", "NoProxy", "Proxy", "ProxyRoutes", "as_proxy", "redact_url"]

#: Request extension: the ``Proxy`` this request goes through, or None for a
#: direct connection, whatever the client's routes say. Absent: the routes decide.
PROXY = "proxy"

_DEFAULT_PROXY_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080}


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}***@{host}{slash}{tail}"


class Proxy:
    """A proxy: ``http://``, ``socks5://`` or ``socks5h://[user:password@]host[:port]``.

    Through an HTTP proxy, plain ``http://`` URLs are sent in absolute form;
    ``https://`` ones go through a ``CONNECT`` tunnel, TLS to the origin
    inside it. Credentials in the URL become ``Proxy-Authorization: Basic``,
    sent to the proxy only.

    Through a SOCKS5 proxy every URL goes through a tunnel (TLS inside it for
    ``https://``); ``socks5://`` resolves the origin's name locally,
    ``socks5h://`` lets the proxy resolve it. Credentials are the RFC 1929
    username/password of the handshake.
    """

    __slots__ = (
        "authorization",
        "forwards",
        "host",
        "label",
        "port",
        "remote_dns",
        "scheme",
        "socks_auth",
        "url",
    )

    def __init__(self, url: str | URL) -> None:
        text = str(url)
        try:
            parsed = URL(text)
        except InvalidURL as exc:
            raise InvalidURL(f"Invalid proxy URL {redact_url(text)!r}: {exc}") from None
        label = redact_url(text)
        if parsed.scheme not in _DEFAULT_PROXY_PORTS:
            raise ValueError(
                f"Unsupported proxy URL {label!r}: only http://, socks5:// and socks5h:// "
                "proxies are supported (HTTPS-to-proxy and SOCKS4 are not)"
            )
        if not parsed.host:
            raise ValueError(f"Proxy URL {label!r} has no host")
        if parsed.path not in ("", "/") or parsed.query:
            raise ValueError(f"Proxy URL {label!r} must not have a path or query")
        self.scheme = parsed.scheme
        self.host = parsed.host
        self.port = parsed.port or _DEFAULT_PROXY_PORTS[parsed.scheme]
        #: An HTTP proxy that plain-http requests are sent to in absolute form;
        #: False for SOCKS, which tunnels everything.
        self.forwards = parsed.scheme == "http"
        #: socks5h: the proxy resolves the origin's name.
        self.remote_dns = parsed.scheme == "socks5h"
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.authorization: bytes | None = None
        self.socks_auth: tuple[str, str] | None = None
        userinfo = ""
        if parsed.userinfo:
            user, password = unquote(parsed.username), unquote(parsed.password)
            if self.forwards:
                token = b64encode(f"{user}:{password}".encode()).decode("ascii")
                self.authorization = f"Basic {token}".encode("ascii")
            else:
                self.socks_auth = (user, password)
            userinfo = "***@"
        #: Where it is, credentials redacted: safe for any message or log.
        self.label = f"{parsed.scheme}://{userinfo}{name}:{self.port}"
        self.url = f"{parsed.scheme}://{name}:{self.port}"

    def _key(self) -> tuple[object, ...]:
        return (self.scheme, self.host, self.port, self.authorization, self.socks_auth)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Proxy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Proxy({self.label!r})"


def as_proxy(value: str | URL | Proxy | None) -> Proxy | None:
    """A ``Proxy`` from a URL, or None for ``None`` and ``""`` (no proxy)."""
    if value is None or isinstance(value, Proxy):
        return value
    if not str(value):
        return None
    return Proxy(value)


class NoProxy:
    """``NO_PROXY`` rules, as curl reads them.

    Comma- or space-separated entries: ``*`` (every host), a host name that
    matches itself and its subdomains (``example.com``, ``.example.com`` and
    ``*.example.com`` alike), an IP address or CIDR block (``10.0.0.0/8``),
    each optionally with ``:port``. Names compare without case.
    """

    __slots__ = ("_all", "_names", "_networks")

    def __init__(self, spec: str) -> None:
        self._all = False
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in spec.replace(",", " ").split():
            self._add(entry.strip().lower())

    @classmethod
    def from_environment(cls) -> NoProxy:
        """The rules of ``NO_PROXY`` (or ``no_proxy``, which wins) in this process's
        environment, read as ``urllib.request`` reads it."""
        return cls(_environment_proxies(os.environ).get("no", ""))

    def _add(self, entry: str) -> None:
        if entry == "*":
            self._all = True
            return
        host, port = entry, None
        if entry.startswith("["):  # [v6]:port
            host, _, rest = entry[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, digits = entry.partition(":")
            if digits.isdigit():
                host, port = name, int(digits)
        try:
            self._networks.append((ipaddress.ip_network(host, strict=False), port))
            return
        except ValueError:
            pass
        host = host.removeprefix("*").lstrip(".")
        if host:
            self._names.append((host, port))

    def __bool__(self) -> bool:
        return self._all or bool(self._names) or bool(self._networks)

    def matches(self, host: str, port: int) -> bool:
        """True if a connection to ``host:port`` must not use a proxy."""
        if self._all:
            return True
        host = host.lower().strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in net and (want is None or want == port) for net, want in self._networks
            )
        return any(
            (host == name or host.endswith("." + name)) and (want is None or want == port)
            for name, want in self._names
        )


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment()``, rule for rule: that module (with
    ``http.client`` and ``email``) would cost every crawl most of a megabyte of memory
    for this one function. ``<scheme>_proxy`` in any case, the lower-case name winning
    (an empty one unsets); a CGI script (``REQUEST_METHOD`` set) ignores ``HTTP_PROXY``,
    which a client's ``Proxy:`` header could have set (CVE-2016-1000110)."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        lower = name.lower()
        if value and lower[-6:] == "_proxy":
            found[lower[:-6]] = value
    if "REQUEST_METHOD" in environ:
        found.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy":
            if value:
                found[name.lower()[:-6]] = value
            else:
                found.pop(name.lower()[:-6], None)
    return found


class ProxyRoutes:
    """Which proxy each origin goes through: per scheme, with ``NO_PROXY`` exceptions."""

    __slots__ = ("_by_scheme", "_cache", "_no_proxy")

    def __init__(
        self, by_scheme: Mapping[str, Proxy | None], no_proxy: NoProxy | None = None
    ) -> None:
        self._by_scheme = dict(by_scheme)
        self._no_proxy = no_proxy if no_proxy else None
        self._cache: dict[tuple[str, str, int | None], Proxy | None] = {}

    @classmethod
    def for_client(cls, proxy: str | URL | Proxy | None, trust_env: bool) -> ProxyRoutes | None:
        """httpx's rule: ``proxy`` for everything if given, else the environment if
        trusted; None when no request would go through a proxy."""
        given = as_proxy(proxy)
        if given is not None:
            return cls({"http": given, "https": given})
        if trust_env:
            return cls.from_environment()
        return None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxyRoutes | None:
        """The routes ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``
        (or their lower-case forms, which win) describe; None if they name no proxy."""
        if environ is None:
            found = _environment_proxies(os.environ)
        else:
            found = {}
            for name, value in sorted(environ.items(), key=lambda kv: kv[0].islower()):
                if value and name.lower().endswith("_proxy"):
                    found[name.lower()[: -len("_proxy")]] = value
        fallback = found.get("all")
        by_scheme: dict[str, Proxy | None] = {}
        for scheme in ("http", "https"):
            url = found.get(scheme) or fallback
            try:
                by_scheme[scheme] = as_proxy(url)
            except (ValueError, InvalidURL) as exc:
                source = f"{scheme}_proxy" if found.get(scheme) else "all_proxy"
                raise ValueError(f"{source} in the environment: {exc}") from None
        if not any(by_scheme.values()):
            return None
        return cls(by_scheme, NoProxy(found.get("no", "")))

    def proxy_for(self, scheme: str, host: str, port: int | None) -> Proxy | None:
        key = (scheme, host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        proxy = self._by_scheme.get(scheme)
        if proxy is not None and self._no_proxy is not None:
            effective = port if port is not None else (443 if scheme == "https" else 80)
            if self._no_proxy.matches(host, effective):
                proxy = None
        if len(self._cache) < 100_000:
            self._cache[key] = proxy
        return proxy

    def __repr__(self) -> str:
        routes = ", ".join(f"{k}: {v.label if v else None}" for k, v in self._by_scheme.items())
        return f"ProxyRoutes({routes})"
