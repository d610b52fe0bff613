"""The engine's state of a request in typed fields: dont_retry, dont_redirect,
accept_statuses, retry_any_method, retries, redirects; meta is the spider's alone."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from crawler import Request, Response, Spider
from crawler.frontier.sqlite import decode_request, encode_request
from tests.crawl.helpers import run, settings
from tests.servers import Reply, Seen, serve_h11

HTML = [("Content-Type", "text/html")]


def test_fields_are_set_carried_by_replace_and_stored() -> None:
    request = Request(
        "http://a.test/",
        dont_retry=True,
        dont_redirect=True,
        accept_statuses=[404, 410],
        retry_any_method=True,
        meta={"k": 1},
    )
    request.retries, request.redirects, request.cross_origin_redirect = 2, 3, True
    fields = (
        "dont_retry",
        "dont_redirect",
        "accept_statuses",
        "retry_any_method",
        "retries",
        "redirects",
        "cross_origin_redirect",
        "meta",
    )
    want = (True, True, frozenset({404, 410}), True, 2, 3, True, {"k": 1})
    for copy in (
        request.replace(url="http://a.test/2"),
        Request.from_dict(request.to_dict()),
        decode_request(None, None, encode_request(request)),
    ):
        assert tuple(getattr(copy, name) for name in fields) == want
    everything = Request("http://a.test/", accept_statuses="all")
    assert decode_request(None, None, encode_request(everything)).accept_statuses == "all"
    plain = Request("http://a.test/")
    assert (plain.retries, plain.redirects, plain.accept_statuses, plain.meta) == (
        0,
        0,
        frozenset(),
        {},
    )


@pytest.mark.parametrize(
    ("statuses", "named"),
    [("some", "'some'"), ([404, "500"], "'500'"), ([99], "99"), ([True], "True")],
)
def test_bad_accept_statuses_are_refused_naming_the_request(statuses: Any, named: str) -> None:
    with pytest.raises(ValueError, match=rf"accept_statuses of http://a\.test/x .*{named}"):
        Request("http://a.test/x", accept_statuses=statuses)


async def test_the_fields_steer_the_engine() -> None:
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target.startswith("/busy"):
            return Reply(500, [], b"busy")
        if seen.target == "/moved":
            return Reply(302, [("Location", "/elsewhere")], b"")
        if seen.target == "/post" and hits["/post"] == 1:
            return Reply(500, [], b"busy")
        if seen.target in ("/post", "/elsewhere"):
            return Reply(200, HTML, b"<title>t</title>")
        return Reply(int(seen.target.rsplit("/", 1)[1]), [], b"")

    async with serve_h11(site) as server:
        url = server.url

        class Steered(Spider):
            name = "steered"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/busy/1", dont_retry=True)
                yield Request(url + "/busy/2")
                yield Request(url + "/moved", dont_redirect=True)
                yield Request(url + "/s/404", accept_statuses=[404])
                yield Request(url + "/s/410", accept_statuses=[404])
                yield Request(url + "/s/418", accept_statuses="all")
                yield Request(url + "/post", method="POST", body=b"x", retry_any_method=True)

            def parse(self, response: Response) -> dict[str, Any]:
                return {"path": response.url.path, "status": response.status_code}

        stats, items = await run(Steered, settings("", retry_times=1, obey_robots=False))
    assert sorted((i["path"], i["status"]) for i in items) == [
        ("/moved", 302),
        ("/post", 200),
        ("/s/404", 404),
        ("/s/418", 418),
    ]
    assert (hits["/busy/1"], hits["/busy/2"], hits["/post"], hits["/elsewhere"]) == (1, 2, 2, 0)
    assert stats.errors["http_410"] == 1 and stats.errors["http_500"] == 2


async def test_old_meta_keys_are_not_read_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hits: Counter[str] = Counter()

    def site(seen: Seen) -> Reply:
        hits[seen.target] += 1
        if seen.target == "/":
            links = "".join(f'<a href="/busy/{n}">b</a>' for n in range(5))
            return Reply(200, HTML, links.encode())
        return Reply(500, [], b"busy")

    async with serve_h11(site) as server:
        url = server.url

        class Old(Spider):
            name = "old"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/", meta={"dont_retry": True, "k": 1})

            def parse(self, response: Response) -> Iterator[Request]:
                yield from response.follow_all(
                    meta={"dont_retry": True, "handle_httpstatus_all": True, "k": 2}
                )

        with caplog.at_level(logging.WARNING, logger="crawler.engine"):
            stats, items = await run(Old, settings("", retry_times=1, obey_robots=False))
    # Not read: the 500s were retried and failed instead of reaching the callback.
    assert items == [] and stats.retries == 5 and stats.failed == 5
    assert all(hits[f"/busy/{n}"] == 2 for n in range(5))
    moved = [r.getMessage() for r in caplog.records if "not read by" in r.getMessage()]
    assert len(moved) == 2
    assert "'dont_retry'" in moved[0] and "dont_retry=True" in moved[0]
    assert "'handle_httpstatus_all'" in moved[1] and 'accept_statuses="all"' in moved[1]


async def test_scrapy_meta_keys_are_reported_once_each_with_what_to_use(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Scrapy's meta keys mean nothing here: one warning per key and crawl, however many
    requests carry it, naming the keyword, setting or session to use, or "none yet"."""

    def site(seen: Seen) -> Reply:
        if seen.target == "/":
            links = "".join(f'<a href="/p/{n}">p</a>' for n in range(4))
            return Reply(200, HTML, links.encode())
        return Reply(200, HTML, b"leaf")

    scrapy_meta = {
        "proxy": "http://127.0.0.1:1",
        "cookiejar": 1,
        "download_timeout": 5,
        "max_retry_times": 1,
        "dont_obey_robotstxt": True,
    }
    async with serve_h11(site) as server:
        url = server.url

        class Scrapyish(Spider):
            name = "scrapyish"

            def start_requests(self) -> Iterator[Request]:
                yield Request(url + "/", meta={"proxy": "http://127.0.0.1:1"})

            def parse(self, response: Response) -> Iterator[Any]:
                if str(response.url).endswith("/"):
                    yield from response.follow_all(meta=scrapy_meta)
                else:
                    yield {"meta": dict(response.meta)}

        with caplog.at_level(logging.WARNING, logger="crawler.engine"):
            _stats, items = await run(Scrapyish, settings("", obey_robots=False))
    # Kept as plain meta, and the crawl went straight to the server regardless.
    assert len(items) == 4 and all(item["meta"] == scrapy_meta for item in items)
    warned = {
        r.getMessage().split("meta key ")[1].split(" ")[0]: r.getMessage()
        for r in caplog.records
        if "not read by the engine" in r.getMessage()
    }
    assert len(warned) == len([r for r in caplog.records if "not read by" in r.getMessage()])
    assert set(warned) == {f"{key!r}" for key in scrapy_meta}
    assert "Request(..., proxy=" in warned["'proxy'"]
    assert "use Request(..., session=NAME)" in warned["'cookiejar'"]
    assert "use the download_timeout setting" in warned["'download_timeout'"]
    assert "use the retry_times setting" in warned["'max_retry_times'"]
    assert "obey_robots" in warned["'dont_obey_robotstxt'"]
    assert f"first seen on {url}/" in warned["'proxy'"]
