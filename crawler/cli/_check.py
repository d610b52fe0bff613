"""``crawl check``: run each contracted callback once on its ``@url`` and judge the output.

The pages are fetched by a crawl of the spider itself, whose start requests
are the ``@url``s: the spider's settings, login, sessions, retries and
redirects, and whatever else the crawl's fetching does with the project's
settings (with the development HTTP cache on, recorded pages are replayed
offline). Only what ``crawl parse`` also leaves out is left out: robots.txt
(a contract names its page), the job directory and the pipelines. The demo
site is started for a spider that serves it. Each request reaches a stand-in
callback that runs the contracted one and keeps what it yields, so nothing it
yields is crawled or exported.

Mistakes in the contracts themselves are usage errors (exit 2), found before
anything is fetched; a broken contract exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import trio

from ..http import HTTPStatusError
from ..request import Request
from ..settings import Settings
from ..spider import Spider
from ._contracts import Callback, ContractError, contracted_callbacks
from ._demo import SITE_URL_OPTION, start_demo_site, wants_demo_site
from ._inspect import EXIT_FAILED, _pointed_at, _status_line, project_settings
from ._main import CommandError, resolve_all
from ._spider_loader import load_spiders

__all__ = ["run_check"]


@dataclasses.dataclass
class _Tally:
    passed: int = 0
    failed: int = 0
    callbacks: int = 0

    def report(self, callback: Callback, text: str, problem: str | None) -> None:
        if problem is None:
            self.passed += 1
            print(f"  ok    {text}")
        else:
            self.failed += 1
            print(f"  FAIL  {text}: {callback.title}: {problem}")


def run_check(args: argparse.Namespace) -> int:
    """Check the contracts of the spiders named (all, without names); 1 if any broke."""
    sources, project = project_settings(args)
    loader = load_spiders(project.spider_modules, project.project_dir)
    names = args.names or loader.names()
    resolved = resolve_all(sources, loader, names) if names else {}
    try:
        found = {cls: contracted_callbacks(cls) for cls in resolved}
    except ContractError as exc:
        raise CommandError(str(exc)) from None
    plan = {cls: callbacks for cls, callbacks in found.items() if callbacks}
    if args.list:
        for callbacks in plan.values():
            for callback in callbacks:
                print(f"{callback.title}  {callback.url}")
        return 0
    for name in args.names:
        if loader.get(name) not in plan:
            print(
                f"spider {name} has no contracts (no callback docstring has @url)", file=sys.stderr
            )
    tally = _Tally()
    trio.run(_check_all, plan, resolved, tally)
    print(
        f"{tally.callbacks} callbacks, {tally.passed + tally.failed} contracts: "
        f"{tally.passed} passed, {tally.failed} failed"
    )
    return EXIT_FAILED if tally.failed else 0


async def _check_all(
    plan: dict[type[Spider], list[Callback]],
    resolved: dict[type[Spider], Settings],
    tally: _Tally,
) -> None:
    for cls, callbacks in plan.items():
        settings = _settings_for(cls, resolved[cls], callbacks)
        async with trio.open_nursery() as nursery:
            if wants_demo_site(cls, settings):
                [settings] = await start_demo_site(nursery, [(cls, settings)])
            outcomes, login_error = await _crawl(cls, settings, callbacks)
            nursery.cancel_scope.cancel()
        for index, callback in enumerate(callbacks):
            _judge(callback, _url(cls, settings, callback), outcomes.get(index, login_error), tally)


def _settings_for(cls: type[Spider], settings: Settings, callbacks: list[Callback]) -> Settings:
    """Pointed at the site of the first absolute ``@url``, as ``crawl parse URL`` is;
    without robots.txt, job directory or shared crawl, as ``crawl parse``: a check
    must not lease, commit or export anything of a crawl the project shares."""
    settings = dataclasses.replace(settings, obey_robots=False, job_dir="", frontier_url="")
    for callback in callbacks:
        if urlsplit(callback.url).scheme:
            return _pointed_at(cls, settings, callback.url)
    return settings


def _url(cls: type[Spider], settings: Settings, callback: Callback) -> str | None:
    """The ``@url`` made absolute: a path against ``site_url`` or the first start URL."""
    if urlsplit(callback.url).scheme:
        return callback.url
    base = settings.options.get(SITE_URL_OPTION) or next(iter(cls.start_urls), "")
    return urljoin(str(base), callback.url) if base else None


#: What one contracted callback gave: its items and requests, or why it did not run.
_Outcome = tuple[list[Any], list[Request]] | str


async def _crawl(
    cls: type[Spider], settings: Settings, callbacks: list[Callback]
) -> tuple[dict[int, _Outcome], str | None]:
    """Crawl the ``@url``s with the spider; each callback's outcome by its index, and the
    login's error if the spider could not log in."""
    from ..engine import Engine

    outcomes: dict[int, _Outcome] = {}
    checking = _checking_spider(cls, settings, callbacks, outcomes)
    async with Engine(settings) as engine:
        crawler = engine.crawler(checking, settings, pipelines=[])
        await crawler.run()
    error = crawler.logins.error
    return outcomes, (f"the spider could not log in: {error}" if error else None)


