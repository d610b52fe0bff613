"""The cookie jar: RFC 6265 storage and retrieval rules, indexed by domain.

Cookies live in ``domain -> {(path, name): Cookie}`` buckets, so building the
Cookie header for a URL visits only the buckets of its host and parent domains
(``a.b.example.com``, ``b.example.com``, ``example.com``, ``com``) and never
scans the whole jar: a long crawl that collected cookies from thousands of
sites pays per request only for the site it talks to.

Host names and Domain attributes are compared in one canonical form
(lowercase, IDNA A-labels, no leading or trailing dot), so ``test.`` or
``TEST`` cannot pass for something other than the single label ``test``. A
Domain attribute that is a public suffix (``co.uk``, ``github.io``; the list
bundled by ``publicsuffixlist``, looked up once per domain) is refused, as
browsers do. The sizes follow RFC 6265 section 6.1 as browsers apply them:
4096 bytes per cookie, 50 cookies per site (registrable domain, so a site
cannot multiply them over subdomains, and one Cookie header stays bounded)
and 3000 in all. SameSite is kept but not enforced, since a crawler has no
notion of a top-level browsing context.
"""

from __future__ import annotations

import calendar
import ipaddress
import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from publicsuffixlist import PublicSuffixList

from ._exceptions import CookieError
from ._urls import URL

if TYPE_CHECKING:
    from ._models import Response

__all__ = [
    "MAX_COOKIES",
    "MAX_COOKIES_PER_DOMAIN",
    "MAX_COOKIE_SIZE",
    "Cookie",
    "Cookies",
    "check_cookie",
    "parse_cookie_date",
    "parse_set_cookie",
]

log = logging.getLogger(__name__)

# RFC 6265bis caps a cookie's lifetime at 400 days; it also keeps the float
# arithmetic away from overflow when a server sends Max-Age=99999999999999.
_MAX_AGE_CAP = 400 * 24 * 3600
# RFC 6265 section 6.1 limits, which browsers apply as caps. A bigger cookie is
# ignored; past the count limits the oldest cookies go (expired ones first).
# The per-domain count is per site (registrable domain): every cookie a request
# can carry belongs to its host's site, so this also bounds the Cookie header.
MAX_COOKIE_SIZE = 4096
MAX_COOKIES_PER_DOMAIN = 50
MAX_COOKIES = 3000
# Past MAX_COOKIES the jar is trimmed this far below it, so the sweep over the
# whole jar that finds expired cookies runs once per this many new cookies.
_TRIM_SLACK = 300
# RFC 6265bis 5.6: an attribute value longer than this is ignored.
_MAX_ATTRIBUTE = 1024

_SECURE_SCHEMES = frozenset({"https", "wss"})
_NAME_OK = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[;\x00-\x1f\x7f]")


@dataclass(slots=True, eq=False)
class Cookie:
    """One stored cookie.

    ``domain`` is lowercase without a leading dot; ``""`` means "any host"
    (cookies given to a client by hand, as httpx sends them). ``host_only``
    cookies go to ``domain`` itself only; the others to its subdomains too.
    ``expires`` is a Unix time, ``None`` for a session cookie.
    """

    name: str
    value: str
    domain: str = ""
    path: str = "/"
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None
    expires: float | None = None
    host_only: bool = False
    created: float = 0.0
    seq: int = 0

    def is_expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "domain": self.domain,
            "path": self.path,
            "secure": self.secure,
            "http_only": self.http_only,
            "same_site": self.same_site,
            "expires": self.expires,
            "host_only": self.host_only,
            "created": self.created,
        }

    def __repr__(self) -> str:
        where = self.domain or "*"
        return f"<Cookie {self.name}=[...] for {where}{self.path}>"


# -- parsing helpers ----------------------------------------------------------

_DATE_DELIMS = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\D.*)?$")
_DAY = re.compile(r"^(\d{1,2})(?:\D.*)?$")
_YEAR = re.compile(r"^(\d{2,4})(?:\D.*)?$")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}


