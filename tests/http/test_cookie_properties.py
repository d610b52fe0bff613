"""Property test of the cookie jar: whatever servers send, from whatever host.

Bad cookies are ignored, never raised; a Cookie header never carries a
character that could split or end a header line; and the jar stays within
the RFC 6265 section 6.1 limits. Hosts come from a few sites under real and
unknown public suffixes, spelled with odd case, trailing dots and non-ASCII
labels, so that Domain attributes often name a real suffix of the host.
"""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.http import URL, Cookies, HTTPError, Request, Response
from crawler.http._cookies import (
    MAX_COOKIE_SIZE,
    MAX_COOKIES,
    MAX_COOKIES_PER_DOMAIN,
    _site_of,
    is_public_suffix,
)

NOW = 1_700_000_000.0
_SUFFIXES = ["test", "com", "co.uk", "github.io", "kawasaki.jp", "de", "localhost", ""]
_LABELS = ["www", "a", "B", "evil", "victim", "xn--bcher-kva", "bücher", "127", "0", "-", "x" * 64]

_labels = st.one_of(
    st.sampled_from(_LABELS),
    st.text(alphabet="abcXYZ019-_.ü\u00e9\u200d", max_size=8),
)
# Strategies are built once: building them inside each draw costs more than the test.
host_names = st.builds(
    lambda parts, suffix, end: ".".join([*parts, suffix] if suffix else parts) + end,
    st.lists(_labels, max_size=3),
    st.sampled_from(_SUFFIXES),
    st.sampled_from(["", ".", ".."]),
)
_attributes = st.lists(
    st.tuples(
        st.sampled_from(["Domain", "domain", "Path", "Expires", "Max-Age", "Secure", "X"]),
        st.one_of(host_names, st.text(max_size=20), st.just("/" + "p" * 1100)),
    ),
    max_size=3,
)
# Either any text at all, or a cookie with attributes whose values are any text.
set_cookie_lines = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda name, value, attrs: f"{name}={value}" + "".join(f"; {k}={v}" for k, v in attrs),
        st.one_of(st.sampled_from(["sid", "__Host-a", "__Secure-b", ""]), st.text(max_size=10)),
        st.one_of(st.text(max_size=20), st.just("v" * (MAX_COOKIE_SIZE - 3)), st.just("v" * 5000)),
        _attributes,
    ),
)


def _url(scheme: str, host: str, path: str) -> URL | None:
    try:
        return URL(f"{scheme}://{host}/{path}")
    except HTTPError:
        return None  # not a URL a request could have come from: not the jar's concern


_SPLITTERS = re.compile(r"[\r\n\x00]")


@settings(
    max_examples=200,
    deadline=None,
    database=None,  # no example store left in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    responses=st.lists(
        st.tuples(
            st.sampled_from(["http", "https"]),
            host_names,
            st.text(alphabet="ab/", max_size=6),
            st.lists(set_cookie_lines, min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    probes=st.lists(host_names, max_size=3),
)
def test_any_set_cookie_from_any_host_is_stored_or_ignored_never_raised(
    responses: list[tuple[str, str, str, list[str]]], probes: list[str]
) -> None:
    cookies = Cookies(clock=lambda: NOW)
    visited: list[URL] = []
    for scheme, host, path, lines in responses:
        url = _url(scheme, host, path)
        if url is None:
            continue
        visited.append(url)
        response = Response(200, headers=[("Set-Cookie", line) for line in lines])
        response.request = Request("GET", url)
        cookies.extract_cookies(response)

    assert len(cookies) <= MAX_COOKIES
    per_site = Counter(_site_of(c.domain) for c in cookies.jar)
    assert all(n <= MAX_COOKIES_PER_DOMAIN for n in per_site.values())
    for cookie in cookies.jar:
        assert len(cookie.name) + len(cookie.value) <= MAX_COOKIE_SIZE
        # A cookie shared with other hosts never names a public suffix.
        assert cookie.host_only or not is_public_suffix(cookie.domain), cookie.to_dict()
        assert cookie.domain == cookie.domain.strip(".").lower()

    targets = visited + [u for u in (_url("https", p, "") for p in probes) if u is not None]
    for url in targets:
        header = cookies.cookie_header(url)
        if header is None:
            continue
        assert not _SPLITTERS.search(header), header
        header.encode("latin-1")  # header text: anything else could not be sent
        assert header.count("; ") < MAX_COOKIES_PER_DOMAIN
        assert len(header) <= MAX_COOKIES_PER_DOMAIN * (MAX_COOKIE_SIZE + 3)
