"""The crawl-level Response: adoption of the HTTP response, selectors and link following."""

from __future__ import annotations

import pytest

from crawler import Request, Response
from crawler.http import Request as HTTPRequest
from crawler.http import Response as HTTPResponse

PAGE = """<html><head><title>T &amp; co</title></head><body>
<p class="price">$1.50</p>
<a href="/a?y=2&x=1#top">A</a> <a href="b.html">B</a> <a href="/a?y=2&x=1">A again</a>
<a href="mailto:x@example.com">mail</a> <img src="img/p.png">
<a href="https://other.test/z">Z</a>
</body></html>"""


def make_response(meta: dict[str, object] | None = None) -> Response:
    http = HTTPResponse(
        200,
        html=PAGE,
        request=HTTPRequest("GET", "http://shop.test/dir/page.html"),
    )
    crawl_request = Request("http://shop.test/dir/page.html", meta=meta)
    return Response.from_http(http, crawl_request)


def test_adopts_the_http_response_without_copying() -> None:
    response = make_response({"k": 1})
    assert isinstance(response, HTTPResponse)
    assert response.status_code == 200
    assert response.text == PAGE
    assert str(response.url) == "http://shop.test/dir/page.html"
    assert response.meta == {"k": 1}
    assert response.crawl_request.url == "http://shop.test/dir/page.html"
    assert isinstance(response.request, HTTPRequest)


def test_tree_is_parsed_once_and_selectors_work() -> None:
    response = make_response()
    assert response.tree is response.tree
    assert response.css_first("title").text() == "T & co"
    assert response.css_first(".price").text() == "$1.50"
    assert response.css_first(".missing") is None
    assert len(response.css("a")) == 5


def test_links_are_absolute_defragmented_and_deduplicated() -> None:
    assert make_response().links() == [
        "http://shop.test/a?y=2&x=1",
        "http://shop.test/dir/b.html",
        "https://other.test/z",
    ]


def test_follow_url_and_node() -> None:
    response = make_response()
    parse = _Spiderish().parse
    r = response.follow("b.html", callback=parse, priority=3, meta={"m": 1})
    assert (r.url, r.callback, r.priority, r.meta) == (
        "http://shop.test/dir/b.html",
        "parse",
        3,
        {"m": 1},
    )
    img = response.css_first("img")
    assert response.follow(img).url == "http://shop.test/dir/img/p.png"
    with pytest.raises(ValueError, match="mailto"):
        response.follow("mailto:x@example.com")


def test_follow_all() -> None:
    response = make_response()
    by_css = [r.url for r in response.follow_all(css="a")]
    assert by_css == [
        "http://shop.test/a?y=2&x=1",
        "http://shop.test/dir/b.html",
        "http://shop.test/a?y=2&x=1",
        "https://other.test/z",
    ]
    assert [r.url for r in response.follow_all()] == response.links()
    assert [r.url for r in response.follow_all(["../up.html", "mailto:q@x"])] == [
        "http://shop.test/up.html"
    ]


class _Spiderish:
    def parse(self, response: Response) -> None:
        pass


def test_follow_all_skips_urls_the_crawl_already_has() -> None:
    seen = {"http://shop.test/dir/b.html"}
    http = HTTPResponse(
        200, html=PAGE, request=HTTPRequest("GET", "http://shop.test/dir/page.html")
    )
    response = Response.from_http(
        http,
        Request("http://shop.test/dir/page.html"),
        lambda urls: [u for u in urls if u not in seen],
    )
    assert [r.url for r in response.follow_all()] == [
        "http://shop.test/a?y=2&x=1",
        "https://other.test/z",
    ]
    # Arguments that change a request's identity turn the shortcut off.
    assert len(response.follow_all(dont_filter=True)) == 3
    assert len(response.follow_all(method="POST")) == 3


def test_package_exports_the_crawl_level_request_and_response() -> None:
    import crawler
    import crawler.http
    import crawler.request
    import crawler.response

    assert crawler.Request is crawler.request.Request
    assert crawler.Response is crawler.response.Response
    assert crawler.http.Request is not crawler.Request  # type: ignore[comparison-overlap]
    # Every other public name of the HTTP client is re-exported, but for its typing helpers.
    for name in crawler.http.__all__:
        if name not in crawler._HTTP_ONLY:
            assert name in crawler.__all__ and hasattr(crawler, name), name


def test_from_body_builds_a_response_without_a_server() -> None:
    page = Response.from_body("http://shop.test/dir/page.html", PAGE)
    assert (page.status_code, str(page.url), page.text) == (
        200,
        "http://shop.test/dir/page.html",
        PAGE,
    )
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.css("title::text").get() == "T & co"
    assert page.urljoin("b.html") == "http://shop.test/dir/b.html"
    request = Request("http://shop.test/api", callback="parse_api", meta={"page": 2})
    data = Response.from_body(
        "http://shop.test/api",
        b'{"n": 1}',
        status=404,
        headers={"Content-Type": "application/json"},
        request=request,
    )
    assert (data.status_code, data.json(), data.meta, data.crawl_request) == (
        404,
        {"n": 1},
        {"page": 2},
        request,
    )
    assert data.headers["content-type"] == "application/json"
