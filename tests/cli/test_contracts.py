"""Reading spider contracts from docstrings, and judging a callback's output by them.

Running them against a site, through the real command, is in test_shell_check_e2e.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from crawler import Request, Spider
from crawler.cli._contracts import Callback, ContractError, contracted_callbacks


class Quotes(Spider):
    name = "quotes"

    def parse(self, response: Any) -> None:
        """A page of quotes.

        @url /page/1/
        @meta {"page": 1}
        @cb_kwargs {"tag": "love"}
        @returns items 1 10
        @returns request 1
        @scrapes text author
        """

    def parse_author(self, response: Any) -> None:
        """One author.

        @url http://quotes.test/author/x
        @returns items 1 1
        """

    def helper(self) -> None:
        """Mentions @property in prose, and has no @url: not a contract."""


def only(cls: type[Spider]) -> Callback:
    [callback] = contracted_callbacks(cls)
    return callback


def test_contracts_are_read_in_source_order_with_their_arguments() -> None:
    parse, author = contracted_callbacks(Quotes)
    assert (parse.title, parse.url) == ("quotes.parse", "/page/1/")
    assert parse.meta == {"page": 1}
    assert parse.cb_kwargs == {"tag": "love"}
    assert [c.text for c in parse.checks] == [
        "@returns items 1 10",
        "@returns request 1",
        "@scrapes text author",
    ]
    assert (author.name, author.url, author.meta, author.cb_kwargs) == (
        "parse_author",
        "http://quotes.test/author/x",
        {},
        {},
    )


def test_returns_says_what_was_expected_and_what_came() -> None:
    parse = contracted_callbacks(Quotes)[0]
    items_1_to_10, requests_at_least_1, _ = parse.checks
    assert items_1_to_10.verdict([{}] * 3, []) is None
    assert items_1_to_10.verdict([], []) == "expected 1 to 10 items, got 0"
    assert items_1_to_10.verdict([{}] * 11, []) == "expected 1 to 10 items, got 11"
    assert requests_at_least_1.verdict([], [Request("http://a.test/")] * 5) is None
    assert requests_at_least_1.verdict([{}], []) == "expected at least 1 requests, got 0"
    exactly = contracted_callbacks(Quotes)[1].checks[0]
    assert exactly.verdict([{}, {}], []) == "expected exactly 1 items, got 2"


@dataclasses.dataclass
class Quote:
    text: str
    author: str


def test_scrapes_names_the_item_and_the_fields_it_lacks() -> None:
    scrapes = contracted_callbacks(Quotes)[0].checks[2]
    good = {"text": "t", "author": "a"}
    assert scrapes.verdict([good, Quote("t", "a")], []) is None
    assert scrapes.verdict([good, {"text": "t", "url": "u"}], []) == (
        "expected fields text, author in every item; item 2 of 2 lacks author (it has: text, url)"
    )
    # Items of other kinds: their fields are named as well as can be.
    assert scrapes.verdict([Quote("t", "a"), object()], []) == (
        "expected fields text, author in every item; item 2 of 2 lacks text, author "
        "(it has: no fields)"
    )
    # No items at all is no pass: the selector behind the fields matched nothing.
    assert scrapes.verdict([], []) == "expected items with fields text, author, got no items"


def _spider_with(doc: str) -> type[Spider]:
    def parse(self: Spider, response: Any) -> None:
        pass

    parse.__doc__ = doc
    return type("Broken", (Spider,), {"name": "broken", "parse": parse})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("@url /\n@return items 1", "unknown contract '@return items 1' (known: @cb_kwargs,"),
        ("@url /\n@returns items", "'@returns items' should read '@returns items|requests MIN"),
        ("@url /\n@returns pages 1", "should read '@returns items|requests MIN [MAX]'"),
        ("@url /\n@returns items x", "should read"),
        ("@url /\n@returns items 3 1", "bounds must be 0 <= MIN <= MAX"),
        ("@url /\n@scrapes", "'@scrapes' names no field"),
        ("@url", "'@url' needs a value"),
        ("@url / /x", "one URL (or path) expected"),
        ('@url /\n@meta {"a": ', "'@meta {\"a\":' is not valid JSON"),
        ("@url /\n@cb_kwargs [1]", "'@cb_kwargs [1]' must be a JSON object, got list"),
        ("@returns items 1", "contracts without @url"),
    ],
)
def test_a_bad_contract_names_spider_callback_and_line(doc: str, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        contracted_callbacks(_spider_with(doc))
    assert str(caught.value).startswith("spider broken, callback parse: ")
    assert message in str(caught.value)


def test_a_docstring_without_contracts_is_left_alone() -> None:
    assert contracted_callbacks(_spider_with("Mentions @decorators in prose.")) == []
    assert contracted_callbacks(Spider) == []
