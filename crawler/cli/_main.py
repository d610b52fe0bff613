"""The ``crawl`` command: ``crawl NAME...``, ``crawl list``, ``crawl settings [NAME]``,
and the tools of the edit-and-run loop (``demo``, ``fetch``, ``parse``, ``shell``,
``check``, ``new``, ``startproject``), each with options of its own.

Settings and spiders are loaded and checked before anything is fetched, so a
mistake costs one line on stderr and exit status 2. The engine is imported
only when there is something to crawl, which keeps ``crawl list`` quick.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._paths import for_spider
from .._redact import REDACTED, is_secret_key, redact_userinfo
from ..settings import Settings, SettingsError, SettingsSources, load_sources
from ..settings._schema import format_key
from ..spider import Spider
from ._spider_loader import SpiderLoader, SpiderLoadError, load_spiders

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EPILOG = """\
commands:
  crawl NAME [NAME ...]    run the named spiders
  crawl list               list the spiders of the project
  crawl settings [NAME]    print the resolved settings (of spider NAME) and their sources
  crawl status DIR         show the state of the crawl job in DIR (see --job)
  crawl cache clear [NAME...]
                           delete the HTTP cache of the named spiders (of all: no NAME)
  crawl status REDIS_URL [--spider NAME]
                           show the shared crawls in Redis (see --frontier)
  crawl stop REDIS_URL --spider NAME
                           ask the workers of a shared crawl to finish and exit
  crawl export REDIS_URL --spider NAME -O FILE
                           write a shared crawl's items to FILE, each once
  crawl demo               serve the bundled demo site on http://127.0.0.1:8000/
  crawl fetch URL          print a page as the crawl gets it (--headers, --spider NAME)
  crawl parse URL --spider NAME
                           run a callback on a page; print its items and requests
  crawl shell [URL|FILE]   a Python prompt on a page: response.css(...), await fetch(...)
  crawl check [NAME ...]   run the contracts in the spiders' callback docstrings
  crawl new NAME DOMAIN    write spiders/NAME.py from a template (--template login|rules|sitemap)
  crawl startproject DIR   write a new project that crawls the demo site

Run `crawl COMMAND --help` for the options of a command.

