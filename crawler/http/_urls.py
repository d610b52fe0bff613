"""An immutable, validated URL.

Parsing happens once, at construction, so the hot path (pool checkout, Host
header, request target) only reads precomputed slots. Characters that could
split a request line or smuggle a header (control characters, CR, LF) are
refused here, before anything reaches a socket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ._exceptions import InvalidURL

__all__ = ["URL", "QueryParams", "encode_params"]

_Scalar = str | int | float | None
QueryParams = Mapping[str, _Scalar] | Iterable[tuple[str, _Scalar]]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
# Characters left as they are when percent-encoding a path or query: the
# reserved and unreserved sets plus '%' so that existing escapes survive.
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~%?]")
# The common case, recognised in one match: an http(s) URL with a lowercase
# ASCII host (names and IPv4 only: no userinfo, no brackets), an optional port,
# and a path and query that need no quoting. Control characters, spaces and
# anything non-ASCII fail to match, so what matches needs none of the checks
# the general path makes; everything else takes that path.
_SAFE_CHARS = r"A-Za-z0-9/:@!$&'()*+,;=\-._~%"
_FAST = re.compile(
    r"(https?)://([a-z0-9._\-]+)(?::([0-9]{0,5}))?"
    rf"(/[{_SAFE_CHARS}]*)?(?:\?([{_SAFE_CHARS}?]*))?(?:#([!-~]*))?"
)
_MAX_PORT = 65535


def encode_params(params: QueryParams) -> str:
    items = params.items() if isinstance(params, Mapping) else params
    return urlencode([(k, "" if v is None else str(v)) for k, v in items])


class URL:
    """A parsed absolute or relative URL; compares equal to its string form."""

    __slots__ = ("_str", "fragment", "host", "path", "port", "query", "scheme", "userinfo")

    _str: str
    scheme: str
    userinfo: str
    host: str
    port: int | None
    path: str
    query: str
    fragment: str

    def __init__(self, url: str | URL = "", *, params: QueryParams | None = None) -> None:
        if type(url) is not str or not self._parse_fast(url):
            if isinstance(url, URL):
                self._copy_from(url)
            else:
                self._parse(url)
        if params:
            self._add_query(encode_params(params))

    def _copy_from(self, other: URL) -> None:
        for name in URL.__slots__:
            object.__setattr__(self, name, getattr(other, name))

    def _parse(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"URL must be a str or URL, not {type(url).__name__}")
        self._parse_slow(url)

    def _parse_fast(self, url: str) -> bool:
        """Fill the fields from one match of ``_FAST``; False, untouched, if it does not match.

        A crawl builds a URL for every request, and nearly all of them look like
        this; ``urlsplit`` and the checks around it cost several times more.
        The fields are exactly those ``_parse_slow`` would give (a test compares
        the two over many URLs), so which path ran is never visible.
        """
        match = _FAST.fullmatch(url)
        if match is None:
            return False
        scheme, host, port_text, path, query, fragment = match.groups()
        # The string is already canonical unless a part is spelled in a way the
        # general path normalises: a default, empty or zero-padded port, no path,
        # or an empty query or fragment.
        canonical = path is not None and query != "" and fragment != ""
        port: int | None = None
        if port_text is not None:
            if port_text:
                port = int(port_text)
                if port > _MAX_PORT:
                    return False  # the general path says why this is invalid
                if port == DEFAULT_PORTS[scheme]:
                    port = None
            canonical = canonical and port is not None and port_text[0] != "0"
        # The slots' own setters: faster than object.__setattr__ by name.
        _set_scheme(self, scheme)
        _set_userinfo(self, "")
        _set_host(self, host)
        _set_port(self, port)
        _set_path(self, path or "/")
        _set_query(self, query or "")
        _set_fragment(self, fragment or "")
        _set_str(self, url if canonical else self._build())
        return True

    def _parse_slow(self, url: str) -> None:
        bad = _FORBIDDEN.search(url)
        if bad:
            raise InvalidURL(f"Invalid character {bad.group()!r} in URL {url!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"Invalid URL {url!r}: {exc}") from None
        netloc = parts.netloc
        userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
        host = (parts.hostname or "").lower()
        if host and not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise InvalidURL(f"Invalid host {parts.hostname!r} in URL {url!r}") from None
        if netloc and not host:
            raise InvalidURL(f"Empty host in URL {url!r}")
        set_ = object.__setattr__
        set_(self, "scheme", parts.scheme.lower())
        set_(self, "userinfo", userinfo)
        set_(self, "host", host)
        set_(self, "port", None if port == DEFAULT_PORTS.get(parts.scheme.lower()) else port)
        path = parts.path
        if _NEEDS_QUOTING.search(path):
            path = quote(path, safe=_SAFE_PATH)
        if not path and host:
            path = "/"
        query = parts.query
        if _NEEDS_QUOTING.search(query):
            query = quote(query, safe=_SAFE_QUERY)
        set_(self, "path", path)
        set_(self, "query", query)
        set_(self, "fragment", parts.fragment)
        set_(self, "_str", self._build())

    def _build(self) -> str:
        out = []
        if self.scheme:
            out.append(self.scheme + ":")
        # A file URL keeps its empty authority: file:///tmp/x, never file:/tmp/x.
        if self.host or self.scheme == "file":
            out.append("//")
            if self.userinfo:
                out.append(self.userinfo + "@")
            out.append(self.netloc)
        out.append(self.path)
        if self.query:
            out.append("?" + self.query)
        if self.fragment:
            out.append("#" + self.fragment)
        return "".join(out)

    def _add_query(self, extra: str) -> None:
        query = f"{self.query}&{extra}" if self.query else extra
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "_str", self._build())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("URL objects are immutable; use copy_with()")

    # -- derived views -------------------------------------------------------

    @property
    def netloc(self) -> str:
        """Host and non-default port, as sent in the Host header."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_PORTS.get(self.scheme, 0)

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): the key of the connection pool and of same-origin checks."""
        return (self.scheme, self.host, self.effective_port)

    @property
    def raw_path(self) -> str:
        """Path and query: the request target of an origin-form request line."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def is_absolute(self) -> bool:
        return bool(self.scheme and self.host)

    @property
    def username(self) -> str:
        return self.userinfo.partition(":")[0]

    @property
    def password(self) -> str:
        return self.userinfo.partition(":")[2]

    # -- operations ----------------------------------------------------------

    def join(self, url: str | URL) -> URL:
        try:
            joined = urljoin(self._str, str(url))
        except ValueError as exc:
            raise InvalidURL(f"Cannot resolve {str(url)!r} against {self._str!r}: {exc}") from None
        return URL(joined)

    def copy_with(self, **changes: str | int | None) -> URL:
        unknown = set(changes) - {"scheme", "userinfo", "host", "port", "path", "query", "fragment"}
        if unknown:
            raise TypeError(f"copy_with() got unknown fields {sorted(unknown)}")
        new = URL(self)
        for name, value in changes.items():
            object.__setattr__(new, name, value)
        return URL(new._build())

    def copy_merge_params(self, params: QueryParams) -> URL:
        return URL(self, params=params)

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        shown = self._str
        if self.password:
            shown = shown.replace(":" + self.password + "@", ":[secure]@", 1)
        return f"URL({shown!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, URL):
            return self._str == other._str
        if isinstance(other, str):
            return self._str == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._str)


def _slot_setter(name: str) -> Callable[[URL, object], None]:
    setter: Callable[[URL, object], None] = URL.__dict__[name].__set__
    return setter


_set_scheme = _slot_setter("scheme")
_set_userinfo = _slot_setter("userinfo")
_set_host = _slot_setter("host")
_set_port = _slot_setter("port")
_set_path = _slot_setter("path")
_set_query = _slot_setter("query")
_set_fragment = _slot_setter("fragment")
_set_str = _slot_setter("_str")
