"""The local side of the shared frontier: what it keeps for the page being handled."""

from __future__ import annotations

from crawler import Request
from crawler.distributed import RedisFrontier
from crawler.distributed._frontier import PAGE, PageOutcome, decode_stored
from crawler.frontier._fingerprint import request_fingerprint


def test_requests_and_items_of_a_page_are_kept_with_it_until_done() -> None:
    frontier = RedisFrontier()
    frontier.add_leased([b"0001", b"a.test\n0\n\n\n" + _data("http://a.test/")])
    page = frontier.pop("a.test")
    assert page is not None and frontier.pop("a.test") is None
    outcome = PageOutcome()
    token = PAGE.set(outcome)
    try:
        assert frontier.add_seen("GET", "http://a.test/x")
        assert not frontier.add_seen("GET", "http://a.test/x")  # known here: no round trip
        frontier.push(Request("http://a.test/x"), "a.test")
        frontier.add_item('{"n": 1}')
        frontier.done(page)
    finally:
        PAGE.reset(token)
    ((fingerprint, stored),) = outcome.children
    assert fingerprint == request_fingerprint("GET", "http://a.test/x")
    assert decode_stored(stored)[1].url == "http://a.test/x"
    assert outcome.items == ['{"n": 1}']
    assert frontier.commits == [(b"0001", outcome)]
    assert not frontier.loose


def test_a_dont_filter_request_does_not_take_the_fingerprint_of_another_body() -> None:
    frontier = RedisFrontier()
    outcome = PageOutcome()
    token = PAGE.set(outcome)
    try:
        assert frontier.add_seen("POST", "http://a.test/form", b"q=1")
        frontier.push(Request("http://a.test/form", method="POST", body=b"q=1"), "a.test")
        assert frontier.add_seen("POST", "http://a.test/form", b"q=2")
        # dropped by a later filter: then a dont_filter POST of another body is pushed
        other = Request("http://a.test/form", method="POST", body=b"q=3", dont_filter=True)
        frontier.push(other, "a.test")
    finally:
        PAGE.reset(token)
    assert [fp for fp, _ in outcome.children] == [
        request_fingerprint("POST", "http://a.test/form", b"q=1"),
        b"",  # not deduplicated, as dont_filter asks
    ]


def test_a_dont_filter_request_of_the_same_url_as_one_dropped_is_not_deduplicated() -> None:
    frontier = RedisFrontier()
    outcome = PageOutcome()
    token = PAGE.set(outcome)
    try:
        # seen, then dropped by a later filter (offsite, say): never pushed...
        assert frontier.add_seen("GET", "http://b.test/page")
        # ...then the spider asks for that very URL with dont_filter
        frontier.push(Request("http://b.test/page", dont_filter=True), "b.test")
    finally:
        PAGE.reset(token)
    assert [fp for fp, _ in outcome.children] == [b""]


def test_start_requests_are_pushed_loose_and_always_deduplicated() -> None:
    frontier = RedisFrontier()
    frontier.push(Request("http://a.test/", dont_filter=True), "a.test")
    assert [fp for fp, _ in frontier.loose] == [request_fingerprint("GET", "http://a.test/")]
    assert len(frontier) == 1  # not finished: the crawl is not over for the scheduler


def _data(url: str) -> bytes:
    from crawler.frontier.sqlite import encode_request

    return encode_request(Request(url)).encode()
