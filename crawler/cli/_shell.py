"""``crawl shell``: a Python prompt with a page, its spider and ``await fetch(...)``.

The prompt runs in the main thread, so Ctrl-C and the terminal behave as in
any Python prompt, while trio runs in a thread of its own, holding what must
outlive one statement: the engine's pool, the spider's session (logged in if
the spider logs in) and the demo site a ``serve_demo_site`` spider asks for. A
statement that awaits is compiled as a coroutine (top-level ``await``, as
``python -m asyncio`` does) and run in that trio thread; the others run as in
a plain prompt. IPython, when installed, is given the same runner for its
``autoawait``.

With stdin not a terminal the statements are read from it and each
expression's value printed, so the shell can be scripted; the exit status is 1
if a statement raised.
"""

from __future__ import annotations

import argparse
import ast
import code
import dataclasses
import inspect
import re
import sys
import tempfile
import threading
import types
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TextIO, TypeVar

import trio

from ..request import Request
from ..response import Response
from ..sessions import Session
from ..settings import Settings
from ..spider import Spider
from ._demo import start_demo_site, wants_demo_site
from ._inspect import (
    EXIT_FAILED,
    ToolFailed,
    checked_url,
    get,
    spider_session,
    spider_settings,
)
from ._main import CommandError

__all__ = ["Shell", "run_shell"]

T = TypeVar("T")

#: Seconds to wait for the trio thread to close the session when the prompt ends.
_CLOSE_TIMEOUT = 30


# -- the target ------------------------------------------------------------------------


def _target(text: str | None) -> tuple[str | None, Path | None]:
    """``(url, None)`` or ``(None, file)`` for the command's argument; a usage error
    names an argument that is neither an http(s) URL nor an existing file."""
    if text is None:
        return None, None
    if "://" not in text:
        path = Path(text)
        if path.is_file():
            return None, path
        raise CommandError(f"{text!r} is neither an existing file nor an http:// or https:// URL")
    return checked_url(text), None


def response_from_file(path: Path) -> Response:
    """A crawl Response for a saved page: status 200, its bytes, a ``file://`` URL."""
    return Response.from_body(path.resolve().as_uri(), path.read_bytes())


# -- trio in a thread --------------------------------------------------------------------


class _Trio:
    """A trio loop in a thread of its own that keeps ``open_state()`` open until closed,
    and runs async functions for the main thread."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closing: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self.state: Any = None

    def start(self, open_state: Callable[[], AbstractAsyncContextManager[Any]]) -> Any:
        """Open the state in the trio thread; its value, or the error that opening raised."""
        self._thread = threading.Thread(
            target=self._run, args=(open_state,), name="crawl-shell-trio", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise _unwrapped(self._error)
        return self.state

    def _run(self, open_state: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        try:
            trio.run(self._main, open_state)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self, open_state: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._closing = trio.Event()
        async with open_state() as state:
            self.state = state
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._closing.wait()

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        """``await afn(*args)`` in the trio thread. Ctrl-C cancels it (and is raised
        here), so an interrupted statement does not go on in the background."""
        scope = trio.CancelScope()

        async def guarded() -> T | None:
            with scope:
                return await afn(*args)
            return None

        try:
            return trio.from_thread.run(guarded, trio_token=self._token)
        except KeyboardInterrupt:
            trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
            raise

    def in_trio(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Close the state and wait for the thread; a thread still opening it (Ctrl-C
        during a login) is a daemon, left to end with the process."""
        if self._thread is None or self._token is None or self._closing is None:
            return
        if self._thread.is_alive():
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._closing.set, trio_token=self._token)
        self._thread.join(_CLOSE_TIMEOUT)


def _unwrapped(exc: BaseException) -> BaseException:
    """The error inside the one-exception groups that nurseries wrap it in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


# -- what the prompt offers ----------------------------------------------------------------


@dataclasses.dataclass
class _Opened:
    spider: Spider
    session: Session
    settings: Settings


@asynccontextmanager
async def _open(cls: type[Spider], settings: Settings) -> AsyncIterator[_Opened]:
    """The spider's session, with the demo site first if the spider wants it served."""
    async with trio.open_nursery() as nursery:
        if wants_demo_site(cls, settings):
            [settings] = await start_demo_site(nursery, [(cls, settings)])
        async with spider_session(cls, settings) as (spider, session):
            yield _Opened(spider, session, settings)
        nursery.cancel_scope.cancel()


_HELP = """\
Available objects:
  response    the page last fetched (or read from a file); response.css("title::text").get()
  request     the crawl Request that fetched it
  spider      the spider (its settings and session are the shell's)
  settings    the resolved settings
  session     the spider's default session (logged in if the spider logs in)
  Request     crawler.Request, to build requests for fetch()
Functions:
  await fetch(url_or_request)   fetch a page in the spider's session (a URL relative to
                                response's resolves against it); sets response and request
  view(response)                open the page in a browser (or print where it was saved)
  shelp()                       print this help
Statements may use top-level await. Ctrl-D (or exit()) leaves."""


