"""The command lines of the ``crawl`` tools, and which code runs each.

Each tool has its own parser, so ``crawl demo --port 8000`` is checked against
the options of ``demo`` and ``crawl fetch --help`` shows those of ``fetch``,
while ``crawl NAME`` keeps its own. The code behind a tool is imported only
when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._templates import SPIDERS

__all__ = ["TOOLS", "run_tool", "tool_parser"]

TOOLS = {
    "demo": "serve the bundled demo site on loopback until Ctrl-C or SIGTERM",
    "fetch": "print a page (or its headers) as the crawl gets it",
    "parse": "run a spider callback on a page and print the items and requests it yields",
    "new": "write spiders/NAME.py from a template",
    "startproject": "write a new project that crawls the demo site at once",
    "shell": "a Python prompt (top-level await) with a page, its spider and fetch()",
    "check": "run the contracts in spider callbacks' docstrings against their @url",
    "stop": "ask every worker of a shared crawl to finish its pages in flight and exit",
    "export": "write the items of a shared crawl to a JSON Lines file, each exactly once",
}
# ``crawl status REDIS_URL`` runs as a tool too; ``crawl status DIR`` stays a command.
_DESCRIPTIONS = {**TOOLS, "status": "show the state of the shared crawls in a Redis"}


def _project_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting; VALUE is TOML (repeatable)",
    )
    parser.add_argument(
        "--settings", type=Path, metavar="PATH", help="settings.toml to use instead of searching"
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )


def _demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)"
    )


def _fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL")
    parser.add_argument(
        "--headers", action="store_true", help="print the status line and headers, not the body"
    )
    parser.add_argument(
        "--spider", metavar="NAME", help="with that spider's settings and session (and login)"
    )
    _project_options(parser)


def _parse(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL")
    parser.add_argument("--spider", metavar="NAME", required=True, help="the spider to use")
    parser.add_argument(
        "--callback", default="parse", metavar="NAME", help="callback for URL (default parse)"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=1,
        metavar="N",
        help="follow the requests yielded down to depth N (default 1: URL only)",
    )
    parser.add_argument("--meta", metavar="JSON", help="request meta for URL, a JSON object")
    _project_options(parser)


def _new(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="spider name, a Python identifier")
    parser.add_argument("domain", metavar="DOMAIN", help="host (and port) the spider crawls")
    parser.add_argument("--template", choices=tuple(SPIDERS), default="basic", help="default basic")
    parser.add_argument(
        "--settings", type=Path, metavar="PATH", help="settings.toml to use instead of searching"
    )


def _startproject(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR", help="new or empty directory")


def _shell(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", nargs="?", metavar="URL|FILE", help="a page to fetch, or a saved HTML file"
    )
    parser.add_argument(
        "--spider", metavar="NAME", help="with that spider's settings and session (and login)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="Python's own prompt even if IPython is installed"
    )
    _project_options(parser)


def _check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="spiders to check (default all)")
    parser.add_argument(
        "--list", action="store_true", help="list the contracted callbacks, run nothing"
    )
    _project_options(parser)


def _redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="REDIS_URL", help="redis://[:PASSWORD@]HOST:PORT/DB (or REDIS_PASSWORD)"
    )
    parser.add_argument("--crawl-id", default="default", help="which crawl of the spider")


def _status(parser: argparse.ArgumentParser) -> None:
    _redis_url(parser)
    parser.add_argument("--spider", metavar="NAME", help="only this spider's crawl")


def _stop(parser: argparse.ArgumentParser) -> None:
    _redis_url(parser)
    parser.add_argument("--spider", metavar="NAME", required=True, help="the crawl's spider")


def _export(parser: argparse.ArgumentParser) -> None:
    _redis_url(parser)
    parser.add_argument("--spider", metavar="NAME", required=True, help="the crawl's spider")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-o", dest="append", type=Path, metavar="FILE", help="append the items not yet in FILE"
    )
    target.add_argument(
        "-O", dest="overwrite", type=Path, metavar="FILE", help="write every item to FILE afresh"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep exporting until no worker is left"
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="delete from the crawl's stream the items FILE holds (one exporter per crawl)",
    )


_OPTIONS = {
    "demo": _demo,
    "fetch": _fetch,
    "parse": _parse,
    "new": _new,
    "startproject": _startproject,
    "shell": _shell,
    "check": _check,
    "status": _status,
    "stop": _stop,
    "export": _export,
}


def tool_parser(tool: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"crawl {tool}", description=_DESCRIPTIONS[tool] + " (docs/cli.md)"
    )
    parser.add_argument("tool", choices=[tool], help=argparse.SUPPRESS)
    _OPTIONS[tool](parser)
    return parser


def run_tool(args: argparse.Namespace) -> int:
    """Run the tool ``args.tool``; its exit status."""
    if args.tool == "demo":
        from ._serve import serve_demo

        return serve_demo(args.host, args.port)
    if args.tool in ("fetch", "parse"):
        from ._inspect import run_fetch, run_parse

        return run_fetch(args) if args.tool == "fetch" else run_parse(args)
    if args.tool == "shell":
        from ._shell import run_shell

        return run_shell(args)
    if args.tool == "check":
        from ._check import run_check

        return run_check(args)
    if args.tool in ("status", "stop", "export"):
        from ._shared import run_shared_tool

        return run_shared_tool(args)
    from ._scaffold import new_project, new_spider

    return new_spider(args) if args.tool == "new" else new_project(args)
