"""Link extraction and URL resolution: the crawl's hottest path.

A page of the benchmark site carries ~43 links and almost all of them were
seen before, on this page or on others. Resolving every href with a full URL
parser costs more than parsing the HTML, so hrefs take the cheapest route
that still gives exactly what a WHATWG parser (``ada_url``) would:

* hrefs repeated on the same page are dropped before any work;
* root-relative (``/a/b?x=1``), plain document-relative (``b.html``,
  ``../003/b.html``) and already-normal absolute ``http(s)://`` hrefs are
  built by string concatenation, after one regex check that they contain
  nothing the parser would rewrite (dot segments, ``\\``, whitespace,
  characters it percent-encodes, hosts it would normalise);
* everything else goes through ``ada_url.join_url``.

The fast paths are checked against ``ada_url`` on generated and tricky hrefs
in ``tests/crawl/test_links.py``; when in doubt a check says "slow path".
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import ada_url

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser

__all__ = [
    "extract_links",
    "host_of",
    "href_resolver",
    "make_host_filter",
    "netloc_of",
    "normalize_absolute",
    "resolve_url",
]

# A path (and optional query) that a WHATWG parser leaves untouched when it
# follows an already-parsed origin: only characters outside every
# percent-encode set, no backslash, no whitespace or controls.  Dot segments
# and "%2e" (which the parser treats as a dot) are refused separately.
_PLAIN = re.compile(r"[A-Za-z0-9\-._~!$&()*+,;=:@/%]*(?:\?[A-Za-z0-9\-._~!$&()*+,;=:@/%?]*)?")
# A host[:port] that is already in canonical form: lowercase ASCII labels
# whose last label starts with a letter (so no IPv4 number rewriting), or a
# canonical dotted-quad IPv4 address; a port without leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_NETLOC = re.compile(
    r"(?:(?:[a-z0-9_\-]+\.)*[a-z][a-z0-9_\-]*|" + _OCTET + r"(?:\." + _OCTET + r"){3})"
    r"(?::[1-9][0-9]{0,4})?"
)
_DEFAULT_PORT_SUFFIX = {"http": ":80", "https": ":443"}


def _plain_tail(tail: str) -> bool:
    """True if ``tail`` (path+query, fragment already cut) needs no rewriting."""
    return (
        _PLAIN.fullmatch(tail) is not None
        and "/." not in tail
        and "%2e" not in tail
        and "%2E" not in tail
    )


def normalize_absolute(url: str) -> str | None:
    """The normalised, fragment-free form of an absolute http(s) URL, or None.

    Already-normal URLs (the common case: links written by a server, URLs that
    came out of this module) cost a slice and two regex checks; the rest go
    through ``ada_url``.  Non-http(s) and invalid URLs give None.
    """
    # The slow path gets the whole string: cutting the fragment first could
    # expose trailing spaces or controls that the parser would then strip.
    cut = url.find("#")
    head = url if cut < 0 else url[:cut]
    if head.startswith("http://"):
        start = 7
    elif head.startswith("https://"):
        start = 8
    else:
        return _slow_absolute(url)
    slash = head.find("/", start)
    if slash < 0:
        return _slow_absolute(url)
    origin = head[:slash]
    if origin not in _PLAIN_ORIGINS:
        if not _plain_origin(origin, start):
            return _slow_absolute(url)
        if len(_PLAIN_ORIGINS) >= _PLAIN_ORIGINS_MAX:
            _PLAIN_ORIGINS.clear()
        _PLAIN_ORIGINS[origin] = None
    if not _plain_tail(head[slash:]):
        return _slow_absolute(url)
    return head


# Origins already known to be in normal form: a crawl meets few hosts, so
# checking each once turns the netloc check into one dict lookup.
_PLAIN_ORIGINS: dict[str, None] = {}
_PLAIN_ORIGINS_MAX = 4096


def _plain_origin(origin: str, start: int) -> bool:
    netloc = origin[start:]
    if _PLAIN_NETLOC.fullmatch(netloc) is None or "xn--" in netloc:
        return False
    colon = netloc.find(":")
    if colon < 0:
        return True
    port = netloc[colon:]
    return port != _DEFAULT_PORT_SUFFIX[origin[: start - 3]] and not (
        len(port) == 6 and port > ":65535"
    )


def _slow_absolute(url: str) -> str | None:
    try:
        href: str = ada_url.normalize_url(url)
    except ValueError:
        return None
    return _http_only(href)


def _http_only(href: str) -> str | None:
    if not href.startswith(("http://", "https://")):
        return None
    cut = href.find("#")
    return href if cut < 0 else href[:cut]


def resolve_url(base: str, href: str) -> str | None:
    """Absolute, fragment-free http(s) URL of ``href`` seen on ``base``, or None.

    None means the link is not something to crawl: another scheme (mailto:,
    javascript:, tel:, data:...) or an href no browser could resolve either.
    """
    try:
        joined: str = ada_url.join_url(base, href)
    except ValueError:
        return None
    return _http_only(joined)


class _Base:
    """What the fast paths need to know about one page's base URL, computed once."""

    __slots__ = ("dir", "href", "prefix")

    def __init__(self, href: str, prefix: str, dir_: str) -> None:
        self.href = href  # the normalised base URL
        self.prefix = prefix  # scheme://[userinfo@]host[:port]
        self.dir = dir_  # prefix + path up to and including its last "/"