class Shell:
    """The names of a shell prompt: ``fetch`` and ``view`` keep ``response`` and
    ``request`` of the namespace current."""

    def __init__(self, loop: _Trio, opened: _Opened, response: Response | None) -> None:
        self._loop = loop
        self._session = opened.session
        self.namespace: dict[str, Any] = {
            "__name__": "__console__",
            "__doc__": None,
            "spider": opened.spider,
            "settings": opened.settings,
            "session": opened.session,
            "request": response.crawl_request if response is not None else None,
            "response": response,
            "Request": Request,
            "fetch": self.fetch,
            "view": self.view,
            "shelp": self.shelp,
        }

    def fetch(self, target: str | Request) -> Any:
        """Fetch ``target``; awaitable at the prompt, and called plainly it waits too.

        Error statuses come back as responses (the shell is for looking at them);
        a network error raises.
        """
        if self._loop.in_trio():
            return self._fetch(target)
        return self._loop.run(self._fetch, target)

    async def _fetch(self, target: str | Request) -> Response:
        request = self._request(target)
        response = await get(self._session, request)
        self.namespace["request"] = request
        self.namespace["response"] = response
        return response

    def _request(self, target: str | Request) -> Request:
        if isinstance(target, Request):
            return target.replace(accept_statuses="all")
        current: Response | None = self.namespace.get("response")
        url = target
        if "://" not in target and current is not None:
            url = current.urljoin(target) or target
        try:
            checked_url(url)
        except CommandError as exc:
            raise ValueError(f"fetch: {exc}") from None
        return Request(url, accept_statuses="all")

    def view(self, response: Response | None = None) -> Path:
        """Save the page to a temporary file (a ``<base>`` added so that its links and
        images resolve) and open it in a browser if there is one; the file's path."""
        page = response if response is not None else self.namespace.get("response")
        if page is None:
            raise ValueError("view: no response yet; fetch a page first")
        path = _saved(page)
        if _open_in_browser(path):
            print(f"Opened {path} in a browser")
        else:
            print(f"No browser found; the page is saved in {path}")
        return path

    def shelp(self) -> None:
        """Print what the prompt offers."""
        print(_HELP)
        response = self.namespace.get("response")
        if response is not None:
            print(f"response is {response!r}")


def _saved(response: Response) -> Path:
    body = response.content
    if not re.search(rb"<base\s", body[:4096], re.IGNORECASE):
        base = f'<base href="{response.url}">'.encode()
        head = re.search(rb"<head[^>]*>", body[:4096], re.IGNORECASE)
        at = head.end() if head else 0
        body = body[:at] + base + body[at:]
    with tempfile.NamedTemporaryFile(prefix="crawl-shell-", suffix=".html", delete=False) as f:
        f.write(body)
    return Path(f.name)


def _open_in_browser(path: Path) -> bool:
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    return bool(browser.open(path.as_uri()))


# -- the prompts -----------------------------------------------------------------------------


class _Console(code.InteractiveConsole):
    """Python's prompt with top-level await, run by trio in the shell's thread."""

    def __init__(self, namespace: dict[str, Any], loop: _Trio) -> None:
        super().__init__(namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self._loop = loop
        self.failed = False

    def runcode(self, code: types.CodeType) -> None:
        try:
            if code.co_flags & inspect.CO_COROUTINE:
                coroutine: Coroutine[Any, Any, Any] = types.FunctionType(code, self.locals)()
                self._loop.run(_awaited, coroutine)
            else:
                exec(code, self.locals)
        except SystemExit:
            raise
        except KeyboardInterrupt:  # its traceback would show only the shell's own frames
            self.failed = True
            self.write("KeyboardInterrupt\n")
        except BaseException:
            self.showtraceback()

    def showtraceback(self) -> None:
        self.failed = True
        super().showtraceback()

    def showsyntaxerror(self, filename: str | None = None, **kwargs: Any) -> None:
        self.failed = True
        super().showsyntaxerror(filename, **kwargs)


def _script(console: _Console, stream: TextIO) -> int:
    """Run the statements of ``stream`` as if typed at the prompt, without prompts."""
    more = False
    for line in stream:
        more = console.push(line.rstrip("\r\n"))
    if more:
        console.push("")
    return EXIT_FAILED if console.failed else 0


def _banner(shell: Shell) -> str:
    response = shell.namespace.get("response")
    spider = shell.namespace["spider"]
    about = f"response is {response!r}" if response is not None else "no page fetched yet"
    return f"crawl shell (spider {spider.name}): {about}. shelp() lists what is here."


def _ipython(shell: Shell, loop: _Trio) -> bool:
    """Run IPython's prompt with autoawait on the shell's trio thread; False if IPython
    is not installed."""
    try:
        from IPython.terminal.embed import InteractiveShellEmbed
    except ImportError:
        return False
    prompt = InteractiveShellEmbed(
        banner1=_banner(shell) + "\n", exit_msg="", user_ns=shell.namespace
    )
    prompt.autoawait = True
    prompt.loop_runner = lambda coroutine: loop.run(_awaited, coroutine)
    prompt()
    return True


def _interact(shell: Shell, loop: _Trio, plain: bool) -> int:
    console = _Console(shell.namespace, loop)
    if not sys.stdin.isatty():
        return _script(console, sys.stdin)
    if not plain and _ipython(shell, loop):
        return 0
    with suppress(ImportError):
        import readline  # noqa: F401  (line editing and history at the prompt)
    with suppress(SystemExit):
        console.interact(banner=_banner(shell), exitmsg="")
    return 0


# -- the command -----------------------------------------------------------------------------


class _ShellSpider(Spider):
    """Stands in for a spider when ``crawl shell`` runs with none."""

    name = "shell"


def run_shell(args: argparse.Namespace) -> int:
    """Open the prompt on ``args.target`` (a URL, fetched first, or a saved page)."""
    url, path = _target(args.target)
    response = response_from_file(path) if path is not None else None
    cls, settings = spider_settings(args, args.spider, url)
    if args.spider is None:
        cls = _ShellSpider
    loop = _Trio()
    try:
        opened: _Opened = loop.start(lambda: _open(cls, settings))
        shell = Shell(loop, opened, response)
        if url is not None:
            shell.fetch(url)
        return _interact(shell, loop, args.plain)
    except ToolFailed as exc:
        print(f"crawl: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        loop.close()
