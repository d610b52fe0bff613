"""Link extraction: the fast paths must agree with a WHATWG parser (ada_url)."""

from __future__ import annotations

import itertools
import random

import ada_url
import pytest
from selectolax.lexbor import LexborHTMLParser

from crawler._links import (
    _page_base,
    _resolve_fast,
    extract_links,
    host_of,
    make_host_filter,
    netloc_of,
    normalize_absolute,
    resolve_url,
)

BASES = [
    "http://127.0.0.1:8081/p/001/1234.html",
    "http://example.com/",
    "http://example.com",
    "https://Example.COM:443/a/b/c?q=1#frag",
    "http://user:pw@example.com:8080/dir/sub/",
    "http://example.com/a/b/c",
    "https://xn--bcher-kva.de/x/y.html",
    "http://[::1]:8080/a/b.html",
    "http://example.com/%7Ea/b%20c/",
]

PIECES = [
    "", "/", "//", "a", "b.html", ".", "..", "./", "../", "../../", "%2e", "%2E/", "%7e",
    "%20", "%", "%zz", "?", "?a=1&b=2", "&", "=", "#", "#frag", "\\", " ", "\t", "\n",
    "\x00", "é", ":", "@", ";", ",", "'", '"', "<", ">", "^", "`", "{", "}", "|", "[", "]",
    "~", "+", "$", "!", "*", "(", ")", "http:", "https://", "HTTP://", "mailto:", "javascript:",
    "tel:+1", "data:,x", "127.1", "0x7f.1", "Example.COM", ":80", ":443", ":8080", ":0080",
    ":65536", ":65535", "a.b.1", "xn--zz", "a..b", "-a-", "_", ".well-known", "a:b", "x/y",
]  # fmt: skip


def _generated_hrefs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    prefixes = ["", "/", "//", "../", "http://", "https://", "http://example.com", "?", "#"]
    hrefs = []
    for _ in range(count):
        parts = [rng.choice(prefixes)]
        parts += rng.choices(PIECES, k=rng.randint(0, 6))
        hrefs.append("".join(parts))
    return hrefs


TRICKY = [
    "/p/000/5.html",
    "/p/000/5.html#reviews",
    "/item?v=2&id=27",
    "/a/./b",
    "/a/../b",
    "/a/%2e%2e/b",
    "/a/%2E/b",
    "/a b",
    " /a",
    "/a\tb",
    "/a\\b",
    "/é",
    "/a?x='1'",
    '/a?x="1"',
    "/a^b",
    "/a|b",
    "/a[b]",
    "//other.host/x",
    "4712.html",
    "../004/4711.html",
    "../../../../x.html",
    "../",
    "..",
    "./x",
    "x/../y",
    "?q=1",
    "#top",
    "",
    "mailto:sales@shop.invalid",
    "javascript:void(0)",
    " javascript:void(0)",
    "java\tscript:alert(1)",
    "tel:+123",
    "data:text/html,hi",
    "c:/windows",
    "http:relative",
    "HTTP://EXAMPLE.com/x",
    "http://example.com",
    "http://example.com:80/x",
    "https://example.com:443/x",
    "http://example.com:0080/x",
    "http://example.com:65536/x",
    "http://127.1/x",
    "http://0x7f.0.0.1/x",
    "http://1.2.3.04/x",
    "http://a.b.1/x",
    "http://a..b/x",
    "http://a.com./x",
    "http://u:p@a.com/x",
    "http://xn--bcher-kva.de/x",
    "http://xn--zz/x",
    "http://bücher.de/x",
    "http://[::1]:8080/x",
    "http://127.0.0.10:8081/partner/1.html",
    "ftp://example.com/x",
    "a:b",
    "a+b:c",
    "1a:b",
]


def _reference(base: str, href: str) -> str | None:
    """What a WHATWG parser gives, restricted to crawlable http(s) URLs."""
    try:
        joined = ada_url.join_url(base, href)
    except ValueError:
        return None
    if not joined.startswith(("http://", "https://")):
        return None
    return joined.split("#", 1)[0]


@pytest.mark.parametrize("base", BASES)
def test_fast_paths_agree_with_ada_on_tricky_hrefs(base: str) -> None:
    page = _page_base(base, None)
    assert page is not None
    for href in TRICKY:
        assert _resolve_fast(page, href) == _reference(base, href), (base, href)


@pytest.mark.parametrize(("seed", "base"), list(enumerate(BASES)))
def test_fast_paths_agree_with_ada_on_generated_hrefs(seed: int, base: str) -> None:
    page = _page_base(base, None)
    assert page is not None
    for href in _generated_hrefs(3000, seed=seed):
        assert _resolve_fast(page, href) == _reference(base, href), (base, href)


def test_generated_hrefs_exercise_the_fast_paths() -> None:
    # Guards the test above against silently comparing only slow paths.
    page = _page_base(BASES[0], None)
    assert page is not None
    fast = [h for h in TRICKY if h.startswith("/") and _resolve_fast(page, h) == page.prefix + h]
    assert "/p/000/5.html" in fast
    assert _resolve_fast(page, "../004/4711.html") == "http://127.0.0.1:8081/p/004/4711.html"
    assert _resolve_fast(page, "4712.html") == "http://127.0.0.1:8081/p/001/4712.html"


def test_normalize_absolute_agrees_with_ada() -> None:
    candidates = [h for h in TRICKY if "://" in h]
    candidates += ["http://" + "".join(p) for p in itertools.product(PIECES[:30], repeat=2)]
    for url in candidates:
        assert normalize_absolute(url) == _reference("http://base.invalid/", url), url