def _page_base(base_url: str, base_href: str | None) -> _Base | None:
    """The document's base: ``<base href>`` resolved against the page URL.

    An unusable ``<base href>`` is ignored, as browsers do; None means the
    page URL itself is unusable, so no link on it can be resolved.
    """
    try:
        href: str = ada_url.normalize_url(base_url)
        if base_href is not None:
            with contextlib.suppress(ValueError):
                href = ada_url.join_url(href, base_href)
        parts = ada_url.parse_url(href, attributes=("protocol", "pathname", "search", "hash"))
    except ValueError:
        return None
    if parts["protocol"] not in ("http:", "https:"):
        return _Base(href, "", "")  # no fast path; ada joins every href
    path = parts["pathname"]
    tail = len(path) + len(parts["search"]) + len(parts["hash"])
    prefix = href[: len(href) - tail]
    return _Base(href, prefix, prefix + path[: path.rfind("/") + 1])


def _resolve_fast(base: _Base, href: str) -> str | None:
    """``resolve_url`` for one href of a page, taking a fast path when safe."""
    cut = href.find("#")
    path = href if cut < 0 else href[:cut]
    if base.prefix and path:
        first = path[0]
        if first == "/":
            if not path.startswith("//") and _plain_tail(path):
                return base.prefix + path
        elif first == "h" and (path.startswith(("http://", "https://"))):
            return normalize_absolute(href)
        elif ":" in path:
            colon = path.find(":")
            scheme = path[:colon]
            if (
                scheme.isalnum()
                and scheme.isascii()
                and scheme[0].isalpha()
                and scheme.lower() not in ("http", "https")
            ):
                return None  # mailto:, javascript:, tel:, data:... never crawlable
        elif first != "?":
            directory = base.dir
            while path.startswith("../"):
                path = path[3:]
                if len(directory) > len(base.prefix) + 1:
                    directory = directory[: directory.rfind("/", 0, -1) + 1]
            if path[:1] not in (".", "/") and _plain_tail(path):
                return directory + path
            return resolve_url(base.href, href)
    return resolve_url(base.href, href)


def extract_links(tree: LexborHTMLParser, base_url: str) -> list[str]:
    """Absolute http(s) URLs of the links of a parsed page: ``<a href>`` and the
    ``<area href>`` of image maps, which browsers, wget and Scrapy follow too.

    ``tree`` is a ``selectolax.lexbor.LexborHTMLParser``.  Fragments are cut,
    ``<base href>`` is honoured, other schemes are skipped, and each URL
    appears once, in document order.
    """
    hrefs: list[str] = []
    base_href: str | None = None
    # One selector, so one walk of the tree finds all three kinds in document order.
    for node in tree.css("a[href], area[href], base[href]"):
        # A bare ``href`` attribute reads as None; HTML says its value is "".
        if node.tag == "base":
            if base_href is None:
                base_href = node.attrs["href"] or ""
        else:
            hrefs.append(node.attrs["href"] or "")
    base = _page_base(base_url, base_href)
    if base is None:
        return []
    out: dict[str, None] = {}
    for href in dict.fromkeys(hrefs):
        url = _resolve_fast(base, href)
        if url is not None:
            out[url] = None
    return list(out)