See docs/cli.md and docs/settings.md."""


class CommandError(Exception):
    """A bad command line that argparse cannot see, such as an unknown export format."""


class _FeedAction(argparse.Action):
    """``-o FILE`` (append) and ``-O FILE`` (overwrite) into one list, in command-line
    order, as (value, append) pairs; FILE may be ``FILE:FORMAT`` or ``-:FORMAT``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        feeds = [*getattr(namespace, self.dest, []), (str(values), option_string == "-o")]
        setattr(namespace, self.dest, feeds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crawl",
        usage="crawl [options] NAME [NAME ...] | crawl list | crawl settings [NAME] | "
        "crawl status DIR | crawl cache clear [NAME ...] | crawl COMMAND ...",
        description="Run and inspect the spiders of a crawl project.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument(
        "-s",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting; VALUE is TOML (repeatable)",
    )
    parser.add_argument(
        "-o",
        dest="feeds",
        action=_FeedAction,
        default=[],
        metavar="FILE",
        help="export items to FILE, appending to it: .jsonl (.jl), .csv or .json; "
        "FILE:FORMAT names the format, -:jsonl is standard output; %%(name)s, %%(time)s "
        "and spider attributes are filled in (repeatable)",
    )
    parser.add_argument(
        "-O",
        dest="feeds",
        action=_FeedAction,
        default=[],
        metavar="FILE",
        help="export items to FILE, replacing it (repeatable)",
    )
    parser.add_argument(
        "--settings", type=Path, metavar="PATH", help="settings.toml to use instead of searching"
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    parser.add_argument(
        "--stats-json", type=Path, metavar="FILE", help="write the final stats to FILE as JSON"
    )
    parser.add_argument(
        "--job",
        metavar="DIR",
        help="make the crawl durable in DIR; the same command resumes it (docs/resume.md)",
    )
    parser.add_argument(
        "--frontier",
        metavar="REDIS_URL",
        help="share the crawl through Redis with every worker given the same URL "
        "(docs/distributed.md)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crawl`` command; returns its exit status, which docs/cli.md lists.

    Errors the user can fix (settings, spiders, a job directory) are printed as one
    line with what was wrong and where, not as a traceback.
    """
    from ._serve import DemoServeError
    from ._tools import TOOLS, run_tool, tool_parser

    argv = _attach_stdout_feeds(list(sys.argv[1:] if argv is None else argv))
    first = _first_name(argv)
    tool = first if first in TOOLS else None
    if first == "status" and any(_is_redis_url(word) for word in argv):
        tool = "status"  # of a shared crawl; ``crawl status DIR`` is a job's
    # Intermixed: a tool's optional positional (crawl shell [URL]) may follow its options.
    args = tool_parser(tool).parse_intermixed_args(argv) if tool else _parser().parse_args(argv)
    try:
        return run_tool(args) if tool else _dispatch(args)
    except (SettingsError, SpiderLoadError, CommandError, DemoServeError) as exc:
        print(f"crawl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crawl: error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _attach_stdout_feeds(argv: list[str]) -> list[str]:
    """``-o -:jsonl`` as ``-o-:jsonl``: argparse would take a value starting with ``-``
    for an option of its own and say ``-o`` lacks its argument."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word in ("-o", "-O"):
            value = next(words, None)
            if value is None:
                out.append(word)
            elif value.startswith("-") and value != "--":
                out.append(word + value)
            else:
                out.extend((word, value))
        else:
            out.append(word)
    return out


#: The options of ``crawl NAME`` that take a value, so the value is not taken for NAME.
_VALUE_OPTIONS = {
    "-s",
    "-o",
    "-O",
    "--settings",
    "--log-level",
    "--stats-json",
    "--job",
    "--frontier",
}


def _is_redis_url(word: str) -> bool:
    return word.startswith(("redis://", "rediss://"))


def _first_name(argv: Sequence[str]) -> str | None:
    """The command or first spider name: the first word that is neither an option
    nor an option's value (a tool's own options then go to the tool's parser)."""
    words = iter(argv)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif word == "--" or not word.startswith("-"):
            return next(words, None) if word == "--" else word
    return None


def _dispatch(args: argparse.Namespace) -> int:
    command, *rest = args.names
    if command == "status" and len(rest) == 1:
        from ..jobs._status import JobStatusError, job_status

        try:
            print(job_status(Path(rest[0]), cache_dir=lambda name: _cache_dir_of(args, name)))
        except JobStatusError as exc:
            raise CommandError(str(exc)) from None
        return 0
    extra = [("--log-level", {"log_level": args.log_level})] if args.log_level else []
    if args.job:
        extra.append(("--job", {"job_dir": args.job}))
    if args.frontier:
        extra.append(("--frontier", {"frontier_url": args.frontier}))
    sources = load_sources(args.settings, args.overrides, extra_overrides=extra)
    # spider_modules and log_level are needed before the spiders (and so their
    # options) are known: read them leniently, check everything after.
    project = sources.resolve(lenient=True)
    configure_logging(project.log_level, project.log_file, project.log_format, project.project_dir)
    loader = load_spiders(project.spider_modules, project.project_dir)
    if command == "list" and not rest:
        return _list(sources, loader)
    if command == "settings" and len(rest) <= 1:
        return _show_settings(sources, loader, rest[0] if rest else None)
    if command == "cache" and rest[:1] == ["clear"]:
        return _clear_caches(sources, loader, rest[1:])
    return _crawl(args, sources, loader)


def _cache_dir_of(args: argparse.Namespace, spider: str) -> Path | None:
    """Where ``spider``'s HTTP cache is, by the project's settings (None if they cannot
    be read: ``crawl status`` then shows the job without it)."""
    from ..engine._http_cache import cache_dir

    try:
        sources = load_sources(args.settings, args.overrides)
        return cache_dir(sources.resolve(lenient=True), spider)
    except (SettingsError, OSError):
        return None


def _clear_caches(sources: SettingsSources, loader: SpiderLoader, names: Sequence[str]) -> int:
    """``crawl cache clear [NAME...]``: delete the cache files, whatever their state."""
    from ..engine._cache_store import clear_cache
    from ..engine._http_cache import cache_dir

    chosen = list(names) or loader.names()
    for cls, settings in resolve_all(sources, loader, chosen).items():
        directory = cache_dir(settings, cls.name or cls.__name__)
        count = clear_cache(directory)
        if count is None:
            print(f"{cls.name}: no HTTP cache in {directory}")
        else:
            print(f"{cls.name}: deleted the HTTP cache in {directory} ({count} responses)")
    return 0


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(
    level: str, log_file: str = "", log_format: str = LOG_FORMAT, base: Path | None = None
) -> None:
    """Log at ``level`` to stderr, or to ``log_file`` (appended; relative to ``base``)
    instead, with ``log_format``, which is tried on a record first: a bad field fails
    here, once, rather than on every line of the crawl."""
    formatter = _formatter(log_format)
    handler: logging.Handler
    if log_file:
        path = Path(log_file).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"log_file {log_file!r}: cannot open {path}: {exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _formatter(log_format: str) -> logging.Formatter:
    try:
        formatter = logging.Formatter(log_format, datefmt="%H:%M:%S")
        formatter.format(logging.LogRecord("crawler", logging.INFO, __file__, 0, "test", (), None))
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(
            f"log_format {log_format!r} is not a usable logging format: {type(exc).__name__}: {exc}"
        ) from None
    return formatter


def all_options(classes: Sequence[type[Spider]]) -> set[str]:
    return {key for cls in classes for key in cls.options}


def _list(sources: SettingsSources, loader: SpiderLoader) -> int:
    sources.resolve(also_known=all_options(list(loader.spiders.values())))
    sources.check_spider_tables(loader.spiders)
    if not loader.spiders:
        print(f"No spiders found in spider_modules {list(loader.modules)}", file=sys.stderr)
        return 0
    width = max(len(name) for name in loader.spiders)
    for name in loader.names():
        print(f"{name:<{width}}  {loader.spiders[name].__module__}")
    return 0


def resolve_all(
    sources: SettingsSources, loader: SpiderLoader, names: Sequence[str]
) -> dict[type[Spider], Settings]:
    classes = [loader.get(name) for name in dict.fromkeys(names)]
    sources.check_spider_tables(loader.spiders)
    options = all_options(classes)
    return {cls: sources.resolve(cls, also_known=options) for cls in classes}


def _feed(value: str, append: bool) -> Any:
    """The Feed of one ``-o``/``-O`` value, checked before anything is crawled."""
    from ..pipelines._runner import Feed, PipelineConfigError

    feed = Feed.parse(value, append=append)
    try:
        feed.exporter_name()
    except PipelineConfigError as exc:
        raise CommandError(str(exc)) from None
    return feed


def _crawl(args: argparse.Namespace, sources: SettingsSources, loader: SpiderLoader) -> int:
    resolved = resolve_all(sources, loader, args.names)
    from ..engine._engine import names_the_spider

    feeds = [_feed(value, append) for value, append in args.feeds]
    if len(resolved) > 1:
        for feed in feeds:
            if not names_the_spider(feed):
                raise CommandError(
                    f"-o {feed.path}: several spiders would write the same file; put "
                    "{spider} in the path (e.g. items-{spider}.jsonl)"
                )
    if feeds and any(s.frontier_url for s in resolved.values()):
        # Said before the engine connects to Redis: a wrong command line is told first.
        raise CommandError(
            "with --frontier, items go to the shared crawl's Redis stream, exactly once; "
            "export them with `crawl export REDIS_URL --spider NAME -O FILE` instead of "
            "-o/-O (docs/distributed.md)"
        )
    dirs = [for_spider(s.job_dir, cls.name) for cls, s in resolved.items() if s.job_dir]
    if len(set(dirs)) != len(dirs):
        raise CommandError(
            "several spiders would share one job directory; put {spider} in it "
            "(e.g. --job 'jobs/{spider}')"
        )
    from .. import engine  # heavy: only when crawling
    from ._demo import start_demo_site

    try:
        status = engine.run_crawl(
            list(resolved),
            resolved.__getitem__,
            feeds=feeds,
            stats_json=args.stats_json,
            prepare=start_demo_site,
        )
    except (Exception, BaseExceptionGroup) as exc:
        cause = _config_error(exc, _config_errors())
        if cause is None:
            raise
        raise CommandError(str(cause)) from exc
    if status == EXIT_INTERRUPTED:
        print("crawl: error: the crawl was stopped by a signal", file=sys.stderr)
    elif status != 0:
        print(f"crawl: error: the crawl ended with exit status {status}", file=sys.stderr)
    return status


def _config_errors() -> tuple[type[Exception], ...]:
    """The errors a crawl raises for its configuration, which the command prints as one
    line. Those of jobs and of the Redis client count only if the crawl imported their
    module, as it must have to raise them: importing them to name them here would load
    sqlite3 and hiredis into every crawl, megabytes of memory most crawls never use."""
    from ..engine import ComponentError, HttpCacheError
    from ..pipelines._runner import PipelineConfigError

    kinds: list[type[Exception]] = [
        PipelineConfigError,
        ComponentError,
        SettingsError,
        HttpCacheError,
    ]
    for module, name in (
        ("crawler.jobs._job", "JobError"),
        ("crawler.distributed._redis", "RedisError"),
    ):
        loaded = sys.modules.get(module)
        if loaded is not None:
            kinds.append(getattr(loaded, name))
    return tuple(kinds)


def _config_error(exc: BaseException, kinds: tuple[type[Exception], ...]) -> BaseException | None:
    """The configuration error behind ``exc``, also when a nursery wrapped it in a group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, kinds) else None


def _show_settings(sources: SettingsSources, loader: SpiderLoader, name: str | None) -> int:
    if name is None:
        settings = sources.resolve(also_known=all_options(list(loader.spiders.values())))
    else:
        settings = resolve_all(sources, loader, [name])[loader.get(name)]
    for key, value in _flatten(settings.to_dict()):
        source = settings.source_of(key)
        secret = is_secret_key(key) and value not in (None, "")
        shown = REDACTED if secret else _toml(redact_userinfo(value))
        print(f"{key} = {shown}  # {source}")
    return 0


def _flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Settings as dotted keys, one row per value that has a source."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key in ("domains", "pipeline"):
            for name, table in value.items():
                rows.extend((format_key((key, name, k)), v) for k, v in table.items())
        else:
            rows.append((key, value))
    return rows


def _toml(value: Any) -> str:
    from ..settings._docs import toml_value

    return toml_value(value)
