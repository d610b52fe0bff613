"""Crawling by rules: ``CrawlSpider`` and ``Rule``, with Scrapy's meaning.

A spider that only says which links lead where (listings are followed, product
pages go to ``parse_product``) need not write the following itself::

    class Books(CrawlSpider):
        rules = (
            Rule(LinkExtractor(allow=r"/catalogue/page-\\d+"), follow=True),
            Rule(LinkExtractor(restrict_css="article h3"), callback="parse_book"),
        )

The requests it makes are ordinary ones, so deduplication, ``depth_limit`` and
``--job`` resume treat them as any other: each carries the index of the rule
that made it in ``meta["rule"]`` (plain data a job can store) and goes to one
callback of this class, ``_rule_response``, which finds the rule again. A spider
without rules never reaches this module: nothing here sits on the engine's path.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .linkextractor import Link, LinkExtractor, page_resolver
from .request import Request
from .response import Response
from .spider import Spider

__all__ = ["CrawlSpider", "Rule"]

Callback = Callable[..., Any] | str
# The callback every rule's requests name: stored in a job, so never renamed.
_RULE_CALLBACK = "_rule_response"
_RULE_ERRBACK = "_rule_failure"


class LinkSource(Protocol):
    """What a rule needs of its link extractor: Scrapy's one-method interface, so an
    extractor of one's own (not a LinkExtractor) works too."""

    def extract_links(self, response: Response) -> list[Link]: ...


Extract = Callable[[Response, Callable[[str], str | None] | None], list[Link]]


def _extract_of(source: LinkSource) -> Extract:
    """How a rule's links are found: a LinkExtractor as it is shares the page's resolver
    with the other rules; anything else is asked through ``extract_links``."""
    if isinstance(source, LinkExtractor) and (
        type(source).extract_links is LinkExtractor.extract_links
    ):
        return source._extract
    return lambda response, _resolve: list(source.extract_links(response))


class Rule:
    """Which links of a page to follow, and what to do with the pages they lead to.

    ``link_extractor`` picks the links (default: every link); ``callback`` (a method
    name or a callable) gets each page they lead to, with ``cb_kwargs``; ``follow``
    says whether the rules apply to those pages too, and defaults to True when there
    is no callback. ``process_links(links)`` may filter or change the links of a page,
    ``process_request(request, response)`` each request (None drops it);
    ``errback(request, failure)`` gets the requests that failed. Like callbacks, these
    may be given as method names.
    """

    __slots__ = (
        "callback",
        "cb_kwargs",
        "errback",
        "follow",
        "link_extractor",
        "process_links",
        "process_request",
    )

    def __init__(
        self,
        link_extractor: LinkSource | None = None,
        callback: Callback | None = None,
        cb_kwargs: Mapping[str, Any] | None = None,
        follow: bool | None = None,
        process_links: Callback | None = None,
        process_request: Callback | None = None,
        errback: Callback | None = None,
    ) -> None:
        self.link_extractor: LinkSource = (
            link_extractor if link_extractor is not None else LinkExtractor()
        )
        self.callback = callback
        self.cb_kwargs: dict[str, Any] = dict(cb_kwargs) if cb_kwargs else {}
        self.follow = follow if follow is not None else callback is None
        self.process_links = process_links
        self.process_request = process_request
        self.errback = errback

    def __repr__(self) -> str:
        return f"<Rule {self.link_extractor!r} callback={self.callback!r} follow={self.follow}>"


@dataclass(frozen=True, slots=True)
class _Bound:
    """A Rule with its names looked up on one spider, once, when the spider is made."""

    extract: Extract
    callback: Callable[..., Any] | None
    cb_kwargs: Mapping[str, Any]
    follow: bool
    process_links: Callable[[list[Link]], Iterable[Link]] | None
    process_request: Callable[[Request, Response], Request | None] | None
    errback: Callable[..., Any] | None


def _method(spider: Spider, value: Callback | None, role: str, index: int) -> Any:
    if value is None:
        return None
    name = getattr(value, "__name__", "")
    if inspect.isfunction(value) and getattr(type(spider), name, None) is value:
        # A method named in the class body before it was bound (callback=parse_item):
        # this spider's bound method, so it gets its self.
        return getattr(spider, name)
    if callable(value):
        return value
    if isinstance(value, str):
        found = getattr(spider, value, None)
        if found is not None and callable(found):
            return found
        raise AttributeError(
            f"{type(spider).__name__}.rules[{index}]: {role} {value!r} is not a method "
            f"of {type(spider).__name__}"
        )
    raise TypeError(
        f"{type(spider).__name__}.rules[{index}]: {role} must be a method name or a "
        f"callable, not {value!r}"
    )


def _bind(spider: Spider, rule: Rule, index: int) -> _Bound:
    if not isinstance(rule, Rule):
        raise TypeError(
            f"{type(spider).__name__}.rules[{index}] is {rule!r}, not a Rule(LinkExtractor(...))"
        )
    if not callable(getattr(rule.link_extractor, "extract_links", None)):
        raise TypeError(
            f"{type(spider).__name__}.rules[{index}]: {rule.link_extractor!r} has no "
            "extract_links(response) method"
        )
    return _Bound(
        _extract_of(rule.link_extractor),
        _method(spider, rule.callback, "callback", index),
        rule.cb_kwargs,
        rule.follow,
        _method(spider, rule.process_links, "process_links", index),
        _method(spider, rule.process_request, "process_request", index),
        _method(spider, rule.errback, "errback", index),
    )