def parse_cookie_date(text: str) -> float | None:
    """Parse an Expires value with the RFC 6265 section 5.1.1 algorithm.

    That algorithm is what browsers run, and it accepts every format seen in
    the wild (RFC 1123, RFC 850 with two-digit years, asctime, dashes...)
    without a list of patterns. Returns a Unix time, or None when invalid.
    """
    hms: tuple[int, int, int] | None = None
    day = month = year = None
    for token in _DATE_DELIMS.split(text):
        if not token:
            continue
        if hms is None and (m := _TIME.match(token)):
            hms = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif day is None and (m := _DAY.match(token)):
            day = int(m.group(1))
        elif month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS[token[:3].lower()]
        elif year is None and (m := _YEAR.match(token)):
            year = int(m.group(1))
    if hms is None or day is None or month is None or year is None:
        return None
    if 70 <= year <= 99:
        year += 1900
    elif 0 <= year <= 69:
        year += 2000
    hour, minute, second = hms
    if not 1 <= day <= 31 or year < 1601 or hour > 23 or minute > 59 or second > 59:
        return None
    if day > calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


@lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def canonical_domain(name: str) -> str | None:
    """``name`` lowercase, as IDNA A-labels, without leading or trailing dots; None if
    it cannot be a host name. Hosts from URLs and Domain attributes both go through
    this, so that ``example.com.``, ``EXAMPLE.com`` and ``example.com`` are one key."""
    name = name.strip(".")
    if not name or ".." in name:
        return None
    if name.isascii():
        return name.lower()
    try:
        # As URL does it, so a host and a Domain naming it come out the same.
        return name.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _canonical_host(host: str) -> str:
    """A URL's host is already lowercase A-labels; only a trailing dot may remain."""
    return host.rstrip(".") if host.endswith(".") else host


@lru_cache(maxsize=1)
def _suffix_list() -> PublicSuffixList:
    # Parsing the bundled list takes about 0.1 s: only jars that see a Domain
    # attribute pay it, once per process.
    return PublicSuffixList()


@lru_cache(maxsize=8192)
def is_public_suffix(domain: str) -> bool:
    """True for ``com``, ``co.uk``, ``github.io``, any single label, and names
    under a top-level domain the list does not know."""
    return "." not in domain or bool(_suffix_list().is_public(domain))


@lru_cache(maxsize=8192)
def _site_of(domain: str) -> str:
    """The registrable domain ``domain`` belongs to: the unit the per-domain cap counts.
    An address, a public suffix host and ``""`` (cookies for any host) are their own."""
    if not domain or _is_ip(domain) or "." not in domain:
        return domain
    return _suffix_list().privatesuffix(domain) or domain


def domain_match(host: str, domain: str) -> bool:
    """RFC 6265 5.1.3: equal, or a dot-separated suffix of a host name (not of an IP)."""
    if host == domain:
        return True
    return host.endswith(domain) and host[-len(domain) - 1] == "." and not _is_ip(host)


