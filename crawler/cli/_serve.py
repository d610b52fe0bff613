"""``crawl demo``: the bundled demo site on its own, for trying spiders by hand.

The docs' examples point at ``http://127.0.0.1:8000/``; this command is what
serves that address. It listens on loopback only: the site has a login with a
published password and answers anything, so it must never face a network.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
from functools import partial

import trio

__all__ = ["DemoServeError", "check_loopback", "serve_demo"]

DEFAULT_PORT = 8000


class DemoServeError(Exception):
    """The demo site cannot be served where asked (a non-loopback host, a busy port)."""


def check_loopback(host: str) -> str:
    """``host`` if it is a loopback address or ``localhost``; else a clear refusal."""
    if host.lower() == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise DemoServeError(
            f"--host {host!r} is not an IP address; the demo site serves loopback only "
            "(127.0.0.1, ::1 or localhost)"
        ) from None
    if not address.is_loopback:
        raise DemoServeError(
            f"--host {host!r} is not a loopback address; the demo site serves loopback only "
            "(127.0.0.1, ::1 or localhost), so that nothing outside this machine reaches it"
        )
    return host.strip("[]")


def serve_demo(host: str, port: int) -> int:
    """Serve the demo site until SIGINT or SIGTERM; exit status 0 after either."""
    host = check_loopback(host)
    if not 0 <= port <= 65535:
        raise DemoServeError(f"--port {port} is not a port number (0 to 65535)")
    try:
        trio.run(_serve, host, port)
    except OSError as exc:
        raise DemoServeError(f"cannot serve the demo site on {host}:{port}: {exc}") from None
    except BaseExceptionGroup as group:
        cause = _only(group)
        if isinstance(cause, OSError):
            raise DemoServeError(f"cannot serve the demo site on {host}:{port}: {cause}") from None
        raise
    return 0


def _only(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve(host: str, port: int) -> None:
    from ..demo import serve_demo_site

    # Signals are received as events, not as KeyboardInterrupt, so the site
    # stops by cancellation and the exit status is 0 for a plain Ctrl-C.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(partial(serve_demo_site, host, port))
            print(f"Demo site at {url}/ (Ctrl-C to stop)", flush=True)
            async for signum in signals:
                print(f"{signal.Signals(signum).name} received: stopping", file=sys.stderr)
                break
            nursery.cancel_scope.cancel()
