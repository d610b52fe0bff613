"""``crawl fetch`` and ``crawl parse``: one page as the crawl sees it.

Both build the spider's crawl state the way a crawl does (an ``Engine`` with
the resolved settings, so the user agent, timeouts, TLS and size limits are
the crawl's; the spider's default session, logged in first if the spider has
``login()``) but send only the requests asked for. No pipeline runs and no job
directory is opened: these tools look, they do not export.

A spider that declares the ``site_url`` option and left it empty gets the
origin of the URL given, so that its ``login()`` and its links go to the site
being looked at (a ``serve_demo_site`` spider is usually pointed at a
``crawl demo`` this way).
"""

from __future__ import annotations

import argparse
import dataclasses
import http
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio

from ..http import HTTPError
from ..request import Request
from ..response import Response
from ..sessions import Session
from ..settings import Settings, SettingsSources, load_sources
from ..spider import Spider
from ._demo import SITE_URL_OPTION
from ._json import json_object
from ._main import CommandError, configure_logging, resolve_all
from ._spider_loader import load_spiders

__all__ = [
    "ToolFailed",
    "checked_url",
    "get",
    "project_settings",
    "run_fetch",
    "run_parse",
    "spider_session",
    "spider_settings",
]

EXIT_FAILED = 1


class ToolFailed(Exception):
    """The page could not be had (network error, error status, failed login or callback)."""


class _Fetch(Spider):
    """Stands in for a spider when ``crawl fetch`` runs with none."""

    name = "fetch"


def checked_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL: anything else is a usage error (exit 2),
    said before any spider is imported or any login sent. ``urlsplit`` raises on some
    malformed URLs (an unclosed IPv6 bracket) and says so without naming the URL; those
    are the same usage error."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise CommandError(f"URL {url!r} is not an absolute http:// or https:// URL")
    return url


def _spider_settings(args: argparse.Namespace, name: str | None) -> tuple[type[Spider], Settings]:
    return spider_settings(args, name, checked_url(args.url))


def project_settings(args: argparse.Namespace) -> tuple[SettingsSources, Settings]:
    """The project's settings sources and their lenient reading, logging set up from it
    as the crawl sets it up (level, file and format), so that the tools log where the
    project's crawls log. Lenient: ``spider_modules`` and the log settings are needed
    before the spiders, and so their options, are known; the caller checks the rest."""
    extra = [("--log-level", {"log_level": args.log_level})] if args.log_level else []
    sources = load_sources(args.settings, args.overrides, extra_overrides=extra)
    project = sources.resolve(lenient=True)
    configure_logging(project.log_level, project.log_file, project.log_format, project.project_dir)
    return sources, project


def spider_settings(
    args: argparse.Namespace, name: str | None, url: str | None
) -> tuple[type[Spider], Settings]:
    """The spider to use and its settings, pointed at ``url``'s site if one is given;
    without a name, the project's settings (and no spider module is imported, so the
    tools work outside a project too)."""
    sources, project = project_settings(args)
    if name is None:
        return _Fetch, sources.resolve()
    loader = load_spiders(project.spider_modules, project.project_dir)
    cls = loader.get(name)
    settings = resolve_all(sources, loader, [name])[cls]
    return cls, settings if url is None else _pointed_at(cls, settings, url)


def _pointed_at(cls: type[Spider], settings: Settings, url: str) -> Settings:
    """``settings`` with ``site_url`` set to the origin of ``url``, if declared and empty."""
    if SITE_URL_OPTION not in cls.options or settings.options.get(SITE_URL_OPTION):
        return settings
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return settings
    origin = f"{parts.scheme}://{parts.netloc}"
    return dataclasses.replace(settings, options={**settings.options, SITE_URL_OPTION: origin})


def _failed(exc: ToolFailed) -> int:
    print(f"crawl: error: {exc}", file=sys.stderr)
    return EXIT_FAILED


# -- the spider's session ------------------------------------------------------------


@asynccontextmanager
async def spider_session(
    cls: type[Spider], settings: Settings
) -> AsyncIterator[tuple[Spider, Session]]:
    """The spider (its settings set) and its default session, logged in if it logs in."""
    from ..engine import Engine

    # A look at one page is not part of the project's job, nor of its shared crawl.
    settings = dataclasses.replace(settings, job_dir="", frontier_url="")
    async with Engine(settings) as engine:
        crawler = engine.crawler(cls, settings, pipelines=[])
        session = crawler.session()
        try:
            if crawler.logins.enabled and not await crawler.logins.before_start([session]):
                raise ToolFailed(f"spider {crawler.name}: {crawler.logins.error}")
            yield crawler.spider, session
        finally:
            with trio.CancelScope(shield=True):
                for each in crawler.sessions.values():
                    await each.aclose()


