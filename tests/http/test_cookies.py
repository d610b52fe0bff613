"""The cookie jar against RFC 6265: parsing, storage model, retrieval, persistence."""

from __future__ import annotations

import calendar
import json
import re

import pytest

from crawler.http import URL, Cookie, CookieError, Cookies, Request, Response
from crawler.http._cookies import (
    MAX_COOKIE_SIZE,
    MAX_COOKIES,
    MAX_COOKIES_PER_DOMAIN,
    default_path,
    domain_match,
    parse_cookie_date,
    path_match,
)

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def jar() -> tuple[Cookies, Clock]:
    clock = Clock()
    return Cookies(clock=clock), clock


def receive(cookies: Cookies, url: str, *set_cookies: str) -> None:
    response = Response(200, headers=[("Set-Cookie", v) for v in set_cookies])
    response.request = Request("GET", url)
    cookies.extract_cookies(response)


def header(cookies: Cookies, url: str) -> str | None:
    return cookies.cookie_header(URL(url))


# -- dates -------------------------------------------------------------------------

EXPECTED = calendar.timegm((2015, 10, 21, 7, 28, 0, 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",  # RFC 1123
        "Wednesday, 21-Oct-15 07:28:00 GMT",  # RFC 850
        "Wed Oct 21 07:28:00 2015",  # asctime
        "Wed, 21-Oct-2015 07:28:00 GMT",  # Netscape
        "21 oct 2015 07:28:00",
        "Wed, 21 October 2015 07:28:00 UTC",
    ],
)
def test_cookie_dates_in_many_formats(text: str) -> None:
    assert parse_cookie_date(text) == EXPECTED


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 30 Feb 2015 07:28:00 GMT",
     "Wed, 21 Oct 2015 25:28:00 GMT", "Wed, 21 Oct 1600 07:28:00 GMT", "21 Oct 2015"],
)  # fmt: skip
def test_invalid_cookie_dates(text: str) -> None:
    assert parse_cookie_date(text) is None


def test_two_digit_years() -> None:
    assert parse_cookie_date("01 Jan 69 00:00:00") == calendar.timegm((2069, 1, 1, 0, 0, 0))
    assert parse_cookie_date("01 Jan 70 00:00:00") == 0.0


# -- matching rules ------------------------------------------------------------------


def test_domain_match() -> None:
    assert domain_match("example.com", "example.com")
    assert domain_match("www.example.com", "example.com")
    assert not domain_match("badexample.com", "example.com")
    assert not domain_match("example.com", "www.example.com")
    assert not domain_match("1.2.3.4", "2.3.4")  # IPs match only themselves


def test_path_match() -> None:
    assert path_match("/a", "/a")
    assert path_match("/a/b", "/a")
    assert path_match("/a/b", "/a/")
    assert not path_match("/ab", "/a")
    assert path_match("/anything", "/")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("", "/"), ("/", "/"), ("/a", "/"), ("/a/b", "/a"), ("/a/b/", "/a/b"), ("x", "/")],
)
def test_default_path(path: str, expected: str) -> None:
    assert default_path(path) == expected


# -- storing -----------------------------------------------------------------------


def test_host_only_cookie_is_not_sent_to_subdomains() -> None:
    cookies, _ = jar()
    receive(cookies, "http://example.com/", "a=1")
    (cookie,) = cookies.jar
    assert cookie.host_only and cookie.domain == "example.com"
    assert header(cookies, "http://example.com/x") == "a=1"
    assert header(cookies, "http://www.example.com/x") is None


def test_domain_cookie_with_leading_dot_goes_to_subdomains() -> None:
    cookies, _ = jar()
    receive(cookies, "http://www.example.com/", "a=1; Domain=.Example.COM")
    (cookie,) = cookies.jar
    assert not cookie.host_only and cookie.domain == "example.com"
    assert header(cookies, "http://example.com/") == "a=1"
    assert header(cookies, "http://deep.sub.example.com/") == "a=1"
    assert header(cookies, "http://notexample.com/") is None