def _is_many(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


async def _each(out: Any) -> AsyncIterator[Any]:
    """What a callback of any kind produced, one object at a time: the engine does the
    same for the callbacks it calls by name; a rule's are called from here."""
    if inspect.isawaitable(out):
        out = await out
    if out is None:
        return
    if isinstance(out, AsyncIterable):
        async for result in out:
            yield result
    elif isinstance(out, Request) or not _is_many(out):
        yield out
    else:
        for result in out:
            yield result


def _is_html(response: Response) -> bool:
    kind = response.headers.get("content-type")
    return kind is None or "html" in kind.lower()


class CrawlSpider(Spider):
    """A spider whose ``rules`` decide which links to follow and which callback gets them.

    For each page, the rules are tried in order and a link is taken by the first rule
    that extracts it. The start URLs' pages go to ``parse_start_url`` (which yields
    nothing by default) and then through the rules. ``parse`` is the rules engine:
    a subclass must not define it (name its callbacks otherwise).
    """

    rules: ClassVar[Iterable[Rule]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "parse" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} defines parse(), which CrawlSpider uses to apply its rules; "
                "name the callback otherwise (Rule(..., callback='parse_item')) or handle "
                "the start pages in parse_start_url()"
            )

    def __init__(self) -> None:
        super().__init__()
        self._bound_rules: tuple[_Bound, ...] = tuple(
            _bind(self, rule, index) for index, rule in enumerate(self.rules)
        )

    def parse(self, response: Response) -> AsyncIterator[Any]:
        """The start pages: ``parse_start_url``'s output, then the links the rules take."""
        return self._rules_output(response, self.parse_start_url, {}, follow=True)

    def parse_start_url(self, response: Response) -> Any:
        """What a start page yields besides the links the rules follow; nothing by default."""
        return ()

    def _rule_response(self, response: Response, **cb_kwargs: Any) -> AsyncIterator[Any]:
        """The callback of every request a rule made (the rule is in ``meta["rule"]``)."""
        rule = self._rule_of(response.meta, response.crawl_request.url)
        kwargs = {**rule.cb_kwargs, **cb_kwargs} if rule.cb_kwargs else cb_kwargs
        return self._rules_output(response, rule.callback, kwargs, follow=rule.follow)

    def _callback_names(self, called: list[str]) -> list[str]:
        """``called`` as a user reads it: the rules' callbacks in place of the one method
        every rule's request goes through (for the crawl's no-items warning)."""
        names = [name for name in called if name != _RULE_CALLBACK]
        if len(names) != len(called):
            for rule in self._bound_rules:
                name = getattr(rule.callback, "__name__", None)
                if name is not None and name not in names:
                    names.append(name)
        return names

    def _rule_failure(self, request: Request, failure: Exception) -> AsyncIterator[Any]:
        """The errback of requests whose rule has one."""
        errback = self._rule_of(request.meta, request.url).errback
        if errback is None:
            return _each(None)
        return _each(errback(request, failure))

    def _rule_of(self, meta: Mapping[str, Any], url: str) -> _Bound:
        index = meta.get("rule")
        rules = self._bound_rules
        if type(index) is not int or not 0 <= index < len(rules):
            raise ValueError(
                f"{type(self).__name__}: the request for {url} names rule {index!r}, but the "
                f"spider has {len(rules)} rules (were the rules changed while a job was paused?)"
            )
        return rules[index]

    async def _rules_output(
        self,
        response: Response,
        callback: Callable[..., Any] | None,
        cb_kwargs: Mapping[str, Any],
        *,
        follow: bool,
    ) -> AsyncIterator[Any]:
        if callback is not None:
            async for result in _each(callback(response, **cb_kwargs)):
                yield result
        if follow and self._bound_rules and _is_html(response):
            for request in self._requests_to_follow(response):
                yield request

    def _requests_to_follow(self, response: Response) -> Iterator[Request]:
        taken: set[str] = set()
        session = response.crawl_request.session
        unseen = response._unseen
        resolve = page_resolver(response)
        for index, rule in enumerate(self._bound_rules):
            links = [link for link in rule.extract(response, resolve) if link.url not in taken]
            if rule.process_links is not None:
                links = list(rule.process_links(links))
            for link in links:
                taken.add(link.url)
            if unseen is not None and rule.process_request is None:
                # Links the crawl already queued would only be dropped as duplicates
                # (and are counted as such): no Request is built for them.
                fresh = set(unseen([link.url for link in links]))
                links = [link for link in links if link.url in fresh]
            errback = _RULE_ERRBACK if rule.errback is not None else None
            for link in links:
                request = Request(
                    link.url,
                    callback=_RULE_CALLBACK,
                    errback=errback,
                    meta={"rule": index, "link_text": link.text},
                    session=session,
                )
                if rule.process_request is None:
                    yield request
                else:
                    processed = rule.process_request(request, response)
                    if processed is not None:
                        yield processed