def _checking_spider(
    cls: type[Spider], settings: Settings, callbacks: list[Callback], outcomes: dict[int, _Outcome]
) -> type[Spider]:
    """``cls`` with the ``@url``s as its start requests, each to a stand-in callback (and
    errback) that keeps the outcome under the contract's index."""
    methods: dict[str, Any] = {}
    starts = []
    for index, callback in enumerate(callbacks):
        url = _url(cls, settings, callback)
        if url is None:
            outcomes[index] = (
                f"@url {callback.url} is a path, but the spider has neither a "
                f"{SITE_URL_OPTION} option set nor start_urls to resolve it against"
            )
            continue
        methods[f"_contract_{index}"] = _run_contracted(index, callback, outcomes)
        methods[f"_contract_{index}_failed"] = _record_failure(index, outcomes)
        starts.append(
            Request(
                url,
                callback=f"_contract_{index}",
                errback=f"_contract_{index}_failed",
                meta=callback.meta,
                cb_kwargs=callback.cb_kwargs,
                dont_filter=True,
            )
        )

    def start_requests(self: Spider) -> list[Request]:
        return starts

    methods["start_requests"] = start_requests
    return type(cls.__name__, (cls,), methods)


def _run_contracted(
    index: int, callback: Callback, outcomes: dict[int, _Outcome]
) -> Callable[..., Any]:
    async def run(self: Spider, response: Any, **kwargs: Any) -> None:
        from ..engine._callbacks import Callbacks
        from ..engine._stats import Stats

        items: list[Any] = []
        requests: list[Request] = []

        async def item(value: Any) -> None:
            items.append(value)

        stats = Stats(callback.spider.name)
        callbacks = Callbacks(
            self,
            callback.spider.name,
            enqueue=lambda new, _referrer: requests.append(new),
            item=item,
            stats=stats,
            stop=lambda _reason: None,
        )
        request: Request = response.crawl_request
        await callbacks.invoke(request, callback.name, (response,), kwargs=kwargs)
        if stats.callback_errors:
            outcomes[index] = f"the callback raised an exception on {request.url} (traceback above)"
        else:
            outcomes[index] = (items, requests)

    return run


def _record_failure(index: int, outcomes: dict[int, _Outcome]) -> Callable[..., None]:
    def failed(self: Spider, request: Request, failure: Exception) -> None:
        response = getattr(failure, "response", None)
        if isinstance(failure, HTTPStatusError) and response is not None:
            outcomes[index] = f"{request.method} {request.url} answered {_status_line(response)}"
        else:
            outcomes[index] = f"{request.method} {request.url} failed: {failure}"

    return failed


def _judge(callback: Callback, url: str | None, outcome: _Outcome | None, tally: _Tally) -> None:
    tally.callbacks += 1
    print(f"{callback.title}  {url or callback.url}")
    if outcome is None:
        outcome = "the request never reached the callback (the log above says why)"
    for check in callback.checks:
        if isinstance(outcome, str):
            tally.report(callback, check.text, outcome)
        else:
            tally.report(callback, check.text, check.verdict(*outcome))
    sys.stdout.flush()