def test_domain_equal_to_host_is_a_domain_cookie() -> None:
    cookies, _ = jar()
    receive(cookies, "http://example.com/", "a=1; Domain=example.com")
    assert header(cookies, "http://www.example.com/") == "a=1"


@pytest.mark.parametrize(
    "domain", ["other.com", "ample.com", "sub.www.example.com", "com", ".com", "127.0.0.1"]
)
def test_foreign_or_public_suffix_domain_is_rejected(domain: str) -> None:
    cookies, _ = jar()
    receive(cookies, "http://www.example.com/", f"a=1; Domain={domain}")
    assert len(cookies) == 0


def test_single_label_domain_equal_to_the_host_is_host_only() -> None:
    cookies, _ = jar()
    receive(cookies, "http://localhost/", "a=1; Domain=localhost")
    (cookie,) = cookies.jar
    assert cookie.host_only
    assert header(cookies, "http://localhost/") == "a=1"


def test_trailing_dot_does_not_defeat_the_single_label_rule() -> None:
    cookies, _ = jar()
    receive(cookies, "http://www.evil.test./", "td=1; Domain=test.", "tl=1; Domain=TEST..")
    assert len(cookies) == 0
    assert header(cookies, "http://victim.test./") is None
    assert header(cookies, "http://victim.test/") is None


def test_hosts_and_domains_are_compared_in_one_canonical_form() -> None:
    cookies, _ = jar()
    receive(cookies, "http://WWW.Example.COM./", "a=1; Domain=EXAMPLE.com.", "h=2")
    receive(cookies, "http://www.bücher.de/", "b=3; Domain=BÜCHER.de")
    assert {c.domain for c in cookies.jar} == {"example.com", "www.example.com", "xn--bcher-kva.de"}
    assert header(cookies, "http://www.example.com/") == "a=1; h=2"
    assert header(cookies, "http://www.example.com./") == "a=1; h=2"
    assert header(cookies, "http://other.example.com/") == "a=1"
    assert header(cookies, "http://xn--bcher-kva.de/") == "b=3"
    assert header(cookies, "http://shop.Bücher.de./") == "b=3"


@pytest.mark.parametrize("domain", ["a..example.com", "x" * 64 + ".example.com", "exa\u00admple"])
def test_domain_that_is_not_a_host_name_is_refused(domain: str) -> None:
    cookies, _ = jar()
    receive(cookies, "http://www.example.com/", f"a=1; Domain={domain}")
    assert len(cookies) == 0


def test_host_that_is_no_host_name_gets_no_cookie_and_no_error() -> None:
    cookies, _ = jar()
    receive(cookies, "http://www..test/", "a=1", "b=2; Domain=test")
    assert len(cookies) == 0


def test_hand_set_domains_are_canonical_too() -> None:
    cookies = Cookies()
    cookies.set("a", "1", domain="Bücher.DE.")
    assert cookies.get("a", domain="xn--bcher-kva.de") == "1"
    assert cookies.get("a", domain="BÜCHER.de.") == "1"
    assert cookies.cookie_header("http://www.bücher.de/") == "a=1"
    with pytest.raises(CookieError, match=r"'a\.\.b'"):
        cookies.set("b", "1", domain="a..b")


@pytest.mark.parametrize(
    ("host", "domain"),
    [("a.co.uk", "co.uk"), ("x.github.io", "github.io"), ("a.b.kawasaki.jp", "b.kawasaki.jp")],
)
def test_public_suffix_domain_is_refused(host: str, domain: str) -> None:
    cookies, _ = jar()
    receive(cookies, f"http://{host}/", f"a=1; Domain={domain}", f"b=2; Domain=.{domain}.")
    assert len(cookies) == 0
    assert header(cookies, f"http://other.{domain}/") is None


def test_public_suffix_domain_from_that_very_host_is_host_only() -> None:
    cookies, _ = jar()
    receive(cookies, "http://co.uk/", "a=1; Domain=co.uk")
    (cookie,) = cookies.jar
    assert cookie.host_only and cookie.domain == "co.uk"
    assert header(cookies, "http://co.uk/") == "a=1"
    assert header(cookies, "http://a.co.uk/") is None


