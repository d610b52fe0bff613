"""Every field of a crawl Request survives the job store's encoding.

A field the encoder does not know is silently lost when a durable or shared crawl
stores the request (it happened once, to ``cookies``). This test lists a value for
every slot of ``Request``: a new slot fails it until it has a value here and the
encoder stores it.
"""

from __future__ import annotations

from typing import Any

from crawler import Request
from crawler.frontier.sqlite import decode_request, encode_request

# A value for every slot, none of them the default.
NON_DEFAULT: dict[str, Any] = {
    "url": "http://example.test/p?q=1",
    "callback": "parse_item",
    "errback": "on_error",
    "method": "POST",
    "headers": {"X-Token": "t"},
    "body": b"a=1",
    "priority": 7,
    "meta": {"k": [1, 2]},
    "dont_filter": True,
    "session": "admin",
    "depth": 3,
    "dont_retry": True,
    "dont_redirect": True,
    "accept_statuses": frozenset({404, 410}),
    "retry_any_method": True,
    "cb_kwargs": {"page": 2},
    "proxy": "http://proxy.test:3128",
    "cookies": {"sid": "abc"},
    "retries": 2,
    "redirects": 1,
    "cross_origin_redirect": True,
}

_SET_AFTER = ("retries", "redirects", "cross_origin_redirect")


def _request() -> Request:
    args = {k: v for k, v in NON_DEFAULT.items() if k not in ("url", *_SET_AFTER)}
    request = Request(NON_DEFAULT["url"], **args)
    for name in _SET_AFTER:
        setattr(request, name, NON_DEFAULT[name])
    return request


def _fields() -> list[str]:
    """The request's fields, one per slot (``_meta`` is the slot behind ``meta``)."""
    return sorted(name.lstrip("_") for name in Request.__slots__)


def test_every_slot_of_request_has_a_value_here() -> None:
    assert _fields() == sorted(NON_DEFAULT), (
        "a Request slot was added or removed: give it a non-default value in NON_DEFAULT "
        "and make crawler/frontier/sqlite.py's encode_request store it"
    )


def test_every_field_survives_encoding() -> None:
    request = _request()
    back = decode_request("parse_item", "on_error", encode_request(request))
    for name in _fields():
        assert getattr(back, name) == getattr(request, name), name
