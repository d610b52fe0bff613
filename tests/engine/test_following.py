"""How the crawl follows a page: which links it finds, what its requests say about
where they came from. Checked on what a real loopback server receives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from crawler import Request, Response, Spider
from crawler.engine._referer import (
    REFERRER_POLICIES,
    PageReferrer,
    referrer_policy,
    referrer_source,
)
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


class FollowAll(Spider):
    """Starts at the ``base`` option and follows every link of every page."""

    name = "follow_all"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/")

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all()


async def test_links_of_an_image_map_are_followed() -> None:
    pages = {
        "/": b'<img src="/map.png" usemap="#nav"><map name="nav">'
        b'<area shape="rect" coords="0,0,10,10" href="/north" alt="n">'
        b'<area shape="rect" coords="10,0,20,10" href="/south" alt="s"></map>'
        b'<a href="/about">about</a>',
    }

    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, pages.get(seen.target, b"<p>leaf</p>"))

    async with serve_h11(site) as server:
        stats, _ = await run(FollowAll, settings(server.url, obey_robots=False))
    assert Counter(seen.target for seen in server.requests) == Counter(
        {"/": 1, "/north": 1, "/south": 1, "/about": 1}
    )
    assert stats.pages == 4


class Referring(Spider):
    """Starts at ``base``/start#frag; yields one request with a Referer of its own."""

    name = "referring"

    def start_requests(self) -> Iterator[Request]:
        yield Request(self.settings["base"] + "/start#frag")

    def parse(self, response: Response) -> Iterator[Request]:
        yield from response.follow_all()
        if response.url.path == "/start":
            yield response.follow("/custom", headers={"referer": "http://elsewhere.test/x"})


# What each page receives as Referer, by policy ("" for none). A is the site crawled
# from /start; B is another origin it links to, directly and through a redirect.
_EXPECTED = {
    "no-referrer-when-downgrade": ("A/start", "A/a?x=1", "A/start", "A/start"),
    "unsafe-url": ("A/start", "A/a?x=1", "A/start", "A/start"),
    "same-origin": ("A/start", "A/a?x=1", "", ""),
    "origin": ("A/", "A/", "A/", "A/"),
    "strict-origin-when-cross-origin": ("A/start", "A/a?x=1", "A/", "A/"),
    "no-referrer": ("", "", "", ""),
}


@pytest.mark.parametrize("policy", list(_EXPECTED))
async def test_requests_from_a_page_carry_its_url_as_referer_by_policy(policy: str) -> None:
    async with serve_h11(_site_b) as b:
        pages = {
            "/start": _links("/a?x=1", f"{b.url}/b", "/go", "mailto:x@y", "/start#again"),
            "/a?x=1": _links("/c"),
        }

        def site_a(seen: Seen) -> Reply:
            if seen.target == "/go":
                return Reply(302, [("Location", f"{b.url}/landed")])
            return Reply(200, HTML, pages.get(seen.target, b"<p>leaf</p>"))

        async with serve_h11(site_a) as a:
            await run(Referring, settings(a.url, obey_robots=False, referer_policy=policy))
    received = {seen.target: seen.headers.get("referer", "") for seen in [*a.requests, *b.requests]}
    named = {k: v.replace(a.url, "A") for k, v in received.items()}
    to_a, to_c, to_b, landed = _EXPECTED[policy]
    assert named == {
        "/start": "",  # a start request has no Referer
        "/a?x=1": to_a,
        "/c": to_c,
        "/b": to_b,
        "/go": to_a,
        "/landed": landed,  # the policy is applied again to the redirect's target
        "/custom": "http://elsewhere.test/x",  # set by the spider: kept
    }


def _site_b(seen: Seen) -> Reply:
    return Reply(200, HTML, b"<p>b</p>")


def _links(*hrefs: str) -> bytes:
    return "".join(f'<a href="{href}">{href}</a>' for href in hrefs).encode()


def test_referrer_policies_from_https_to_http_and_across_origins() -> None:
    page = "https://site.test/dir/page?q=1"
    cases = {
        # policy: (to the same origin, to another https origin, to http: a downgrade)
        "no-referrer": (None, None, None),
        "no-referrer-when-downgrade": (page, page, None),
        "same-origin": (page, None, None),
        "origin": ("https://site.test/", "https://site.test/", "https://site.test/"),
        "strict-origin": ("https://site.test/", "https://site.test/", None),
        "origin-when-cross-origin": (page, "https://site.test/", "https://site.test/"),
        "strict-origin-when-cross-origin": (page, "https://site.test/", None),
        "unsafe-url": (page, page, page),
    }
    assert set(cases) == set(REFERRER_POLICIES)
    for policy, expected in cases.items():
        decide = referrer_policy(policy)
        targets = ("https://site.test/other", "https://cdn.test/x", "http://site.test/other")
        assert tuple(decide(page, target) for target in targets) == expected, policy


def test_the_referer_of_a_page_has_no_fragment_and_no_credentials() -> None:
    assert referrer_source("http://user:pw@site.test:8080/a/b?q=1#frag") == (
        "http://site.test:8080/a/b?q=1"
    )
    assert referrer_source("https://site.test/a@b?c=d@e") == "https://site.test/a@b?c=d@e"
    assert referrer_source("https://u@site.test") == "https://site.test"
    assert referrer_source("http://site.test/caf\u00e9?q=\u65e5#x") == (
        "http://site.test/caf%C3%A9?q=%E6%97%A5"
    )


def test_requests_of_one_page_share_their_referer_headers_read_only() -> None:
    page = PageReferrer(referrer_policy("origin-when-cross-origin"), "http://a.test/p#f")
    same = [Request("http://a.test/1"), Request("http://a.test/2")]
    other = Request("http://b.test/3")
    own = Request("http://a.test/4", headers={"Accept": "text/html"})
    for request in [*same, other, own]:
        page.apply(request)
    assert same[0].headers == {"Referer": "http://a.test/p"}
    assert same[0].headers is same[1].headers  # one dict for both
    assert other.headers == {"Referer": "http://a.test/"}
    assert own.headers == {"Accept": "text/html", "Referer": "http://a.test/p"}
    with pytest.raises(TypeError, match="shared with other requests of the same page"):
        same[0].headers["Referer"] = "changed"
    assert same[1].headers == {"Referer": "http://a.test/p"}
    # A copy made the usual ways is the request's own.
    assert Request.from_dict(same[0].to_dict()).headers == {"Referer": "http://a.test/p"}