def test_registrable_domain_under_a_public_suffix_is_accepted() -> None:
    cookies, _ = jar()
    receive(cookies, "http://www.example.co.uk/", "a=1; Domain=example.co.uk")
    receive(cookies, "http://me.github.io/", "b=2; Domain=me.github.io")
    assert header(cookies, "http://shop.example.co.uk/") == "a=1"
    assert header(cookies, "http://blog.me.github.io/") == "b=2"


def test_ip_hosts_get_host_only_cookies() -> None:
    cookies, _ = jar()
    receive(cookies, "http://127.0.0.1/", "a=1", "b=2; Domain=127.0.0.1", "c=3; Domain=0.0.1")
    assert sorted(c.name for c in cookies.jar) == ["a", "b"]
    assert all(c.host_only for c in cookies.jar)
    assert header(cookies, "http://127.0.0.1:8080/") == "a=1; b=2"  # ports are not isolated
    assert header(cookies, "http://127.0.0.2/") is None


def test_ipv6_host() -> None:
    cookies, _ = jar()
    receive(cookies, "http://[::1]:8000/", "a=1")
    assert header(cookies, "http://[::1]/") == "a=1"


def test_path_attribute_and_default_path() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/docs/page", "dflt=1", "root=2; Path=/", "bad=3; Path=x")
    paths = {c.name: c.path for c in cookies.jar}
    assert paths == {"dflt": "/docs", "root": "/", "bad": "/docs"}
    assert header(cookies, "http://h.test/docs/other") == "dflt=1; bad=3; root=2"
    assert header(cookies, "http://h.test/docsx") == "root=2"
    assert header(cookies, "http://h.test/") == "root=2"


def test_longer_paths_first_then_creation_order() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "z=1; Path=/", "y=2; Path=/a/b", "x=3; Path=/a", "w=4")
    assert header(cookies, "http://h.test/a/b/c") == "y=2; x=3; z=1; w=4"


def test_replacing_a_cookie_keeps_its_position() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=1", "b=2")
    receive(cookies, "http://h.test/", "a=3")
    assert header(cookies, "http://h.test/") == "a=3; b=2"
    assert len(cookies) == 2


def test_secure_cookie_is_never_sent_over_http() -> None:
    cookies, _ = jar()
    receive(cookies, "https://h.test/", "s=1; Secure", "p=2")
    assert header(cookies, "https://h.test/") == "s=1; p=2"
    assert header(cookies, "http://h.test/") == "p=2"


def test_secure_cookie_from_http_is_refused() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "s=1; Secure")
    assert len(cookies) == 0


def test_flags_are_kept() -> None:
    cookies, _ = jar()
    receive(cookies, "https://h.test/", "a=1; Secure; HttpOnly; SameSite=Lax")
    (cookie,) = cookies.jar
    assert (cookie.secure, cookie.http_only, cookie.same_site) == (True, True, "Lax")


def test_cookie_prefixes() -> None:
    cookies, _ = jar()
    receive(
        cookies,
        "https://www.h.test/",
        "__Secure-a=1",
        "__Secure-b=2; Secure",
        "__Host-c=3; Secure; Path=/; Domain=h.test",
        "__Host-d=4; Secure; Path=/",
    )
    assert sorted(c.name for c in cookies.jar) == ["__Host-d", "__Secure-b"]


@pytest.mark.parametrize("line", ["noequals", "=value", " ; a=1", "a\x01b=1", "a=\x7f"])
def test_malformed_set_cookie_is_ignored(line: str) -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", line)
    assert len(cookies) == 0


def test_value_quotes_and_spaces() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", ' a = "quoted" ; Path=/', "b=; Path=/")
    assert cookies.get("a") == '"quoted"'  # kept byte for byte, as browsers do
    assert cookies.get("b") == ""


# -- expiry ------------------------------------------------------------------------