async def get(session: Session, request: Request) -> Response:
    """``request`` sent as the crawl sends it (redirects followed); an error status or a
    network error is a ToolFailed naming the URL."""
    try:
        response = await session.client.request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body or None,
            follow_redirects=not request.dont_redirect,
        )
    except HTTPError as exc:
        raise ToolFailed(f"{request.method} {request.url} failed: {exc}") from None
    status = response.status_code
    if status >= 400 and status not in _accepted(request):
        raise ToolFailed(f"{request.method} {request.url} answered {_status_line(response)}")
    return Response.from_http(response, request)


def _status_line(response: Response | Any) -> str:
    """``404 Not Found``, also from servers that send no reason phrase (HTTP/2 never does)."""
    status: int = response.status_code
    reason: str = response.reason_phrase
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            return str(status)
    return f"{status} {reason}"


def _accepted(request: Request) -> Any:
    accepted = request.accept_statuses
    return range(1000) if isinstance(accepted, str) else accepted


# -- crawl fetch ---------------------------------------------------------------------


def run_fetch(args: argparse.Namespace) -> int:
    """Print the body of ``args.url`` (or its status line and headers) to stdout."""
    cls, settings = _spider_settings(args, args.spider)
    try:
        response = trio.run(_fetch, cls, settings, args.url)
    except ToolFailed as exc:
        return _failed(exc)
    if args.headers:
        print(f"{response.http_version} {_status_line(response)}")
        for name, value in response.headers.multi_items():
            print(f"{name}: {value}")
    else:
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    return 0


async def _fetch(cls: type[Spider], settings: Settings, url: str) -> Response:
    async with spider_session(cls, settings) as (_, session):
        return await get(session, Request(url))


# -- crawl parse ---------------------------------------------------------------------


@dataclasses.dataclass
class _Yield:
    """What one callback call produced, in order of kind."""

    items: list[Any] = dataclasses.field(default_factory=list)
    requests: list[Request] = dataclasses.field(default_factory=list)
    #: Reasons the callback gave for closing the spider (``raise CloseSpider``).
    closed: list[str] = dataclasses.field(default_factory=list)


def _meta(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        return json_object(text, "--meta")
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run_parse(args: argparse.Namespace) -> int:
    """Run a callback on ``args.url`` and print what it yields, down to ``args.depth``.

    Items go to stdout as JSON lines, requests as ``METHOD URL -> callback``;
    which page each came from goes to stderr, so stdout stays machine-readable.
    """
    if args.depth < 1:
        raise CommandError(f"--depth must be 1 or more, got {args.depth}")
    meta = _meta(args.meta)
    cls, settings = _spider_settings(args, args.spider)
    callback = getattr(cls, args.callback, None)
    if not callable(callback):
        raise CommandError(f"Spider {cls.name!r} has no callback method {args.callback!r}")
    start = Request(args.url, callback=args.callback, meta=meta)
    try:
        trio.run(_parse, cls, settings, start, args.depth)
    except ToolFailed as exc:
        return _failed(exc)
    return 0


async def _parse(cls: type[Spider], settings: Settings, start: Request, depth: int) -> None:
    from ..engine._callbacks import Callbacks, callback_label
    from ..engine._stats import Stats
    from ..pipelines._encode import make_encoder

    encode = make_encoder()
    found = _Yield()

    async def item(value: Any) -> None:
        found.items.append(value)

    async with spider_session(cls, settings) as (spider, session):
        stats = Stats(cls.name)
        callbacks = Callbacks(
            spider,
            cls.name,
            enqueue=lambda request, _referrer: found.requests.append(request),
            item=item,
            stats=stats,
            stop=found.closed.append,
        )
        level, seen = [start], {(start.method, start.url)}
        for current in range(1, depth + 1):
            following: list[Request] = []
            for request in level:
                callback = request.callback or "parse"
                name = callback_label(callback)
                try:
                    response = await get(session, request)
                except ToolFailed as exc:
                    if current == 1:
                        raise
                    print(f"# depth {current}: {exc}; skipped", file=sys.stderr)
                    continue
                found.items.clear()
                found.requests.clear()
                errors = stats.callback_errors
                await callbacks.invoke(request, callback, (response,), kwargs=request.cb_kwargs)
                if stats.callback_errors > errors:
                    raise ToolFailed(f"callback {name} failed on {request.url} (see above)")
                print(
                    f"# depth {current}: {request.method} {request.url} -> {name}: "
                    f"{len(found.items)} items, {len(found.requests)} requests",
                    file=sys.stderr,
                    flush=True,
                )
                for value in found.items:
                    print(encode(value))
                for new in found.requests:
                    print(f"{new.method} {new.url} -> {callback_label(new.callback or 'parse')}")
                    key = (new.method, new.url)
                    if key not in seen:
                        seen.add(key)
                        following.append(new)
                sys.stdout.flush()
                if found.closed:  # the callback raised CloseSpider: a crawl would stop here
                    print(f"# the spider closed: {found.closed[0]}", file=sys.stderr)
                    return
            level = following