def test_resolve_url() -> None:
    assert resolve_url("http://a.com/x/y.html", "z.html#f") == "http://a.com/x/z.html"
    assert resolve_url("http://a.com/x/y.html", "mailto:a@b") is None
    assert resolve_url("http://a.com/", "http://[bad") is None
    assert resolve_url("not a url", "/x") is None


def _page(body: str, head: str = "") -> LexborHTMLParser:
    return LexborHTMLParser(f"<html><head>{head}</head><body>{body}</body></html>")


def test_extract_links_filters_dedups_and_keeps_order() -> None:
    tree = _page(
        '<A HREF="/b">1</A><a href="mailto:x@y">m</a><a href="a.html#x">2</a>'
        '<a href="javascript:void(0)">j</a><a href="/b#top">3</a><a href="tel:1">t</a>'
        '<a href="http://other.host:81/z">4</a><a href="a.html">5</a><a>no href</a>'
        '<a href="data:,x">d</a><a href="/b">6</a>'
    )
    assert extract_links(tree, "http://site.test/dir/page.html") == [
        "http://site.test/b",
        "http://site.test/dir/a.html",
        "http://other.host:81/z",
    ]


def test_extract_links_follows_image_map_areas_in_document_order() -> None:
    tree = _page(
        '<a href="/first">1</a><img usemap="#m"><map name="m">'
        '<AREA SHAPE="rect" COORDS="0,0,9,9" HREF="/north"><area shape="default" nohref>'
        '<area href="mailto:x@y"><area href="/first#again"></map><a href="/last">2</a>'
    )
    assert extract_links(tree, "http://site.test/") == [
        "http://site.test/first",
        "http://site.test/north",
        "http://site.test/last",
    ]


def test_extract_links_honours_base_href() -> None:
    tree = _page('<a href="x.html">x</a><a href="/y">y</a>', '<base href="http://cdn.test/s/">')
    assert extract_links(tree, "http://site.test/p.html") == [
        "http://cdn.test/s/x.html",
        "http://cdn.test/y",
    ]


def test_relative_base_href_resolves_against_page_and_first_base_wins() -> None:
    tree = _page('<a href="x">x</a><base href="/other/">', '<base href="sub/">')
    assert extract_links(tree, "http://site.test/d/p.html") == ["http://site.test/d/sub/x"]


def test_bare_href_attribute_means_the_page_itself() -> None:
    tree = _page('<a href>x</a><a href="">y</a><a href="#top">z</a>')
    assert extract_links(tree, "http://site.test/d/p.html?q=1#f") == [
        "http://site.test/d/p.html?q=1"
    ]


def test_unusable_base_href_is_ignored() -> None:
    tree = _page('<a href="x">x</a>', '<base href="http://[bad">')
    assert extract_links(tree, "http://site.test/d/p.html") == ["http://site.test/d/x"]


def test_extract_links_on_unusable_page_url_gives_nothing() -> None:
    assert extract_links(_page('<a href="/x">x</a>'), "not a url") == []


def test_extract_links_on_generated_page_matches_reference() -> None:
    rng = random.Random(7)
    hrefs = [rng.choice(TRICKY) for _ in range(200)] + _generated_hrefs(200, seed=3)
    body = "".join(f"<a href='{h.replace(chr(39), '&#39;')}'>x</a>" for h in hrefs)
    tree = _page(body)
    base = "http://127.0.0.1:8081/p/001/1234.html"
    expected: dict[str, None] = {}
    for node in tree.css("a[href]"):
        url = _reference(base, node.attrs["href"] or "")
        if url is not None:
            expected[url] = None
    got = extract_links(tree, base)
    assert got == list(expected)
    assert len(got) > 20


def test_netloc_and_host_slicing() -> None:
    assert netloc_of("http://u:p@Example.com:8080/a?b#c") == "example.com:8080"
    assert netloc_of("http://example.com?x=/y") == "example.com"
    assert host_of("http://example.com:8080/a") == "example.com"
    assert host_of("http://[::1]:8080/a") == "[::1]"
    assert host_of("http://[::1]/a") == "[::1]"


def test_host_filter_domains_subdomains_and_ports() -> None:
    allowed = make_host_filter(["example.com", "127.0.0.1:8081", ".Other.ORG"])
    assert allowed("http://example.com/x")
    assert allowed("http://www.example.com:9999/x")
    assert not allowed("http://badexample.com/x")
    assert not allowed("http://example.com.evil.test/x")
    assert allowed("http://127.0.0.1:8081/p/1.html")
    assert not allowed("http://127.0.0.1:8082/p/1.html")
    assert not allowed("http://127.0.0.10:8081/partner/1.html")
    assert not allowed("http://localhost:8081/x")
    assert allowed("https://a.b.other.org/")


def test_host_filter_port_only_entries_reject_other_hosts() -> None:
    allowed = make_host_filter(["127.0.0.1:8081"])
    assert allowed("http://127.0.0.1:8081/")
    assert not allowed("http://127.0.0.1/")


def test_host_filter_empty_allows_all_and_idna_entries() -> None:
    assert make_host_filter([])("http://anything.test/")
    allowed = make_host_filter(["bücher.de", "bücher.example:8080"])
    assert allowed("http://www.xn--bcher-kva.de/x")
    assert allowed("http://xn--bcher-kva.example:8080/x")
    assert not allowed("http://xn--bcher-kva.example:8081/x")


@pytest.mark.parametrize("entry", ["http://example.com", "example.com/path", "", "u@example.com"])
def test_host_filter_rejects_malformed_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed_domains entry"):
        make_host_filter([entry])