def href_resolver(tree: LexborHTMLParser, base_url: str) -> Callable[[str], str | None] | None:
    """``resolve_url`` for the hrefs of one page, with its ``<base href>`` honoured and
    the fast paths of ``extract_links``; None when the page URL itself is unusable."""
    node = tree.css_first("base[href]")
    base = _page_base(base_url, None if node is None else node.attrs["href"] or "")
    if base is None:
        return None
    return lambda href: _resolve_fast(base, href)


def netloc_of(url: str) -> str:
    """Lowercase ``host[:port]`` of an absolute URL, found by slicing.

    Meant for URLs that already went through this module (normalised), where
    a full parse per link would cost more than everything else here.
    """
    return _netloc_slice(url).lower()


def _netloc_slice(url: str) -> str:
    """``netloc_of`` without lowercasing; userinfo removed."""
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    end = url.find("/", start)
    netloc = url[start:] if end < 0 else url[start:end]
    if "?" in netloc or "#" in netloc:
        for sep in "?#":
            cut = netloc.find(sep)
            if cut >= 0:
                netloc = netloc[:cut]
    if "@" in netloc:
        netloc = netloc[netloc.rfind("@") + 1 :]
    return netloc


def host_of(url: str) -> str:
    """Lowercase host (no port, IPv6 brackets kept) of an absolute URL."""
    netloc = netloc_of(url)
    colon = netloc.rfind(":")
    if colon >= 0 and netloc.find("]", colon) < 0:
        return netloc[:colon]
    return netloc


def _domain_entry(entry: str) -> str:
    value = entry.strip().lower().lstrip(".")
    if not value or "/" in value or "@" in value:
        raise ValueError(
            f"allowed_domains entry {entry!r} is not a domain: give 'example.com' or "
            "'example.com:8080', without scheme or path"
        )
    if not value.isascii():
        host, sep, port = value.rpartition(":")
        if not (sep and port.isdigit()):
            host, sep, port = value, "", ""
        value = ada_url.idna_to_ascii(host).decode("ascii") + sep + port
    return value


def make_host_filter(allowed_domains: list[str]) -> Callable[[str], bool]:
    """A predicate: is this absolute URL on one of ``allowed_domains``?

    An entry matches its host and every subdomain.  ``example.com`` matches any
    port; ``example.com:8080`` only that port (the port as written in the URL,
    so a default port, which normalised URLs omit, is matched by the bare host
    entry).  No entries means everything is allowed.
    """
    if not allowed_domains:
        return _allow_all
    names: set[str] = set()
    with_port: set[str] = set()
    for entry in allowed_domains:
        value = _domain_entry(entry)
        colon = value.rfind(":")
        if colon >= 0 and value.find("]", colon) < 0:
            with_port.add(value)
        else:
            names.add(value)

    def _matches(key: str, table: set[str]) -> bool:
        if key in table:
            return True
        dot = key.find(".")
        while dot >= 0:
            if key[dot + 1 :] in table:
                return True
            dot = key.find(".", dot + 1)
        return False

    def decide(netloc: str) -> bool:
        if with_port and _matches(netloc, with_port):
            return True
        if not names:
            return False
        colon = netloc.rfind(":")
        host = netloc[:colon] if colon >= 0 and netloc.find("]", colon) < 0 else netloc
        return _matches(host, names)

    # A crawl meets few distinct netlocs: decide once for each, then it is
    # one slice and one dict lookup per link.
    decided: dict[str, bool] = {}

    def allowed(url: str) -> bool:
        raw = _netloc_slice(url)
        verdict = decided.get(raw)
        if verdict is None:
            verdict = decide(raw.lower())
            if len(decided) >= 4096:
                decided.clear()
            decided[raw] = verdict
        return verdict

    return allowed


def _allow_all(url: str) -> bool:
    return True
