"""The selector API against parsel's: the same expressions on the same documents.

Every case runs once with parsel (Scrapy's selectors) and once with ours, on
the demo site's pages and on hand-written edge documents, and the results must
be equal: get, getall, re, re_first, attrib, defaults and chained selections,
for CSS and XPath. Where ours differs on purpose (an element's serialized
HTML), the difference is normalised and said so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import parsel
import pytest
from lxml import html as lxml_html
from selectolax.lexbor import SelectolaxError

from crawler import Request, Response, Selector, SelectorError, SelectorList
from crawler.demo import _templates as t
from crawler.demo._content import AUTHORS, FAVOURITE_IDS, QUOTES, QUOTES_BY_TAG, page_count
from crawler.http import Request as HTTPRequest
from crawler.http import Response as HTTPResponse

DEMO = {
    "home": t.quotes_page(
        QUOTES[:10],
        page=1,
        pages=page_count(len(QUOTES)),
        tag=None,
        user=None,
        favourites=FAVOURITE_IDS,
    ),
    "last": t.quotes_page(
        QUOTES[-3:],
        page=page_count(len(QUOTES)),
        pages=page_count(len(QUOTES)),
        tag=None,
        user="demo",
        favourites=FAVOURITE_IDS,
    ),
    "tag": t.quotes_page(
        QUOTES_BY_TAG["hope"][:10], page=1, pages=2, tag="hope", user=None, favourites=FAVOURITE_IDS
    ),
    "author": t.author_page(AUTHORS[0], None),
    "login": t.login_page("tok&en", "Wrong password", None),
}

EDGE = {
    "nested": (
        "<html><head><title> Nested &amp; mixed </title></head><body>"
        "<div id='outer' class='box'>before <p>one <b>bold <i>deep</i></b> after</p>"
        "<div class='box' data-x>inner <span>s1</span>tail</div> end</div>"
        "<ul><li><a href='/a?x=1&amp;y=2'>A &lt;1&gt;</a></li><li><a href='b' title=''>B</a></li>"
        "<li><a>no href</a></li></ul><!-- a comment --><p>price: 12.50 EUR, 3 left</p>"
        "<p class='ent'>caf&eacute; &#233; &#xE9; &nbsp;x</p></body></html>"
    ),
    "table": (
        "<html><body><table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>"
        "<select name=s><option value=a selected>A</option><option>B</option></select>"
        "<input type=checkbox checked name=c></body></html>"
    ),
    "empty": "<html><body></body></html>",
}
DOCS = {**DEMO, **EDGE}

CSS = [
    "title::text",
    "div.quote span.text::text",
    "small.author::text",
    "div.tags a.tag::text",
    "li.next a::attr(href)",
    "li.previous a::attr(href)",
    "a::attr(href)",
    "a::attr(title)",
    "meta::attr(content)",
    "div.quote ::text",
    "div.quote *::text",
    "p::text",
    "p *::text",
    "div.box::text",
    "div.box ::text",
    "div::attr(data-x)",
    "a.tag::attr(href), small.author::text",
    "h1 a::text, footer a::text",
    "li a::text, li a::attr(href)",
    "input::attr(name)",
    "input[type=hidden]::attr(value)",
    "option::attr(value)",
    "td::text",
    "span.author-born-date::text",
    "div.author-description::text",
    "p.error::text",
    "nothing::text",
    "p.ent::text",
    "ul > li > a::text",
    "li:nth-child(2) a::text",
    "a[href^='/author/']::attr(href)",
    "div ::attr(class)",
    "div.quote *::attr(href)",
    "span.text::text, div ::attr(id)",
    "li, li a::text",
    "select ::attr(selected)",
]

XPATH = [
    "//title/text()",
    "//div[@class='quote']/span[@class='text']/text()",
    "//a/@href",
    "//li[@class='next']/a/@href",
    "count(//div[@class='quote'])",
    "boolean(//form)",
    "string(//title)",
    "normalize-space(//h3)",
    "//small[@class='author']/text()",
    "//div[contains(@class, 'tags')]/a/text()",
    "//input/@name",
    "//p//text()",
    "//td/text()",
    "//a[re:test(@href, '^/tag/')]/@href",
    "//*[@id='outer']/text()",
    "//nothing/text()",
]

REGEXES = [r"\w+", r"(\w+) (\w+)", r"(?P<extract>\d+)[.,]?", r"[^\s]+", r"&\w+;|\d+"]


def ours(doc: str) -> Selector:
    return Selector(DOCS[doc])


def theirs(doc: str) -> parsel.Selector:
    return parsel.Selector(text=DOCS[doc])


def both(doc: str, run: Callable[[Any], Any]) -> tuple[Any, Any]:
    return run(ours(doc)), run(theirs(doc))


def html_equal(a: str, b: str) -> bool:
    """Two serializations of one element: equal once both are parsed again.

    lexbor writes ``checked=""`` where lxml writes ``checked``, and entities
    differently; the elements, attributes and text must still be the same.
    """

    def canon(fragment: str) -> list[tuple[Any, ...]]:
        tree = lxml_html.fragment_fromstring(fragment, create_parent="x")
        return [
            (
                el.tag,
                sorted((k, v or k) for k, v in el.attrib.items()),
                (el.text or "").strip(),
                (el.tail or "").strip(),
            )
            for el in tree.iter()
        ]

    return canon(a) == canon(b)


# -- CSS ---------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("query", CSS)
def test_css_strings_match_parsel(doc: str, query: str) -> None:
    mine, reference = both(doc, lambda s: s.css(query))
    assert mine.getall() == reference.getall()
    assert mine.get() == reference.get()
    assert mine.get(default="none") == reference.get(default="none")
    assert len(mine) == len(reference)
    assert bool(mine) == bool(reference)
    for regex in REGEXES:
        assert mine.re(regex) == reference.re(regex)
        assert mine.re_first(regex, default="none") == reference.re_first(regex, default="none")


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("query", ["::text", "*::text", "body ::text"])
def test_all_the_text_matches_parsel_but_for_whitespace_around_head(doc: str, query: str) -> None:
    # The HTML5 parser drops whitespace between <html>, <head> and <body> that
    # libxml2 keeps as text nodes; every other text node is the same.
    mine, reference = both(doc, lambda s: s.css(query).getall())
    assert [x for x in mine if x.strip()] == [x for x in reference if x.strip()]
    assert "".join(mine).split() == "".join(reference).split()


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize(
    "query", ["div.quote", "a", "div.tags a.tag", "input", "option", "td", "div.box", "p", "li"]
)
def test_css_elements_match_parsel(doc: str, query: str) -> None:
    mine, reference = both(doc, lambda s: s.css(query))
    assert len(mine) == len(reference)
    assert [s.attrib for s in mine] == [s.attrib for s in reference]
    assert mine.attrib == reference.attrib
    for a, b in zip(mine.getall(), reference.getall(), strict=True):
        assert html_equal(a, b), (a, b)


@pytest.mark.parametrize("doc", DEMO)
def test_the_tutorial_chain_matches_parsel(doc: str) -> None:
    def scrape(sel: Any) -> list[dict[str, Any]]:
        return [
            {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("div.tags a.tag::text").getall(),
                "link": quote.css("a::attr(href)").getall(),
                "self": quote.css("div.quote::attr(class)").get(),
                "missing": quote.css("nothing::text").get(default=""),
                "xpath": quote.xpath(".//span[@class='text']/text()").get(),
                "up": quote.xpath("../@class").get(),
                "absolute": len(quote.xpath("//div[@class='quote']")),
                "words": quote.css("span.text::text").re(r"\w+")[:3],
            }
            for quote in sel.css("div.quote")
        ]

    mine, reference = both(doc, scrape)
    assert mine == reference
    mine_next, reference_next = both(doc, lambda s: s.css("li.next a::attr(href)").get())
    assert mine_next == reference_next


@pytest.mark.parametrize("doc", DOCS)
def test_list_chaining_matches_parsel(doc: str) -> None:
    def run(sel: Any) -> list[Any]:
        return [
            sel.css("div.quote").css("span::text").getall(),
            sel.css("div").css("a::attr(href)").getall(),
            sel.css("ul").xpath("./li/a/text()").getall(),
            sel.xpath("//div").css("a::text").getall(),
            sel.xpath("//body").xpath(".//p/text()").getall(),
            sel.css("div.quote")[1:3].css("small::text").getall(),
            sel.css("a::attr(href)").css("a").getall(),
            sel.css("a::attr(href)").xpath(".").getall(),
            sel.css("a::attr(href)").xpath("..").getall(),
            sel.xpath("//a/@href").css("*").getall(),
            sel.xpath("//nothing").css("a").getall(),
        ]

    mine, reference = both(doc, run)
    assert mine == reference


# -- XPath -------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("query", XPATH)
def test_xpath_matches_parsel(doc: str, query: str) -> None:
    mine, reference = both(doc, lambda s: s.xpath(query))
    assert mine.getall() == reference.getall()
    assert mine.get(default="none") == reference.get(default="none")
    for regex in REGEXES:
        assert mine.re(regex) == reference.re(regex)
        assert mine.re_first(regex) == reference.re_first(regex)


@pytest.mark.parametrize("doc", DOCS)
def test_xpath_elements_match_parsel(doc: str) -> None:
    def run(sel: Any) -> list[Any]:
        found = sel.xpath("//div | //a | //input")
        return [found.getall(), [s.attrib for s in found], found.attrib]

    mine, reference = both(doc, run)
    assert mine == reference  # both serialized by lxml: identical


def test_xpath_variables_and_namespaces_match_parsel() -> None:
    def run(sel: Any) -> list[Any]:
        return [
            sel.xpath("//a[@href=$href]/text()", href="/author/Albert-Einstein").getall(),
            sel.xpath("//x:a/@href", namespaces={"x": "urn:none"}).getall(),
            sel.xpath("//div[@class=$c]", c="quote").css("small::text").get(),
        ]

    mine, reference = both("home", run)
    assert mine == reference


def test_element_re_runs_on_the_outer_html() -> None:
    mine, reference = both("home", lambda s: s.css("div.quote").re(r'href="([^"]+)"'))
    assert mine == reference
    assert "/author/" + QUOTES[0].author.slug in mine


def test_element_re_keeps_amp_as_parsel_does() -> None:
    mine, reference = both("nested", lambda s: s.css("ul").re(r'href="([^"]+)"'))
    assert mine == reference == ["/a?x=1&amp;y=2", "b"]


def test_re_keeps_lt_and_amp_entities_as_parsel_does() -> None:
    sel = Selector("<p>a &amp; b &lt; c &gt; d &eacute; &#233; &bogus;</p>")
    reference = parsel.Selector(text="<p>a &amp; b &lt; c &gt; d &eacute; &#233; &bogus;</p>")
    mine, theirs_ = sel.css("p").re(r"<p>(.*)</p>"), reference.css("p").re(r"<p>(.*)</p>")
    assert mine == theirs_
    assert sel.css("p").re(r"<p>(.*)</p>", replace_entities=False) == reference.css("p").re(
        r"<p>(.*)</p>", replace_entities=False
    )


def test_selector_list_is_a_list() -> None:
    found = ours("home").css("div.quote")
    assert isinstance(found, SelectorList)
    assert isinstance(found, list)
    assert isinstance(found[0], Selector)
    assert isinstance(found[:2], SelectorList)
    assert len(found[:2]) == 2
    assert [s.get() for s in found] == found.getall()
    empty = ours("home").css("nothing")
    assert not empty
    assert empty.get() is None
    assert empty.attrib == {}


def test_text_selectors_are_false_when_empty_as_in_parsel() -> None:
    mine = Selector("<p></p><p>x</p>").xpath("string(//p)")
    reference = parsel.Selector(text="<p></p><p>x</p>").xpath("string(//p)")
    assert bool(mine[0]) == bool(reference[0]) is False


def test_selectors_of_strings() -> None:
    sel = ours("home").css("small.author::text")[0]
    assert sel.getall() == [QUOTES[0].author.name]
    assert sel.text() == QUOTES[0].author.name
    assert Selector(" x ").css("body::text")[0].text(strip=True) == "x"
    assert sel.attrib == {}
    assert sel.css("small") == []
    assert sel.xpath("..") == []
    assert sel.xpath(".").get() == QUOTES[0].author.name
    assert repr(sel) == f"<Selector data={QUOTES[0].author.name!r}>"
    assert repr(ours("home").css("div.quote")[0]).endswith("...'>")
    with pytest.raises(SelectorError, match="is a string, not an element"):
        sel.node  # noqa: B018


def test_css_first_on_a_selector() -> None:
    quote = ours("home").css("div.quote")[0]
    assert quote.css_first("a.tag::text").get() == QUOTES[0].tags[0]
    assert quote.css_first("span.text", strict=True).text() == QUOTES[0].text
    with pytest.raises(SelectorError, match=r"matched [2-9] elements, expected one"):
        ours("home").css("div.quote")[0].css_first("a.tag", strict=True)
    assert quote.css_first("nothing::text", default="d") == "d"


def test_the_other_tree_is_found_by_position() -> None:
    doc = ours("nested")
    inner = doc.css("div.box")[1]
    assert inner.xpath("./span/text()").get() == "s1"
    assert inner.xpath("../@id").get() == "outer"
    found = doc.xpath("//span")[0]
    assert found.css("span::text").get() == "s1"
    assert found.text() == "s1"
    assert found.attributes == {}
    assert found.node.tag == "span"


def test_rows_are_found_across_the_implied_tbody() -> None:
    # lexbor, an HTML5 parser, puts rows in a <tbody>; libxml2 leaves them in the table.
    markup = "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>"
    doc, reference = Selector(markup), parsel.Selector(text=markup)
    assert doc.css("td")[2].xpath("../../tr[1]/td/text()").getall() == ["1", "2"]
    assert reference.css("td")[2].xpath("../../tr[1]/td/text()").getall() == ["1", "2"]
    assert doc.xpath("//tr")[1].css("td::text").getall() == ["3"]
    assert doc.xpath("//table/tr[2]/td")[0].css_first("td").text() == "3"


def test_where_the_trees_differ_the_error_says_so() -> None:
    # A second implied <tbody> after a <tfoot>: no safe way to line the rows up.
    doc = Selector(
        "<table><tr><td>a</td></tr><tfoot><tr><td>f</td></tr></tfoot><tr><td>b</td></tr></table>"
    )
    with pytest.raises(SelectorError, match=r"cannot run xpath\(\) from <tbody> found by css\(\)"):
        doc.css("tbody")[1].xpath("..")
    assert doc.xpath("//td/text()").getall() == ["a", "f", "b"]  # from the document it works
    with pytest.raises(SelectorError, match=r"cannot run css\(\) from <tr> found by xpath\(\)"):
        doc.xpath("//table/tr")[0].css("td")


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("p::before", "only the pseudo-elements"),
        ("p::text span", "only the pseudo-elements"),
        ("p[", "invalid CSS selector 'p\\['"),
        ("p::text,,a::text", "empty selector"),
    ],
)
def test_bad_css_is_named(query: str, why: str) -> None:
    with pytest.raises(SelectorError, match=why):
        ours("home").css(query)


def test_bad_xpath_is_named() -> None:
    with pytest.raises(SelectorError, match=re.escape("invalid XPath '//a[")):
        ours("home").xpath("//a[")
    assert issubclass(SelectorError, ValueError)  # as parsel's ValueError for bad XPath


def test_bad_css_on_the_response_is_named_and_still_a_selectolax_error() -> None:
    response = response_of("home")
    for call in (response.css, response.css_first, response.css("div.quote")[0].css_first):
        with pytest.raises(SelectorError, match=re.escape("invalid CSS selector 'p['")):
            call("p[")
        with pytest.raises(SelectolaxError):
            call("p[")


# -- on the Response ------------------------------------------------------------------


def response_of(doc: str, url: str = "http://quotes.test/page/1/") -> Response:
    http = HTTPResponse(200, html=DOCS[doc], request=HTTPRequest("GET", url))
    return Response.from_http(http, Request(url))


@pytest.mark.parametrize("doc", DOCS)
def test_response_selectors_match_parsel(doc: str) -> None:
    response = response_of(doc)
    reference = parsel.Selector(text=DOCS[doc])
    for query in CSS:
        assert response.css(query).getall() == reference.css(query).getall(), query
    for query in XPATH:
        assert response.xpath(query).getall() == reference.xpath(query).getall(), query


def test_response_parses_for_xpath_once_and_only_when_asked() -> None:
    response = response_of("home")
    response.css("div.quote span.text::text").getall()
    assert response._doc is not None
    assert response._doc._lxml is None  # CSS alone never builds the lxml tree
    response.xpath("//title")
    root = response._doc._lxml
    assert root is not None
    response.xpath("//a")
    response.css("div.quote")[0].xpath(".//a")
    assert response._doc._lxml is root


def test_xpath_alone_never_builds_the_lexbor_tree() -> None:
    response = response_of("home")
    assert response.xpath("//small[@class='author']/text()").get() == QUOTES[0].author.name
    assert response._tree is None
    # ...until a css() query, from the response or from an XPath result, needs it.
    assert response.xpath("//div[@class='quote']")[0].css("small::text").get() == (
        QUOTES[0].author.name
    )
    assert response._tree is not None


def test_old_node_api_still_works_on_css_results() -> None:
    response = response_of("home")
    quote = response.css("div.quote")[0]
    assert quote.css_first("span.text").text() == QUOTES[0].text
    assert [tag.text(strip=True) for tag in quote.css("div.tags a.tag")] == list(QUOTES[0].tags)
    assert quote.attributes["class"] == "quote"
    assert quote.tag == "div"
    assert quote.html == quote.get()
    assert quote.css_first("nothing") is None
    assert quote.css_first("nothing", default="d") == "d"
    assert quote.parent.tag == "div"  # any other selectolax node member
    assert response.css_first("small.author").text() == QUOTES[0].author.name
    assert response.css_first("small.author::text").get() == QUOTES[0].author.name
    assert response.css_first("nothing::text", "d") == "d"


def test_follow_takes_selectors() -> None:
    response = response_of("home")
    by_attr = response.follow(response.css("li.next a::attr(href)")[0])
    by_element = response.follow(response.css("li.next a")[0])
    by_string = response.follow(response.css("li.next a::attr(href)").get() or "")
    assert by_attr.url == by_element.url == by_string.url == "http://quotes.test/page/2/"
    authors = response.follow_all(response.css("div.quote a::attr(href)"))
    assert [r.url for r in authors][:1] == [f"http://quotes.test/author/{QUOTES[0].author.slug}"]
    by_xpath = response.follow_all(xpath="//li[@class='next']/a/@href")
    assert [r.url for r in by_xpath] == ["http://quotes.test/page/2/"]
    by_xpath_element = response.follow_all(xpath="//li[@class='next']/a")
    assert [r.url for r in by_xpath_element] == ["http://quotes.test/page/2/"]


def test_an_element_two_selectors_of_a_list_match_comes_once() -> None:
    # lexbor alone returns such an element once per selector that matches it.
    response = response_of("home")
    reference = parsel.Selector(text=DOCS["home"])
    mine = response.css("a.tag, div.tags a")
    assert len(mine) == len(reference.css("a.tag, div.tags a")) == len(response.css("a.tag"))
    assert [s.text() for s in mine] == reference.css("a.tag, div.tags a").css("::text").getall()
