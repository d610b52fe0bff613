"""``Client(mounts=...)``: a transport per URL pattern, as httpx's mounts.

Keys are URL patterns: ``"http://"``, ``"https://"`` or ``"all://"`` for a
scheme (``all`` is any), optionally with a host (``"all://example.com"``), a
host and its subdomains (``"all://*example.com"``), subdomains only
(``"all://*.example.com"``) and a port (``"https://example.com:8443"``).
The most specific matching pattern wins, by httpx's order: one with a port
before one without, then the longer host, then the longer scheme. A pattern
mounted to ``None`` sends its requests through the client's own transport
(the way to exempt hosts from a broader mount).

The router sits at the bottom of the client's chain, so redirects, cookies
and decoding behave the same whatever transport a request takes, and each
redirect hop is routed by its own URL. The choice depends only on the origin,
so it is made once per origin and cached: a request pays one dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._models import Request, Response
from ._transports import Transport

__all__ = ["MountRouter", "URLPattern"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CACHED = 100_000


class URLPattern:
    """One mount key, parsed: what URLs it covers and how specific it is."""

    __slots__ = ("_exact", "_suffix", "_with_domain", "pattern", "port", "priority", "scheme")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        scheme, sep, rest = pattern.partition("://")
        if not sep or not scheme:
            raise ValueError(
                f"Mount key {pattern!r} is not a URL pattern: use forms such as 'http://', "
                "'all://', 'https://example.com' or 'all://*.example.com:8080'"
            )
        scheme = scheme.lower()
        #: "" matches every scheme ("all://").
        self.scheme = "" if scheme == "all" else scheme
        rest = rest.rstrip("/")
        if "/" in rest or "?" in rest:
            raise ValueError(f"Mount key {pattern!r} must not have a path or query")
        host, port = _split_port(rest, pattern)
        host = host.lower()
        self.port = port
        self._exact: str | None = None
        self._suffix: str | None = None
        self._with_domain = False
        if host.startswith("*."):
            self._suffix = host[1:]  # ".example.com": subdomains only
        elif host.startswith("*") and host != "*":
            self._suffix = "." + host[1:]
            self._with_domain = True  # example.com itself too
        elif host not in ("", "*"):
            self._exact = host.strip("[]")
        named = "" if host == "*" else host
        #: Sorts most specific first: a port, then the longer host, then the longer scheme.
        self.priority = (port is None, -len(named), -len(self.scheme))

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        """True if the origin ``scheme://host:port`` is covered by this pattern."""
        if self.scheme and self.scheme != scheme:
            return False
        if self.port is not None:
            effective = port if port is not None else _DEFAULT_PORTS.get(scheme)
            if effective != self.port:
                return False
        if self._exact is not None:
            return host == self._exact
        suffix = self._suffix
        if suffix is None:
            return True
        return host.endswith(suffix) or (self._with_domain and host == suffix[1:])

    def __repr__(self) -> str:
        return f"URLPattern({self.pattern!r})"


def _split_port(rest: str, pattern: str) -> tuple[str, int | None]:
    if rest.startswith("["):  # [v6] or [v6]:port
        host, _, tail = rest.partition("]")
        host += "]"
        digits = tail[1:] if tail.startswith(":") else None
        if tail and digits is None:
            raise ValueError(f"Mount key {pattern!r} has an invalid host")
    elif rest.count(":") == 1:
        host, _, digits = rest.partition(":")
    else:
        host, digits = rest, None
    if digits is None:
        return host, None
    if not digits.isdigit() or not 0 < int(digits) < 65536:
        raise ValueError(f"Mount key {pattern!r} has an invalid port {digits!r}")
    return host, int(digits)


class MountRouter:
    """The transport at the bottom of a client with mounts: each origin's, or the default."""

    __slots__ = ("_cache", "_default", "_routes")

    def __init__(self, default: Transport, mounts: Mapping[str, Transport | None]) -> None:
        routes = []
        for key, transport in mounts.items():
            if transport is not None and not isinstance(transport, Transport):
                raise TypeError(
                    f"Mount {key!r}: expected a transport (handle_request and aclose) or None, "
                    f"got {type(transport).__name__}"
                )
            routes.append((URLPattern(key), transport))
        routes.sort(key=lambda route: route[0].priority)
        self._routes = routes
        self._default = default
        self._cache: dict[tuple[str, str, int | None], Transport] = {}

    def transport_for(self, scheme: str, host: str, port: int | None) -> Transport:
        """The transport of the most specific pattern covering the origin."""
        key = (scheme, host, port)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self._default
        for pattern, transport in self._routes:
            if pattern.matches(scheme, host, port):
                if transport is not None:
                    found = transport
                break
        if len(self._cache) < _MAX_CACHED:
            self._cache[key] = found
        return found

    async def handle_request(self, request: Request) -> Response:
        url = request.url
        return await self.transport_for(url.scheme, url.host, url.port).handle_request(request)

    async def aclose(self) -> None:
        """Close the default transport and every mounted one (each once)."""
        closed: set[int] = set()
        for transport in [self._default, *(t for _, t in self._routes if t is not None)]:
            if id(transport) not in closed:
                closed.add(id(transport))
                await transport.aclose()