def test_max_age_expires_cookies() -> None:
    cookies, clock = jar()
    receive(cookies, "http://h.test/", "a=1; Max-Age=60")
    assert header(cookies, "http://h.test/") == "a=1"
    clock.now += 61
    assert header(cookies, "http://h.test/") is None
    assert len(cookies) == 0  # purged when found expired


def test_max_age_wins_over_expires() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=1; Max-Age=60; Expires=Wed, 21 Oct 2015 07:28:00 GMT")
    (cookie,) = cookies.jar
    assert cookie.expires == NOW + 60


@pytest.mark.parametrize("max_age", ["0", "-1"])
def test_max_age_zero_or_negative_deletes(max_age: str) -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=1", "b=2")
    receive(cookies, "http://h.test/", f"a=gone; Max-Age={max_age}")
    assert header(cookies, "http://h.test/") == "b=2"


def test_expires_in_the_past_deletes() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=1")
    receive(cookies, "http://h.test/", "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert len(cookies) == 0


def test_invalid_max_age_is_ignored() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=1; Max-Age=1x", "b=1; Max-Age=", "c=1; Max-Age=--5")
    assert all(c.expires is None for c in cookies.jar)
    assert len(cookies) == 3


def test_expires_sets_expiry_and_deletion_needs_same_domain_and_path() -> None:
    cookies, _ = jar()
    receive(cookies, "http://h.test/a/", "a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT")
    (cookie,) = cookies.jar
    assert cookie.expires is not None and cookie.expires > NOW
    receive(cookies, "http://h.test/", "a=1; Max-Age=0")  # different default path: no effect
    assert len(cookies) == 1


# -- the dict-like API -----------------------------------------------------------------


def test_dict_api() -> None:
    cookies = Cookies({"a": "1"})
    cookies["b"] = "2"
    assert cookies["a"] == "1" and "b" in cookies and "zz" not in cookies
    assert sorted(cookies) == ["a", "b"] and len(cookies) == 2
    assert dict(cookies.items()) == {"a": "1", "b": "2"}
    del cookies["a"]
    assert "a" not in cookies
    with pytest.raises(KeyError):
        cookies["a"]
    with pytest.raises(KeyError):
        del cookies["a"]
    cookies.update({"c": "3"})
    cookies.clear()
    assert len(cookies) == 0 and not cookies


def test_hand_set_cookies_go_to_every_host_and_domain_ones_to_subdomains() -> None:
    cookies = Cookies()
    cookies.set("any", "1")
    cookies.set("dom", "2", domain="example.com", path="/app")
    assert header(cookies, "http://other.test/") == "any=1"
    assert header(cookies, "http://www.example.com/app/x") == "dom=2; any=1"


def test_get_refuses_to_guess_between_namesakes() -> None:
    cookies = Cookies()
    cookies.set("a", "1", domain="one.test")
    cookies.set("a", "2", domain="two.test")
    with pytest.raises(CookieError, match=r"one\.test/.*two\.test/"):
        cookies.get("a")
    assert cookies.get("a", domain="two.test") == "2"
    assert cookies.get("missing", "default") == "default"
    cookies.delete("a", domain="one.test")
    assert cookies["a"] == "2"


def test_clear_one_domain() -> None:
    cookies = Cookies()
    cookies.set("a", "1", domain="one.test")
    cookies.set("b", "2", domain="two.test", path="/x")
    cookies.set("c", "3", domain="two.test")
    cookies.clear("one.test")
    assert sorted(cookies) == ["b", "c"]
    cookies.clear("two.test", path="/x")
    assert list(cookies) == ["c"]


@pytest.mark.parametrize(("name", "value"), [("a b", "1"), ("", "1"), ("a", "x;y"), ("a", "\n")])
def test_bad_names_and_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(CookieError, match="cookie"):
        Cookies().set(name, value)


@pytest.mark.parametrize(
    "cookie",
    [
        Cookie("a", "€"),
        Cookie("", "1"),
        Cookie("a;b", "1"),
        Cookie("a", "1\r\nX-Evil: 1"),
        Cookie("a", "1", domain="a..b"),
        Cookie("a", "v" * MAX_COOKIE_SIZE),
    ],
)
def test_hand_made_cookie_that_could_not_be_sent_is_refused(cookie: Cookie) -> None:
    cookies = Cookies()
    with pytest.raises(CookieError, match=re.escape(repr(cookie.name))):
        cookies.set_cookie(cookie)
    assert len(cookies) == 0
    with pytest.raises(CookieError, match="#0"):
        Cookies.from_list([cookie.to_dict()])


def test_set_cookie_line_outside_latin_1_is_ignored() -> None:
    # Servers' headers are Latin-1 text; a Response built by hand may hold more.
    cookies, _ = jar()
    receive(cookies, "http://h.test/", "a=€", "€=1", "ok=é")
    assert [c.name for c in cookies.jar] == ["ok"]
    assert header(cookies, "http://h.test/") == "ok=é"


def test_from_list_can_skip_the_cookies_it_refuses(caplog: pytest.LogCaptureFixture) -> None:
    items = [{"name": "big", "value": "v" * 5000}, {"name": "ok", "value": "1"}]
    restored = Cookies.from_list(items, skip_refused=True)
    assert list(restored) == ["ok"]
    assert "#0 not restored" in caplog.text and "'big'" in caplog.text
    with pytest.raises(CookieError, match="#1"):
        Cookies.from_list([items[1], {"nope": 1}], skip_refused=True)


def test_value_outside_latin_1_is_refused_when_set() -> None:
    with pytest.raises(CookieError, match="Latin-1"):
        Cookies({"a": "€"})


def test_jar_is_iterable_cookie_objects() -> None:
    cookies = Cookies({"a": "1"})
    (cookie,) = cookies.jar
    assert isinstance(cookie, Cookie) and cookie.name == "a"


def test_update_from_another_jar_keeps_domains() -> None:
    source, _ = jar()
    receive(source, "http://h.test/p/q", "a=1; HttpOnly")
    copy = Cookies(source)
    (cookie,) = copy.jar
    assert (cookie.domain, cookie.path, cookie.host_only, cookie.http_only) == (
        "h.test",
        "/p",
        True,
        True,
    )


def test_per_domain_cap_evicts_the_oldest() -> None:
    cookies, _ = jar()
    for i in range(MAX_COOKIES_PER_DOMAIN + 5):
        receive(cookies, "http://h.test/", f"c{i}=1")
    assert len(cookies) == MAX_COOKIES_PER_DOMAIN
    assert "c0" not in cookies and f"c{MAX_COOKIES_PER_DOMAIN + 4}" in cookies


def test_limits_follow_rfc_6265_section_6_1() -> None:
    assert MAX_COOKIE_SIZE == 4096 and MAX_COOKIES_PER_DOMAIN == 50 and MAX_COOKIES == 3000


def test_per_domain_cap_covers_every_subdomain_of_a_site() -> None:
    # Host-only and domain cookies on many subdomains of one site count together,
    # so no host of the site can be sent more than the cap.
    cookies, _ = jar()
    for i in range(120):
        host = f"h{i % 7}.deep.site.test"
        attrs = "; Domain=site.test" if i % 3 == 0 else ("; Domain=deep.site.test" if i % 3 else "")
        receive(cookies, f"http://{host}/", f"c{i}=v{attrs}")
    assert len(cookies) == MAX_COOKIES_PER_DOMAIN
    assert "c69" not in cookies and "c70" in cookies and "c119" in cookies
    sent = header(cookies, "http://h1.deep.site.test/")
    assert sent is not None and sent.count("=") <= MAX_COOKIES_PER_DOMAIN


def test_per_domain_cap_drops_expired_cookies_before_live_ones() -> None:
    cookies, clock = jar()
    receive(cookies, "http://h.test/", "old=1")
    receive(cookies, "http://h.test/", "brief=1; Max-Age=5")
    clock.now += 10
    for i in range(MAX_COOKIES_PER_DOMAIN - 1):
        receive(cookies, "http://h.test/", f"c{i}=1")
    assert "old" in cookies and len(cookies) == MAX_COOKIES_PER_DOMAIN


def test_total_cap_evicts_the_oldest_across_sites() -> None:
    cookies, _ = jar()
    sites = MAX_COOKIES // MAX_COOKIES_PER_DOMAIN + 1
    for site in range(sites):
        for i in range(MAX_COOKIES_PER_DOMAIN):
            receive(cookies, f"http://s{site}.test/", f"c{i}=1")
    assert len(cookies) <= MAX_COOKIES
    assert header(cookies, "http://s0.test/") is None  # the first site's cookies went first
    newest = header(cookies, f"http://s{sites - 1}.test/")
    assert newest is not None and newest.count("=") == MAX_COOKIES_PER_DOMAIN


def test_oversized_cookie_is_ignored() -> None:
    cookies, _ = jar()
    fits = "v" * (MAX_COOKIE_SIZE - 1)  # name + value = 4096 bytes
    receive(cookies, "http://h.test/", f"a={fits}", f"bb={fits}", f"{'n' * 4097}=")
    assert [c.name for c in cookies.jar] == ["a"]
    with pytest.raises(CookieError, match="4096"):
        cookies.set("bb", fits)


def test_oversized_attribute_is_ignored() -> None:
    cookies, _ = jar()
    long_path = "/" + "p" * 1024
    receive(cookies, "http://www.h.test/dir/x", f"a=1; Path={long_path}; Domain=h.test")
    (cookie,) = cookies.jar
    assert cookie.path == "/dir" and cookie.domain == "h.test"


def test_host_with_a_trailing_dot_gets_each_cookie_once() -> None:
    cookies = Cookies({"any": "1"})
    cookies.set("d", "2", domain="example.com.")
    assert header(cookies, "http://www.example.com./") == "any=1; d=2"


def test_explicit_cookies_override_jar_ones() -> None:
    cookies = Cookies({"a": "jar", "b": "jar"})
    assert cookies.cookie_header("http://h.test/", {"a": "mine"}) == "b=jar; a=mine"


# -- persistence ---------------------------------------------------------------------


def test_round_trip_through_json_keeps_everything_but_expired() -> None:
    cookies, clock = jar()
    receive(
        cookies,
        "https://www.h.test/app/x",
        "a=1; Domain=h.test; Secure; SameSite=Strict",
        "b=2; Max-Age=100",
        "c=3; Max-Age=5",
    )
    clock.now += 10
    data = json.loads(json.dumps(cookies.to_list()))
    assert [d["name"] for d in data] == ["a", "b"]
    restored = Cookies.from_list(data, clock=clock)
    assert restored.to_list() == data
    assert restored.cookie_header("https://x.h.test/app/") == "a=1"  # b is host-only
    assert restored.cookie_header("https://www.h.test/app/") == "a=1; b=2"


def test_from_list_names_the_bad_entry() -> None:
    with pytest.raises(CookieError, match="#1"):
        Cookies.from_list([{"name": "a", "value": "1"}, {"name": "b", "nope": 1}])


def test_lookup_walks_only_the_hosts_domains() -> None:
    cookies = Cookies()
    for i in range(1000):
        cookies.set("x", str(i), domain=f"site{i}.test")
    cookies.set("mine", "1", domain="target.test")
    seen: list[str] = []
    buckets = cookies._buckets

    class Spy(dict[str, dict[tuple[str, str], Cookie]]):
        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            seen.append(key)
            return super().get(key, default)

    cookies._buckets = Spy(buckets)
    assert header(cookies, "http://a.b.target.test/") == "mine=1"
    assert seen == ["a.b.target.test", "b.target.test", "target.test", "test", ""]


def test_a_cookie_name_ending_in_a_line_break_is_refused_and_no_value_is_repeated() -> None:
    jar = Cookies()
    with pytest.raises(CookieError, match="'admin\\\\n'"):
        jar.set("admin\n", "1")
    with pytest.raises(CookieError) as info:
        jar.set("session", "secret-token; admin=1")
    assert "secret-token" not in str(info.value)
