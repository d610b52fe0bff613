"""Scrapy's Request API in a crawl: per-request cookies, handle_httpstatus_list and
Request.from_form, checked by what a real loopback server received."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from crawler import Request, Response, Spider
from crawler.frontier.sqlite import decode_request, encode_request
from crawler.http import URL, CookieError
from crawler.http import Request as HTTPRequest
from crawler.http import Response as HTTPResponse
from crawler.sessions import FormError
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]

FORMS = b"""<html><body>
<form action="/login" method="post">
  <input type="hidden" name="csrf" value="t0k">
  <input name="user"><input type="submit" name="go" value="Log in">
</form>
<form id="search" action="/search" method="get">
  <input name="q" value="default"><input name="lang" value="en">
  <button name="mode" value="quick">Quick</button>
  <button name="mode" value="full">Full</button>
</form>
<form name="order" action="/order" method="post">
  <p><input name="qty" value="1"><select name="size"><option>S<option selected>M</select></p>
</form>
</body></html>"""


def cookie_header(server_requests: list[Seen], target: str) -> str:
    return next(s.headers.get("cookie", "") for s in server_requests if s.target == target)


async def test_request_cookies_are_sent_and_kept_in_the_session_jar() -> None:
    def site(seen: Seen) -> Reply:
        if seen.target == "/start":
            return Reply(200, HTML, b'<a href="/next">next</a>')
        return Reply(200, HTML, b"<p>page</p>")

    async with serve_h11(site) as server:
        url = server.url

        class Cookied(Spider):
            name = "cookied"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/start", cookies={"lang": "fr", "n": 1})
                yield Request(
                    url + "/shop/a",
                    cookies=[{"name": "cart", "value": "42", "path": "/shop"}],
                    priority=-1,
                )

            def parse(self, response: Response) -> Iterator[Any]:
                yield {"path": response.url.path}
                if response.url.path == "/start":
                    yield response.follow("/next")
                    yield response.follow("/shop/b", priority=-5)

        _, items = await run(Cookied, settings("", obey_robots=False, concurrency=1))
    assert sorted(i["path"] for i in items) == ["/next", "/shop/a", "/shop/b", "/start"]
    seen = server.requests
    assert cookie_header(seen, "/start") == "lang=fr; n=1"
    # Stored in the jar: later requests carry them, each cookie where its path allows.
    assert cookie_header(seen, "/next") == "lang=fr; n=1"
    assert "cart=42" in cookie_header(seen, "/shop/a")
    assert "cart=42" in cookie_header(seen, "/shop/b") and "lang=fr" in cookie_header(
        seen, "/shop/b"
    )


def test_request_cookies_are_checked_where_the_request_is_made_and_stored_with_it() -> None:
    with pytest.raises(CookieError, match=r"cookies of http://h/: .*'bad;name'"):
        Request("http://h/", cookies={"bad;name": "v"})
    with pytest.raises(CookieError, match=r"cookie #0 of http://h/ must be a dict"):
        Request("http://h/", cookies=[("a", "b")])  # type: ignore[list-item]
    with pytest.raises(CookieError, match=r"unknown keys \['expires'\]"):
        Request("http://h/", cookies=[{"name": "a", "value": "b", "expires": 1}])
    request = Request("http://h/", cookies=[{"name": "a", "value": "b", "domain": ".H"}])
    assert request.cookies == [{"name": "a", "value": "b", "domain": "h"}]
    assert decode_request(None, None, encode_request(request)).cookies == request.cookies


async def test_handle_httpstatus_list_is_scrapys_name_for_accept_statuses() -> None:
    def site(seen: Seen) -> Reply:
        return Reply(int(seen.target.rsplit("/", 1)[1]), HTML, b"gone")

    async with serve_h11(site) as server:
        url = server.url

        class Statuses(Spider):
            name = "statuses"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/s/404", handle_httpstatus_list=[404])
                yield Request(url + "/s/410", handle_httpstatus_all=True)
                yield Request(url + "/s/403", handle_httpstatus_list=[404])

            def parse(self, response: Response) -> dict[str, Any]:
                return {"status": response.status_code}

        stats, items = await run(Statuses, settings("", obey_robots=False, retry_times=0))
    assert sorted(i["status"] for i in items) == [404, 410]
    assert stats.errors["http_403"] == 1
    with pytest.raises(ValueError, match="not both"):
        Request("http://h/", accept_statuses=[404], handle_httpstatus_list=[410])


async def test_from_form_requests_go_through_the_scheduler_with_the_forms_fields() -> None:
    def site(seen: Seen) -> Reply:
        if seen.target == "/forms":
            return Reply(200, HTML, FORMS)
        return Reply(200, HTML, b"<p>done</p>")

    async with serve_h11(site) as server:
        url = server.url

        class Forms(Spider):
            name = "forms"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/forms", callback=self.parse_forms)

            def parse_forms(self, response: Response) -> Iterator[Request]:
                yield Request.from_form(response, formdata={"user": "ann"}, callback=self.done)
                yield Request.from_form(
                    response,
                    formid="search",
                    formdata={"q": "books", "lang": None},
                    clickdata={"value": "full"},
                    callback=self.done,
                )
                yield Request.from_form(
                    response, formxpath="//select", dont_click=True, callback=self.done
                )
                yield Request.from_form(
                    response, formname="order", method="GET", callback=self.done, cb_kwargs={"k": 1}
                )

            def done(self, response: Response, k: int = 0) -> dict[str, Any]:
                parts = urlsplit(str(response.url))
                return {"target": parts.path + "?" + parts.query, "k": k}

        _, items = await run(Forms, settings("", obey_robots=False))
    sent = {s.target.partition("?")[0]: s for s in server.requests if s.target != "/forms"}
    login = sent["/login"]
    assert login.method == "POST" and login.headers["origin"] == url
    assert parse_qsl(login.body.decode()) == [("csrf", "t0k"), ("user", "ann"), ("go", "Log in")]
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent["/search"].target == "/search?q=books&mode=full"
    order = [s for s in server.requests if s.target.startswith("/order")]
    assert [(s.method, s.body) for s in order if s.method == "POST"] == [("POST", b"qty=1&size=M")]
    assert [s.target for s in order if s.method == "GET"] == ["/order?qty=1&size=M"]
    assert {"target": "/order?qty=1&size=M", "k": 1} in items
    assert all(s.headers.get("referer") == url + "/forms" for s in sent.values())


def test_from_form_says_which_form_is_missing() -> None:
    http = HTTPResponse(200, headers=HTML, content=FORMS)
    http.request = HTTPRequest("GET", URL("http://h/f"))
    response = Response.from_http(http, Request("http://h/f"))
    with pytest.raises(FormError, match=r"No form number 5 on http://h/f: it has 3 forms"):
        Request.from_form(response, formnumber=5)
    with pytest.raises(FormError, match=r"No form holds an element matching XPath '//nav'"):
        Request.from_form(response, formxpath="//nav")
    with pytest.raises(FormError, match=r"clickdata nr=4: the form on http://h/f has 2"):
        Request.from_form(response, formid="search", clickdata={"nr": 4})
    with pytest.raises(FormError, match=r"No element matches 'form\[name=\"nope\"\]'"):
        Request.from_form(response, formname="nope")


EDIT = b"""<html><body>
<form action="/other"><input name="x"></form>
<form action="/edit" method="post">
  <input type="hidden" name="csrf" value="t0k">
  <button name="preview" value="1">Preview</button>
  <button name="action" value="save">Save</button>
  <button name="action" value="publish">Publish</button>
  <p><input type="submit" name="cancel" value="Cancel" id="cancel"></p>