def path_match(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4: ``/a`` matches ``/a``, ``/a/`` and ``/a/b`` but not ``/ab``."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def default_path(request_path: str) -> str:
    """RFC 6265 5.1.4: the request path up to, not including, its last slash."""
    if not request_path.startswith("/"):
        return "/"
    cut = request_path.rfind("/")
    return "/" if cut == 0 else request_path[:cut]


def _check_name_value(name: str, value: str) -> None:
    if not _NAME_OK.fullmatch(name):
        raise CookieError(f"Invalid cookie name {name!r}: must be a non-empty HTTP token")
    if not _sendable(value):
        # The value is not repeated: cookies carry secrets, and errors reach logs.
        raise CookieError(
            f"Invalid value for cookie {name!r}: it contains ';', a control character "
            "or a character outside Latin-1 (header text)"
        )


def _sendable(text: str) -> bool:
    """No ';' or control character, and Latin-1 only: header text goes out as Latin-1."""
    return not _BAD_VALUE.search(text) and (text.isascii() or max(text) <= "\xff")


def _check_storable(cookie: Cookie) -> None:
    """Refuse, naming it, a hand-made cookie that the jar could not send or look up."""
    name = cookie.name
    if not name or not _sendable(name) or not _sendable(cookie.value):
        raise CookieError(
            f"Invalid cookie {name!r}: the name must be non-empty, and neither it nor the "
            "value may hold ';', a control character or one outside Latin-1"
        )
    if _too_big(name, cookie.value):
        raise CookieError(
            f"Cookie {name!r} is too big: name and value exceed "
            f"{MAX_COOKIE_SIZE} bytes ({len(name) + len(cookie.value)})"
        )
    if cookie.domain:
        domain = canonical_domain(cookie.domain)
        if domain is None:
            raise CookieError(
                f"Invalid domain {cookie.domain!r} for cookie {name!r}: not a host name"
            )
        cookie.domain = domain


def check_cookie(cookie: Cookie) -> None:
    """Refuse with CookieError, naming it, a cookie the jar could not store or send;
    its domain is made canonical. For callers that take cookies long before a jar
    sees them (a crawl Request's ``cookies=``), so the mistake shows where it is made."""
    _check_storable(cookie)
    if not cookie.path.startswith("/"):
        raise CookieError(
            f"Cookie path must start with '/', got {cookie.path!r} for {cookie.name!r}"
        )


def parse_cookie_header(header: str) -> dict[str, str]:
    """Split a Cookie request header (``a=1; b=2``) into name/value pairs."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name:
            out[name] = value.strip()
    return out


_MAX_AGE = re.compile(r"^-?[0-9]+$")


@dataclass(slots=True)
class _Attributes:
    """The cookie-av part of a Set-Cookie line, after RFC 6265 5.2."""

    expires: float | None = None
    max_age: float | None = None
    domain: str | None = None
    path: str | None = None
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None


def _parse_attributes(attrs: str, now: float) -> _Attributes:
    out = _Attributes()
    for attr in attrs.split(";"):
        key, _, val = attr.partition("=")
        key, val = key.strip().lower(), val.strip()
        if len(val) > _MAX_ATTRIBUTE:
            continue
        if key == "expires":
            parsed = parse_cookie_date(val)
            if parsed is not None:
                out.expires = parsed
        elif key == "max-age" and _MAX_AGE.match(val):
            delta = int(val)
            out.max_age = 0.0 if delta <= 0 else now + min(delta, _MAX_AGE_CAP)
        elif key == "domain" and val:
            # A Domain that is no host name can match no host: "" refuses the cookie.
            out.domain = canonical_domain(val) or ""
        elif key == "path":
            out.path = val if val.startswith("/") else None
        elif key == "secure":
            out.secure = True
        elif key == "httponly":
            out.http_only = True
        elif key == "samesite":
            out.same_site = val or None
    return out


def _storage_domain(host: str, domain: str | None) -> tuple[str, bool] | None:
    """RFC 6265 5.3 steps 4-6: the (domain, host_only) to store under, None to refuse.

    Both names are canonical. A public suffix or an address is acceptable as a
    Domain only when it is the host itself, and then the cookie is host-only.
    """
    if domain is None:
        return host, True
    if not domain:  # a Domain attribute that is no host name
        return None
    if domain == host:
        return (host, True) if _is_ip(host) or is_public_suffix(host) else (domain, False)
    if _is_ip(domain) or not domain_match(host, domain) or is_public_suffix(domain):
        return None
    return domain, False


def _bucket_key(domain: str) -> str | None:
    """The bucket a ``domain=`` argument names: ``""`` for cookies sent to any host."""
    return canonical_domain(domain) if domain else ""


def _too_big(name: str, value: str) -> bool:
    # Header text is latin-1, one byte per character on the wire.
    return len(name) + len(value) > MAX_COOKIE_SIZE


def parse_set_cookie(line: str, url: URL, now: float) -> Cookie | None:
    """Apply RFC 6265 5.2 (parsing) and 5.3 (storage model) to one Set-Cookie line.

    Returns None for a cookie the rules refuse. An already-expired cookie is
    returned as is: storing it deletes its namesake, which is how servers log
    users out. The value is kept byte for byte, quotes included, as browsers do.
    """
    pair, _, attrs = line.partition(";")
    name, sep, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not _sendable(name) or not _sendable(value):
        return None
    if len(name) + len(value) > MAX_COOKIE_SIZE:
        return None
    av = _parse_attributes(attrs, now) if attrs else _Attributes()
    # RFC 6265bis: a non-secure origin may not set a Secure cookie.
    if av.secure and url.scheme not in _SECURE_SCHEMES:
        return None
    host = canonical_domain(url.host)
    if host is None:  # no host, or one no cookie can be kept for ("a..b")
        return None
    stored = _storage_domain(host, av.domain)
    if stored is None:
        return None
    domain, host_only = stored
    path = av.path if av.path is not None else default_path(url.path)
    if name.startswith("__Secure-") and not av.secure:
        return None
    if name.startswith("__Host-") and (not av.secure or not host_only or path != "/"):
        return None
    expires = av.max_age
    if expires is None and av.expires is not None:
        expires = min(av.expires, now + _MAX_AGE_CAP)
    return Cookie(
        name, value, domain, path, av.secure, av.http_only, av.same_site, expires, host_only
    )


# -- the jar ------------------------------------------------------------------


class Cookies(MutableMapping[str, str]):
    """A cookie jar with a dict-like face.

    ``cookies["a"] = "1"`` stores a cookie sent to every host (as httpx does);
    ``cookies["a"]`` reads a value and refuses to guess when several cookies
    share the name (pass ``domain=``/``path=`` to :meth:`get` instead).
    ``clock`` returns the Unix time; tests replace it to expire cookies
    without waiting.
    """

    __slots__ = ("_buckets", "_clock", "_order", "_seq", "_sites", "changes")

    def __init__(
        self,
        cookies: Cookies | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._buckets: dict[str, dict[tuple[str, str], Cookie]] = {}
        # Every cookie by creation number, oldest first: the total cap evicts
        # from the front without a scan.
        self._order: dict[int, Cookie] = {}
        # site -> {bucket domain: None}: the buckets the per-site cap counts.
        self._sites: dict[str, dict[str, None]] = {}
        self._seq = itertools.count()
        self._clock = clock
        #: Bumped by every change to the stored cookies: whoever mirrors the jar
        #: elsewhere (a shared crawl's Redis) compares it instead of the cookies.
        self.changes = 0
        if cookies is not None:
            self.update(cookies)

    # -- storing ---------------------------------------------------------------

    def set_cookie(self, cookie: Cookie) -> None:
        """Store ``cookie``, replacing one with the same name, domain and path.

        A replacement keeps the creation order of the cookie it replaces (RFC
        6265 5.3 step 11), which is what the header ordering is based on. A
        cookie that could not be sent (empty name, ';', a control character or
        one outside Latin-1, over MAX_COOKIE_SIZE) or whose domain is no host
        name is refused with CookieError, here rather than at send time.
        """
        _check_storable(cookie)
        self._store(cookie)

    def _store(self, cookie: Cookie) -> None:
        """set_cookie for a cookie known to be valid, as parse_set_cookie's are."""
        bucket = self._buckets.get(cookie.domain)
        key = (cookie.path, cookie.name)
        old = bucket.get(key) if bucket is not None else None
        if cookie.is_expired(self._clock()):
            if old is not None:
                self._remove(old)
            return
        self.changes += 1
        if old is not None:
            cookie.seq = old.seq
            cookie.created = old.created
        else:
            cookie.seq = next(self._seq)
            if not cookie.created:
                cookie.created = self._clock()
        if bucket is None:
            bucket = self._buckets[cookie.domain] = {}
            self._sites.setdefault(_site_of(cookie.domain), {})[cookie.domain] = None
        bucket[key] = cookie
        self._order[cookie.seq] = cookie
        if old is None:
            self._enforce_limits(cookie.domain)

    def _enforce_limits(self, domain: str) -> None:
        domains = self._sites[_site_of(domain)]
        if sum(len(self._buckets[d]) for d in domains) > MAX_COOKIES_PER_DOMAIN:
            self._trim_site([c for d in domains for c in self._buckets[d].values()])
        if len(self._order) > MAX_COOKIES:
            self._trim_jar()

    def _remove_expired(self, cookies: list[Cookie]) -> list[Cookie]:
        """Remove the expired ones of ``cookies``; the others, oldest first."""
        now = self._clock()
        live = []
        for cookie in cookies:
            if cookie.is_expired(now):
                self._remove(cookie)
            else:
                live.append(cookie)
        live.sort(key=lambda c: c.seq)
        return live

    def _trim_site(self, cookies: list[Cookie]) -> None:
        live = self._remove_expired(cookies)
        for cookie in live[: max(0, len(live) - MAX_COOKIES_PER_DOMAIN)]:
            self._remove(cookie)

    def _trim_jar(self) -> None:
        self._remove_expired(list(self._order.values()))
        if len(self._order) <= MAX_COOKIES:
            return
        excess = len(self._order) - (MAX_COOKIES - _TRIM_SLACK)
        for cookie in list(itertools.islice(self._order.values(), excess)):
            self._remove(cookie)

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Set a cookie by hand; with a ``domain`` it also goes to its subdomains."""
        _check_name_value(name, value)
        if not path.startswith("/"):
            raise CookieError(f"Cookie path must start with '/', got {path!r} for {name!r}")
        self.set_cookie(Cookie(name, value, domain, path))

    def extract_cookies(self, response: Response) -> None:
        """Store every acceptable Set-Cookie of ``response`` (others are dropped silently,
        as browsers do: a bad cookie from a server is not the caller's error)."""
        lines = response.headers.get_list("set-cookie")
        if not lines:
            return
        url = response.url
        for line in lines:
            cookie = self.parse_set_cookie(line, url)
            if cookie is not None:
                self._store(cookie)

    def parse_set_cookie(self, line: str, url: URL) -> Cookie | None:
        """The cookie ``line`` sets for a response from ``url``, or None if refused."""
        return parse_set_cookie(line, url, self._clock())

    # -- retrieving ------------------------------------------------------------

    def cookies_for_url(self, url: URL | str) -> list[Cookie]:
        """The cookies a request to ``url`` carries, in header order (RFC 6265 5.4)."""
        if not isinstance(url, URL):
            url = URL(url)
        host = _canonical_host(url.host)
        if not self._buckets or not host:
            return []
        path = url.path or "/"
        secure = url.scheme in _SECURE_SCHEMES
        now = self._clock()
        found: list[Cookie] = []
        expired: list[Cookie] = []
        domain = host
        walk_parents = not _is_ip(host)
        while True:
            bucket = self._buckets.get(domain)
            if bucket:
                exact = domain == host
                for cookie in bucket.values():
                    if cookie.host_only and not exact:
                        continue
                    if cookie.secure and not secure:
                        continue
                    if not path_match(path, cookie.path):
                        continue
                    if cookie.expires is not None and cookie.expires <= now:
                        expired.append(cookie)
                        continue
                    found.append(cookie)
            dot = domain.find(".") if walk_parents else -1
            if dot < 0:
                break
            domain = domain[dot + 1 :]
        anywhere = self._buckets.get("")
        if anywhere:
            for cookie in anywhere.values():
                if cookie.expires is not None and cookie.expires <= now:
                    expired.append(cookie)
                elif path_match(path, cookie.path) and (secure or not cookie.secure):
                    found.append(cookie)
        for cookie in expired:
            self._remove(cookie)
        if len(found) > 1:
            found.sort(key=lambda c: (-len(c.path), c.seq))
        return found

    def cookie_header(
        self, url: URL | str, explicit: Mapping[str, str] | None = None
    ) -> str | None:
        """The Cookie header value for ``url``, or None when no cookie applies.

        ``explicit`` cookies (given with one request) win over jar cookies of
        the same name and come last.
        """
        found = self.cookies_for_url(url)
        if explicit:
            parts = [f"{c.name}={c.value}" for c in found if c.name not in explicit]
            parts.extend(f"{k}={v}" for k, v in explicit.items())
        else:
            parts = [f"{c.name}={c.value}" for c in found]
        return "; ".join(parts) if parts else None

    # -- dict-like API ---------------------------------------------------------

    def _select(self, name: str, domain: str | None, path: str | None) -> Iterator[Cookie]:
        if domain is not None:
            key = _bucket_key(domain)
            buckets: Iterable[dict[tuple[str, str], Cookie]] = (
                (self._buckets.get(key, {}),) if key is not None else ()
            )
        else:
            buckets = self._buckets.values()
        now = self._clock()
        for bucket in buckets:
            for cookie in bucket.values():
                if cookie.name != name or (path is not None and cookie.path != path):
                    continue
                if not cookie.is_expired(now):
                    yield cookie

    def get(  # type: ignore[override]
        self,
        name: str,
        default: str | None = None,
        domain: str | None = None,
        path: str | None = None,
    ) -> str | None:
        """The value of cookie ``name``; an error if several cookies could be meant."""
        found = list(self._select(name, domain, path))
        if not found:
            return default
        if len(found) > 1:
            where = ", ".join(sorted(f"{c.domain or '*'}{c.path}" for c in found))
            raise CookieError(
                f"Several cookies are named {name!r} ({where}): "
                "pass domain= and/or path= to choose one"
            )
        return found[0].value

    def delete(self, name: str, domain: str | None = None, path: str | None = None) -> None:
        for cookie in list(self._select(name, domain, path)):
            self._remove(cookie)

    def clear(self, domain: str | None = None, path: str | None = None) -> None:
        """Remove every cookie, or those of one domain (and path)."""
        if domain is None and path is None:
            self.changes += 1
            self._buckets.clear()
            self._order.clear()
            self._sites.clear()
            return
        if domain is None:
            targets = list(self._buckets)
        else:
            key = _bucket_key(domain)
            targets = [key] if key is not None else []
        for key in targets:
            for cookie in list(self._buckets.get(key, {}).values()):
                if path is None or cookie.path == path:
                    self._remove(cookie)

    def _remove(self, cookie: Cookie) -> None:
        """The one way out of the jar, keeping the bucket, order and site indexes in step."""
        domain = cookie.domain
        bucket = self._buckets.get(domain)
        if bucket is None or bucket.get((cookie.path, cookie.name)) is not cookie:
            return
        del bucket[(cookie.path, cookie.name)]
        del self._order[cookie.seq]
        self.changes += 1
        if not bucket:
            del self._buckets[domain]
            site = _site_of(domain)
            domains = self._sites[site]
            del domains[domain]
            if not domains:
                del self._sites[site]

    def update(  # type: ignore[override]
        self, cookies: Cookies | Mapping[str, str] | Iterable[tuple[str, str]] = (), /
    ) -> None:
        """Add cookies: a jar's cookies keep their domain, path and flags."""
        if isinstance(cookies, Cookies):
            for cookie in sorted(cookies.jar, key=lambda c: c.seq):
                self.set_cookie(Cookie(**cookie.to_dict()))
            return
        items = cookies.items() if isinstance(cookies, Mapping) else cookies
        for name, value in items:
            self.set(name, value)

    @property
    def jar(self) -> list[Cookie]:
        """Every stored cookie object, oldest first (a snapshot list)."""
        return list(self._order.values())

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if not any(True for _ in self._select(name, None, None)):
            raise KeyError(name)
        self.delete(name)

    def __iter__(self) -> Iterator[str]:
        return (c.name for c in self.jar)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(True for _ in self._select(name, None, None))

    def __bool__(self) -> bool:
        return bool(self._order)

    def __repr__(self) -> str:
        shown = ", ".join(f"{c.name}={c.domain or '*'}{c.path}" for c in self.jar)
        return f"<Cookies[{shown}]>"

    # -- persistence -----------------------------------------------------------

    def to_list(self) -> list[dict[str, Any]]:
        """Unexpired cookies as JSON-ready dicts in creation order, for a resumable crawl."""
        now = self._clock()
        return [c.to_dict() for c in self._order.values() if not c.is_expired(now)]

    @classmethod
    def from_list(
        cls,
        items: Iterable[Mapping[str, Any]],
        *,
        clock: Callable[[], float] = time.time,
        skip_refused: bool = False,
    ) -> Cookies:
        """A jar holding the cookies ``to_list`` gave. With ``skip_refused``, a cookie
        the jar refuses today (one saved under looser rules, say over MAX_COOKIE_SIZE)
        is logged and left out instead of failing the whole restore; an item that is
        not a stored cookie at all still raises."""
        jar = cls(clock=clock)
        fields = set(Cookie.__dataclass_fields__) - {"seq"}
        for index, item in enumerate(items):
            unknown = set(item) - fields
            if unknown or "name" not in item or "value" not in item:
                raise CookieError(
                    f"Cookie #{index} is not a stored cookie: "
                    f"unknown keys {sorted(unknown)} or missing name/value in {dict(item)!r}"
                )
            try:
                jar.set_cookie(Cookie(**item))
            except CookieError as exc:
                if not skip_refused:
                    raise CookieError(f"Cookie #{index} cannot be restored: {exc}") from None
                log.warning("Cookie #%d not restored: %s", index, exc)
        return jar
