"""``crawl check``: run each contracted callback once on its ``@url`` and judge the output.

Pages are fetched as ``crawl parse`` fetches them (the spider's settings and
default session, logged in first), with the demo site started for a spider
that serves it, so whatever the settings do to fetching applies: with a
development HTTP cache on, checks replay recorded pages. Mistakes in the
contracts themselves are usage errors (exit 2), found before anything is
fetched; a broken contract exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any
from urllib.parse import urljoin, urlsplit

import trio

from ..request import Request
from ..settings import Settings, load_sources
from ..spider import Spider
from ._contracts import Callback, ContractError, contracted_callbacks
from ._demo import SITE_URL_OPTION, start_demo_site, wants_demo_site
from ._inspect import EXIT_FAILED, ToolFailed, _pointed_at, get, spider_session
from ._main import CommandError, configure_logging, resolve_all
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
    extra = [("--log-level", {"log_level": args.log_level})] if args.log_level else []
    sources = load_sources(args.settings, args.overrides, extra_overrides=extra)
    project = sources.resolve(lenient=True)
    configure_logging(project.log_level)
    loader = load_spiders(project.spider_modules, project.project_dir)
    names = args.names or loader.names()
    resolved = resolve_all(sources, loader, names) if names else {}
    try:
        plan = {cls: contracted_callbacks(cls) for cls in resolved}
    except ContractError as exc:
        raise CommandError(str(exc)) from None
    plan = {cls: callbacks for cls, callbacks in plan.items() if callbacks}
    if args.list:
        for callbacks in plan.values():
            for callback in callbacks:
                print(f"{callback.title}  {callback.url}")
        return 0
    for name in args.names:
        if not contracted_callbacks(loader.get(name)):
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
            await _check_spider(cls, settings, callbacks, tally)
            nursery.cancel_scope.cancel()


def _settings_for(cls: type[Spider], settings: Settings, callbacks: list[Callback]) -> Settings:
    """Pointed at the site of the first absolute ``@url``, as ``crawl parse URL`` is."""
    for callback in callbacks:
        if urlsplit(callback.url).scheme:
            return _pointed_at(cls, settings, callback.url)
    return settings


async def _check_spider(
    cls: type[Spider], settings: Settings, callbacks: list[Callback], tally: _Tally
) -> None:
    try:
        async with spider_session(cls, settings) as (spider, session):
            for callback in callbacks:
                tally.callbacks += 1
                url = _absolute(cls, settings, callback.url)
                print(f"{callback.title}  {url or callback.url}", flush=True)
                try:
                    if url is None:
                        raise ToolFailed(
                            f"@url {callback.url} is a path, but the spider has neither a "
                            f"{SITE_URL_OPTION} option set nor start_urls to resolve it against"
                        )
                    items, requests = await _run(spider, session, callback, url)
                except ToolFailed as exc:
                    for check in callback.checks:
                        tally.report(callback, check.text, str(exc))
                    continue
                for check in callback.checks:
                    tally.report(callback, check.text, check.verdict(items, requests))
                sys.stdout.flush()
    except ToolFailed as exc:  # the login failed: no callback of the spider can run
        for callback in callbacks:
            tally.callbacks += 1
            print(f"{callback.title}  {callback.url}")
            for check in callback.checks:
                tally.report(callback, check.text, str(exc))


def _absolute(cls: type[Spider], settings: Settings, url: str) -> str | None:
    if urlsplit(url).scheme:
        return url
    base = settings.options.get(SITE_URL_OPTION) or next(iter(cls.start_urls), "")
    return urljoin(str(base), url) if base else None


async def _run(
    spider: Spider, session: Any, callback: Callback, url: str
) -> tuple[list[Any], list[Request]]:
    """The items and requests the callback yields for its page."""
    from ..engine._callbacks import Callbacks
    from ..engine._stats import Stats

    items: list[Any] = []
    requests: list[Request] = []

    async def item(value: Any) -> None:
        items.append(value)

    request = Request(url, callback=callback.name, meta=callback.meta, cb_kwargs=callback.cb_kwargs)
    response = await get(session, request)
    stats = Stats(callback.spider.name)
    callbacks = Callbacks(
        spider,
        callback.spider.name,
        enqueue=lambda new, _referrer: requests.append(new),
        item=item,
        stats=stats,
        stop=lambda _reason: None,
    )
    await callbacks.invoke(request, callback.name, (response,), kwargs=request.cb_kwargs)
    if stats.callback_errors:
        raise ToolFailed(f"the callback raised an exception on {url} (traceback above)")
    return items, requests