</form>
</body></html>"""


async def submit_edit_form(**from_form: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """Crawl the EDIT page and submit a form of it with ``from_form``'s keywords; the
    targets and fields the server then received."""

    def site(seen: Seen) -> Reply:
        return Reply(200, HTML, EDIT if seen.target == "/page" else b"<p>done</p>")

    async with serve_h11(site) as server:
        url = server.url

        class Edit(Spider):
            name = "edit"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/page", callback=self.submit)

            def submit(self, response: Response) -> Iterator[Request]:
                yield Request.from_form(response, callback=self.done, **from_form)

            def done(self, response: Response) -> None:
                return None

        await run(Edit, settings("", obey_robots=False, retry_times=0))
    return [(s.target, parse_qsl(s.body.decode())) for s in server.requests if s.target != "/page"]


async def test_formcss_on_a_button_submits_the_form_holding_it() -> None:
    sent = await submit_edit_form(formcss="#cancel", formdata={"via": "css"})
    assert sent == [("/edit", [("csrf", "t0k"), ("via", "css"), ("preview", "1")])]


async def test_clickdata_nr_counts_only_the_buttons_matching_the_other_keys() -> None:
    sent = await submit_edit_form(formnumber=1, clickdata={"name": "action", "nr": 1})
    assert sent == [("/edit", [("csrf", "t0k"), ("action", "publish")])]


def test_clickdata_nr_out_of_range_among_matching_buttons_names_the_page() -> None:
    response = Response.from_body("http://h/edit", EDIT)
    with pytest.raises(
        FormError,
        match=r"clickdata nr=2: the form on http://h/edit has 2 submit buttons matching "
        r"\{'name': 'action'\}",
    ):
        Request.from_form(response, formnumber=1, clickdata={"name": "action", "nr": 2})
    with pytest.raises(
        FormError, match=r"No submit button matches clickdata \{'name': 'delete', 'nr': 0\}"
    ):
        Request.from_form(response, formnumber=1, clickdata={"name": "delete", "nr": 0})


def test_meta_and_cb_kwargs_are_made_on_first_use_and_kept() -> None:
    """A queued request without meta or cb_kwargs holds no dict for them (64 bytes
    each, times every request a crawl queues); asked for, each is a dict of its own
    that stays, and what the spider puts in it is stored like any other meta."""
    first, second = Request("http://t.test/a"), Request("http://t.test/b")
    assert (first._meta, first._cb_kwargs) == (None, None)
    first.meta["k"] = 1
    first.cb_kwargs["page"] = 2
    assert (first.meta, first.cb_kwargs) == ({"k": 1}, {"page": 2})
    assert second.meta == {} and second.meta is not first.meta
    assert second.cb_kwargs == {} and second.cb_kwargs is not first.cb_kwargs
    back = decode_request("parse", None, encode_request(first))
    assert (back.meta, back.cb_kwargs) == ({"k": 1}, {"page": 2})
    plain = decode_request("parse", None, encode_request(Request("http://t.test/c")))
    assert (plain._meta, plain._cb_kwargs) == (None, None)
    replaced = first.replace(meta={"other": True})
    assert replaced.meta == {"other": True} and replaced.cb_kwargs == {"page": 2}
